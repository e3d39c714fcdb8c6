"""TLS / SASL settings (issue 15): parsing, the arguments each client library gets, and a
password that never shows."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from pipeline.config.security import Secret, security_from_env
from pipeline.config.settings import SettingsError, from_env
from pipeline.kafka.options import consumer_options, producer_options


def test_plaintext_adds_nothing_to_any_client() -> None:
    security = security_from_env({})
    assert security.protocol == "PLAINTEXT" and security.aiokafka() == {} and security.kafka_python() == {}


def test_sasl_ssl_reaches_aiokafka_kafka_python_and_never_shows_the_password(tmp_path: Path) -> None:
    secret_file = tmp_path / "password"
    secret_file.write_text("hunter2-very-secret\n")
    env = {"LEADFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "LEADFLOW_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
           "LEADFLOW_KAFKA_SASL_USERNAME": "leadflow", "LEADFLOW_KAFKA_SASL_PASSWORD_FILE": str(secret_file)}
    settings = from_env(env)
    aio = consumer_options(settings, "g")
    assert aio["security_protocol"] == "SASL_SSL" and aio["sasl_mechanism"] == "SCRAM-SHA-512"
    assert aio["sasl_plain_password"] == "hunter2-very-secret" and isinstance(aio["ssl_context"], ssl.SSLContext)
    assert producer_options(settings)["sasl_plain_username"] == "leadflow"
    assert settings.security.kafka_python()["sasl_plain_password"] == "hunter2-very-secret"
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.security)
    assert repr(Secret("x")) == "Secret('***')"
    assert settings.to_env()["LEADFLOW_KAFKA_SASL_PASSWORD"] == "hunter2-very-secret"  # to a child process only


@pytest.mark.parametrize(("env", "message"), [
    ({"LEADFLOW_KAFKA_SECURITY_PROTOCOL": "TLS"}, "LEADFLOW_KAFKA_SECURITY_PROTOCOL='TLS': choose one of"),
    ({"LEADFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "LEADFLOW_KAFKA_SASL_MECHANISM": "GSSAPI"},
     "LEADFLOW_KAFKA_SASL_MECHANISM='GSSAPI': with SASL_SSL choose one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
    ({"LEADFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "LEADFLOW_KAFKA_SASL_MECHANISM": "PLAIN",
      "LEADFLOW_KAFKA_SASL_USERNAME": "u"}, "SASL_PLAINTEXT needs LEADFLOW_KAFKA_SASL_USERNAME and"),
    ({"LEADFLOW_KAFKA_SECURITY_PROTOCOL": "SSL", "LEADFLOW_KAFKA_SSL_CA_FILE": "/nonexistent/ca.pem"},
     "LEADFLOW_KAFKA_SSL_CA_FILE=/nonexistent/ca.pem: no such file"),
    ({"LEADFLOW_KAFKA_SASL_USERNAME": "u", "LEADFLOW_KAFKA_SASL_PASSWORD": "sekrit-pw"},
     "SASL settings are set but LEADFLOW_KAFKA_SECURITY_PROTOCOL=PLAINTEXT"),
])
def test_settings_that_cannot_work_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        from_env(env)
    assert message in str(caught.value) and "sekrit" not in str(caught.value)
