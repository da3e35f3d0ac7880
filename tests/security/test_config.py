"""Configuration mapping: Kafka TLS/SASL, secrets from *_FILE, per-service
TLS overrides, redaction of URLs."""

from __future__ import annotations

import ssl

import pytest

from subsidy.platform.security import SecurityConfig, SecurityConfigError, redact_url, secret
from subsidy.platform.security import kafka as kafka_security
from subsidy.platform.security.secrets import SecretError


def test_kafka_plaintext_is_the_default_and_changes_nothing():
    assert kafka_security.client_config({}) == {}
    assert kafka_security.faust_config({}) == {}


def test_kafka_sasl_ssl_scram_sha_512_with_the_password_from_a_file(tmp_path, pki):
    password = tmp_path / "kafka-password"
    password.write_text("s3cr3t\n")
    env = {
        "SUBSIDY_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "SUBSIDY_KAFKA_SASL_USERNAME": "intake",
        "SUBSIDY_KAFKA_SASL_PASSWORD_FILE": str(password),
        "SUBSIDY_KAFKA_SSL_CAFILE": pki.write("kafka-ca.crt", pki.ca.pem),
    }
    config = kafka_security.client_config(env)
    assert config == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "intake",
        "sasl_plain_password": "s3cr3t",
        "ssl_check_hostname": True,
        "ssl_cafile": env["SUBSIDY_KAFKA_SSL_CAFILE"],
    }
    # kafka-python accepts every key
    from kafka import KafkaProducer

    assert set(config) <= set(KafkaProducer.DEFAULT_CONFIG)
    faust = kafka_security.faust_config(env)
    credentials = faust["broker_credentials"]
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    auth = credentials_to_aiokafka_auth(credentials)
    assert auth["security_protocol"] == "SASL_SSL" and auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert auth["sasl_plain_password"] == "s3cr3t"
    assert isinstance(auth["ssl_context"], ssl.SSLContext) and auth["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert "s3cr3t" not in repr(kafka_security.KafkaSecurity.from_env(env))
    assert "s3cr3t" not in repr(credentials)


def test_kafka_ssl_with_a_client_certificate(pki):
    env = {
        "SUBSIDY_KAFKA_SECURITY_PROTOCOL": "SSL",
        "SUBSIDY_KAFKA_SSL_CAFILE": pki.write("k-ca.crt", pki.ca.pem),
        "SUBSIDY_KAFKA_SSL_CERTFILE": pki.write("k.crt", pki.client.cert),
        "SUBSIDY_KAFKA_SSL_KEYFILE": pki.write("k.key", pki.client.key),
    }
    config = kafka_security.client_config(env)
    assert config["security_protocol"] == "SSL" and config["ssl_certfile"].endswith("k.crt")
    assert "sasl_mechanism" not in config
    assert kafka_security.faust_config(env)["broker_credentials"].context is not None


@pytest.mark.parametrize(
    "env",
    [
        {"SUBSIDY_KAFKA_SECURITY_PROTOCOL": "TLS"},
        {"SUBSIDY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "SUBSIDY_KAFKA_SASL_USERNAME": "u"},
        {
            "SUBSIDY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "SUBSIDY_KAFKA_SASL_USERNAME": "u",
            "SUBSIDY_KAFKA_SASL_PASSWORD": "p",
            "SUBSIDY_KAFKA_SASL_MECHANISM": "GSSAPI",
        },
    ],
)
def test_kafka_bad_settings_are_refused(env):
    with pytest.raises(kafka_security.KafkaSecurityError):
        kafka_security.client_config(env)


def test_every_kafka_client_goes_through_the_helper():
    """grep: each KafkaProducer/KafkaConsumer/KafkaAdminClient built in
    subsidy/ and subsidy_dev/ passes kafka_security.client_config()."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    offenders = []
    for path in list((root / "subsidy_dev").rglob("*.py")) + list((root / "subsidy").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"(KafkaProducer|KafkaConsumer|KafkaAdminClient|faust\.App)\(", text):
            start = match.start()
            line = text.rfind("\n", 0, start)
            if text[line:start].lstrip().startswith(("#", "from", "import")) or "class " in text[line:start]:
                continue
            depth, i = 1, match.end()
            while depth:
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            call = text[start:i]
            if "kafka_security" not in call and "faust_settings" not in call:
                offenders.append(f"{path.relative_to(root)}: {call[:60]}")
    assert not offenders, offenders


def test_secrets_come_from_files_first(tmp_path):
    f = tmp_path / "s"
    f.write_text("from-file\n")
    assert secret("X", {"X": "from-env", "X_FILE": str(f)}) == "from-file"
    assert secret("X", {"X": " from-env "}) == "from-env"
    assert secret("X", {}, "default") == "default"
    with pytest.raises(SecretError) as failed:
        secret("X", {"X_FILE": str(tmp_path / "missing")})
    assert "X_FILE" in str(failed.value)


def test_service_settings_read_secrets_from_files(tmp_path):
    from subsidy.services.intake.config import Settings as IntakeSettings
    from subsidy.services.notify.config import Settings as NotifySettings
    from subsidy.services.payout.config import Settings as PayoutSettings

    url = tmp_path / "db-url"
    url.write_text("postgresql://subsidy:pw@db:5432/subsidy?sslmode=verify-full&sslrootcert=/ca.crt\n")
    keys = tmp_path / "hooks"
    keys.write_text("k2=two,k1=one")
    assert IntakeSettings.from_env({"SUBSIDY_INTAKE_DATABASE_URL_FILE": str(url)}).database_url.startswith(
        "postgresql://"
    )
    assert PayoutSettings.from_env({"SUBSIDY_PAYOUT_DATABASE_URL_FILE": str(url)}).database_url.endswith("/ca.crt")
    notify = NotifySettings.from_env(
        {"SUBSIDY_NOTIFY_WEBHOOK_KEYS_FILE": str(keys), "SUBSIDY_NOTIFY_SMTP_URL_FILE": str(url)}
    )
    assert notify.webhook_keys == "k2=two,k1=one"
    assert "pw" not in repr(notify) and "two" not in repr(notify)


def test_database_urls_are_redacted():
    assert (
        redact_url("postgresql://subsidy:pw@db:5432/x?sslmode=verify-full&password=pw2")
        == "postgresql://subsidy:***@db:5432/x?sslmode=verify-full&password=***"
    )
    from subsidy.platform.db import Database

    with pytest.raises(ValueError) as failed:
        Database("mysql://u:topsecret@h/x")
    assert "topsecret" not in str(failed.value)


def test_per_service_overrides_and_validation():
    env = {
        "SUBSIDY_TLS_CERT_FILE": "/all.crt",
        "SUBSIDY_TLS_KEY_FILE": "/all.key",
        "SUBSIDY_PAYOUT_TLS_CERT_FILE": "/payout.crt",
        "SUBSIDY_PAYOUT_TLS_KEY_FILE": "/payout.key",
    }
    assert SecurityConfig.from_env("payout", env).tls_cert_file == "/payout.crt"
    assert SecurityConfig.from_env("intake", env).tls_cert_file == "/all.crt"
    assert not SecurityConfig.from_env("intake", env).reflection_enabled
    assert SecurityConfig.from_env("intake", {}).reflection_enabled  # plaintext dev mode
    for bad in (
        {"SUBSIDY_AUTH_MODE": "maybe"},
        {"SUBSIDY_TLS_CERT_FILE": "/x"},
        {"SUBSIDY_TLS_CLIENT_CA_FILE": "/ca"},
        {"SUBSIDY_AUTH_MODE": "mtls"},
    ):
        with pytest.raises(SecurityConfigError):
            SecurityConfig.from_env("intake", bad)


@pytest.mark.parametrize("value", ["315360000", "301", "-1", "-0.5", "nan", "inf", "thirty"])
def test_an_auth_leeway_out_of_bounds_is_refused_naming_the_variable(value):
    """Issue 17: ten years of leeway made expiry meaningless; a negative one refused valid tokens."""
    with pytest.raises(SecurityConfigError, match="SUBSIDY_AUTH_LEEWAY_SECONDS"):
        SecurityConfig.from_env("payout", {"SUBSIDY_AUTH_LEEWAY_SECONDS": value})
    with pytest.raises(SecurityConfigError, match="SUBSIDY_PAYOUT_AUTH_LEEWAY_SECONDS"):
        SecurityConfig.from_env("payout", {"SUBSIDY_PAYOUT_AUTH_LEEWAY_SECONDS": value})


@pytest.mark.parametrize("value, expected", [("", 30.0), ("0", 0.0), ("5", 5.0), ("300", 300.0)])
def test_an_auth_leeway_within_bounds_is_accepted(value, expected):
    from subsidy.platform.security.config import MAX_LEEWAY_SECONDS

    assert MAX_LEEWAY_SECONDS == 300
    assert SecurityConfig.from_env("payout", {"SUBSIDY_AUTH_LEEWAY_SECONDS": value}).leeway_s == expected
