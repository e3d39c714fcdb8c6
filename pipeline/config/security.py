"""Secure Kafka connections: TLS and SASL settings for every client Leadflow starts.

One :class:`KafkaSecurity` (``Settings.security``, from ``LEADFLOW_KAFKA_*`` variables) gives the
arguments of each client library: :meth:`~KafkaSecurity.aiokafka` (the consumers, producers and
health probe), :meth:`~KafkaSecurity.kafka_python` (the admin client, ``produce``, ``tail``,
``sweep``) and, in the runtime, Faust's credentials from :meth:`~KafkaSecurity.ssl_context`. The
SASL password is a :class:`Secret`: it never appears in a ``repr``, a log line or an error.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.config.env import EnvReader, SettingsError

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class Secret:
    """A value that is never shown: ``repr``/``str`` are ``'***'``; :attr:`value` reads it."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """How clients connect: ``protocol`` and, for TLS, the CA / client certificate files, for
    SASL the mechanism, user and password."""

    protocol: str = "PLAINTEXT"
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context (server verified against ``ca_file``, else the system CAs; the client
        certificate when given); ``None`` without TLS."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments of aiokafka's clients (none for plaintext: the libraries' defaults)."""
        if self.protocol == "PLAINTEXT":
            return {}
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            options["ssl_context"] = self.ssl_context()
        if self.sasl:
            options.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                           sasl_plain_password=self.sasl_password.value if self.sasl_password else None)
        return options

    def kafka_python(self) -> dict[str, Any]:
        """Keyword arguments of kafka-python's clients (none for plaintext)."""
        if self.protocol == "PLAINTEXT":
            return {}
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            options.update(ssl_cafile=self.ca_file, ssl_certfile=self.cert_file, ssl_keyfile=self.key_file,
                           ssl_check_hostname=True)
        if self.sasl:
            options.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                           sasl_plain_password=self.sasl_password.value if self.sasl_password else None)
        return options

    def to_env(self) -> dict[str, str]:
        """As ``LEADFLOW_KAFKA_*`` variables (for a child process; the password included)."""
        env = {"LEADFLOW_KAFKA_SECURITY_PROTOCOL": self.protocol}
        for name, value in (("SSL_CA_FILE", self.ca_file), ("SSL_CERT_FILE", self.cert_file),
                            ("SSL_KEY_FILE", self.key_file), ("SASL_MECHANISM", self.sasl_mechanism),
                            ("SASL_USERNAME", self.sasl_username),
                            ("SASL_PASSWORD", self.sasl_password.value if self.sasl_password else None)):
            if value is not None:
                env[f"LEADFLOW_KAFKA_{name}"] = value
        return env


def _file(read: EnvReader, name: str) -> str | None:
    path = read.text(name)
    if path is not None and not os.path.isfile(path):
        raise SettingsError(f"{name}={path}: no such file")
    return path


def security_from_env(env: Mapping[str, str] | None = None) -> KafkaSecurity:
    """:class:`KafkaSecurity` from ``LEADFLOW_KAFKA_SECURITY_PROTOCOL``, ``LEADFLOW_KAFKA_SSL_CA_FILE``,
    ``..._SSL_CERT_FILE``, ``..._SSL_KEY_FILE``, ``..._SASL_MECHANISM``, ``..._SASL_USERNAME`` and
    ``..._SASL_PASSWORD`` or ``..._SASL_PASSWORD_FILE``; a setting that cannot work raises
    :class:`SettingsError` naming the variable (never showing the password)."""
    read = EnvReader(env)
    protocol = read.choice("LEADFLOW_KAFKA_SECURITY_PROTOCOL", PROTOCOLS, "PLAINTEXT")
    ca_file = _file(read, "LEADFLOW_KAFKA_SSL_CA_FILE")
    cert_file = _file(read, "LEADFLOW_KAFKA_SSL_CERT_FILE")
    key_file = _file(read, "LEADFLOW_KAFKA_SSL_KEY_FILE")
    if key_file and not cert_file:
        raise SettingsError("LEADFLOW_KAFKA_SSL_KEY_FILE is set without LEADFLOW_KAFKA_SSL_CERT_FILE")
    mechanism = read.text("LEADFLOW_KAFKA_SASL_MECHANISM")
    username = read.text("LEADFLOW_KAFKA_SASL_USERNAME")
    password = read.raw("LEADFLOW_KAFKA_SASL_PASSWORD") or None
    password_file = _file(read, "LEADFLOW_KAFKA_SASL_PASSWORD_FILE")
    if password is not None and password_file is not None:
        raise SettingsError("set LEADFLOW_KAFKA_SASL_PASSWORD or LEADFLOW_KAFKA_SASL_PASSWORD_FILE, not both")
    if password_file is not None:
        with open(password_file, encoding="utf-8") as handle:
            password = handle.read().strip()
    if protocol.startswith("SASL_"):
        if mechanism not in SASL_MECHANISMS:
            raise SettingsError(f"LEADFLOW_KAFKA_SASL_MECHANISM={mechanism!r}: with {protocol} choose one of "
                                f"{', '.join(SASL_MECHANISMS)}")
        if not username or not password:
            raise SettingsError(f"{protocol} needs LEADFLOW_KAFKA_SASL_USERNAME and LEADFLOW_KAFKA_SASL_PASSWORD "
                                "(or LEADFLOW_KAFKA_SASL_PASSWORD_FILE)")
    elif mechanism or username or password:
        raise SettingsError(f"SASL settings are set but LEADFLOW_KAFKA_SECURITY_PROTOCOL={protocol}: "
                            "use SASL_SSL or SASL_PLAINTEXT")
    if (ca_file or cert_file) and protocol not in ("SSL", "SASL_SSL"):
        raise SettingsError(f"TLS files are set but LEADFLOW_KAFKA_SECURITY_PROTOCOL={protocol}: use SSL or SASL_SSL")
    return KafkaSecurity(protocol, ca_file, cert_file, key_file, mechanism if protocol.startswith("SASL_") else None,
                         username, Secret(password) if password else None)
