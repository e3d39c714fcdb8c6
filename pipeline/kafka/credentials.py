"""Start-up check of the Kafka credentials: a refusal that retrying cannot fix is one clear line.

The client libraries treat a failed TLS handshake or SASL login like a broker that is down: they
log it per connection and keep retrying (aiokafka, kafka-python), so a wrong password would look
like an outage forever. Before a process starts its clients, :func:`check_credentials` opens one
connection to a bootstrap server with the configured security (``aiokafka.conn.create_conn``,
which raises what went wrong) and turns the refusals that only a setting can fix into a
:class:`KafkaCredentialsError` naming that setting:

* the broker's certificate is not trusted, or is not for that host: ``LEADFLOW_KAFKA_SSL_CA_FILE``;
* the TLS handshake fails otherwise (a plaintext listener, say): ``LEADFLOW_KAFKA_SECURITY_PROTOCOL``;
* the SASL login is refused: ``LEADFLOW_KAFKA_SASL_USERNAME`` / ``LEADFLOW_KAFKA_SASL_PASSWORD``;
* the mechanism is not enabled there: ``LEADFLOW_KAFKA_SASL_MECHANISM``.

A broker that does not answer is not a credentials problem: it returns ``None`` and the caller's
usual retry applies. With ``PLAINTEXT`` nothing is checked. The password never appears in a message.
"""

from __future__ import annotations

import asyncio
import ssl

from pipeline.config.settings import Settings

__all__ = ["KafkaCredentialsError", "check_credentials", "credentials_problem"]

#: Seconds for the one connection of the check.
CHECK_TIMEOUT = 10.0


class KafkaCredentialsError(Exception):
    """The broker refused the configured TLS or SASL settings; the message names the setting."""


def _first_server(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    if "://" in first:
        first = first.split("://", 1)[1]
    host, _, port = first.rpartition(":")
    return (host.strip("[]") or first), int(port or 9092)


async def credentials_problem(settings: Settings, timeout: float = CHECK_TIMEOUT) -> str | None:
    """Why the broker refuses these settings (one line naming the setting to fix), or ``None``:
    accepted, plaintext, or not reachable right now (not a credentials problem)."""
    from aiokafka.conn import create_conn
    from aiokafka.errors import SaslAuthenticationFailed, UnsupportedSaslMechanismError

    security = settings.security
    if security.protocol == "PLAINTEXT":
        return None
    host, port = _first_server(settings.bootstrap)
    where = f"Kafka at {host}:{port}"
    try:
        connection = await asyncio.wait_for(
            create_conn(host, port, client_id=f"{settings.app_id}-credentials", **security.aiokafka()), timeout
        )
    except ssl.SSLCertVerificationError as exc:
        reason = exc.verify_message or str(exc)
        if security.ca_file:
            return (
                f"{where}: its TLS certificate is not trusted ({reason}) by LEADFLOW_KAFKA_SSL_CA_FILE="
                f"{security.ca_file}: set it to the CA that signed the broker's certificate"
            )
        return (
            f"{where}: its TLS certificate is not trusted ({reason}) by the system CAs: set "
            "LEADFLOW_KAFKA_SSL_CA_FILE to the CA that signed the broker's certificate"
        )
    except ssl.SSLError as exc:
        return (
            f"{where}: the TLS handshake failed ({exc.reason or exc}) with LEADFLOW_KAFKA_SECURITY_PROTOCOL="
            f"{security.protocol}: is that listener TLS? (or check LEADFLOW_KAFKA_SSL_CERT_FILE / _KEY_FILE)"
        )
    except SaslAuthenticationFailed:
        return (
            f"{where} refused the SASL login of user {security.sasl_username!r} ({security.sasl_mechanism}): "
            "check LEADFLOW_KAFKA_SASL_USERNAME and LEADFLOW_KAFKA_SASL_PASSWORD (or _PASSWORD_FILE)"
        )
    except UnsupportedSaslMechanismError:
        return (
            f"{where} does not enable the SASL mechanism {security.sasl_mechanism}: set "
            "LEADFLOW_KAFKA_SASL_MECHANISM to one its listener enables"
        )
    except (OSError, TimeoutError):
        return None  # unreachable: the caller's retry (or its own error) says so
    except Exception as exc:  # another broker answer: not ours to judge here
        if not type(exc).__module__.startswith("aiokafka"):
            raise
        alert = _tls_alert(exc)
        if alert is None:
            return None
        # The broker closed the connection with a TLS alert: it refused this client's certificate.
        files = (f"LEADFLOW_KAFKA_SSL_CERT_FILE={security.cert_file}" if security.cert_file
                 else "LEADFLOW_KAFKA_SSL_CERT_FILE and LEADFLOW_KAFKA_SSL_KEY_FILE (none is set)")
        return (f"{where} refused the TLS client certificate ({alert}): its listener requires one signed by "
                f"its CA; check {files}")
    connection.close()
    return None


def _tls_alert(exc: BaseException) -> str | None:
    """The TLS alert (``sslv3 alert bad certificate``...) behind a closed connection, if any."""
    seen: BaseException | None = exc
    for _ in range(5):
        seen = (seen.__cause__ or seen.__context__) if seen is not None else None
        if isinstance(seen, ssl.SSLError):
            return str(seen.reason or seen).replace("_", " ").lower()
    return None


def check_credentials(settings: Settings, timeout: float = CHECK_TIMEOUT) -> None:
    """Raise :class:`KafkaCredentialsError` when the broker refuses the configured TLS / SASL
    settings (from synchronous code: the CLI tools, before their clients start)."""
    problem = asyncio.run(credentials_problem(settings, timeout))
    if problem is not None:
        raise KafkaCredentialsError(problem)
