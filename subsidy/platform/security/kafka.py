"""Kafka client security in ONE place: every kafka-python client
(KafkaProducer, KafkaConsumer, KafkaAdminClient) is built with
``**kafka_security.client_config()`` and the faust App with
``**kafka_security.faust_config()``, so TLS and SASL are configured once, by
environment (docs/security.md):

    SUBSIDY_KAFKA_SECURITY_PROTOCOL    PLAINTEXT (default), SSL, SASL_PLAINTEXT, SASL_SSL
    SUBSIDY_KAFKA_SASL_MECHANISM       SCRAM-SHA-512 (default with SASL), SCRAM-SHA-256, PLAIN
    SUBSIDY_KAFKA_SASL_USERNAME
    SUBSIDY_KAFKA_SASL_PASSWORD        or SUBSIDY_KAFKA_SASL_PASSWORD_FILE
    SUBSIDY_KAFKA_SSL_CAFILE           CA bundle that signed the brokers' certificates
    SUBSIDY_KAFKA_SSL_CERTFILE         client certificate (broker-side mTLS), optional
    SUBSIDY_KAFKA_SSL_KEYFILE          its key, optional
    SUBSIDY_KAFKA_SSL_KEY_PASSWORD     or ..._FILE, optional
    SUBSIDY_KAFKA_SSL_CHECK_HOSTNAME   true (default); false only for a lab broker

PLAINTEXT (the local default) returns an empty mapping, so clients are built
exactly as before.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
from collections.abc import Mapping
from typing import Any

from subsidy.platform.security.secrets import secret

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


class KafkaSecurityError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    mechanism: str = ""
    username: str = ""
    password: str = dataclasses.field(default="", repr=False)
    cafile: str = ""
    certfile: str = ""
    keyfile: str = ""
    key_password: str = dataclasses.field(default="", repr=False)
    check_hostname: bool = True

    @property
    def uses_ssl(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaSecurity:
        env = os.environ if env is None else env

        def get(name: str) -> str:
            return (env.get(name) or "").strip()

        protocol = (get("SUBSIDY_KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper()
        if protocol not in PROTOCOLS:
            raise KafkaSecurityError(
                f"SUBSIDY_KAFKA_SECURITY_PROTOCOL: one of {', '.join(PROTOCOLS)}, got {protocol!r}"
            )
        mechanism = ""
        username = password = ""
        if protocol.startswith("SASL_"):
            mechanism = (get("SUBSIDY_KAFKA_SASL_MECHANISM") or "SCRAM-SHA-512").upper()
            if mechanism not in MECHANISMS:
                raise KafkaSecurityError(
                    f"SUBSIDY_KAFKA_SASL_MECHANISM: one of {', '.join(MECHANISMS)}, got {mechanism!r}"
                )
            username = get("SUBSIDY_KAFKA_SASL_USERNAME")
            password = secret("SUBSIDY_KAFKA_SASL_PASSWORD", env)
            if not username or not password:
                raise KafkaSecurityError(
                    "SASL needs SUBSIDY_KAFKA_SASL_USERNAME and SUBSIDY_KAFKA_SASL_PASSWORD (or _PASSWORD_FILE)"
                )
        check = get("SUBSIDY_KAFKA_SSL_CHECK_HOSTNAME").lower() not in ("0", "false", "no", "off")
        return cls(
            protocol=protocol,
            mechanism=mechanism,
            username=username,
            password=password,
            cafile=get("SUBSIDY_KAFKA_SSL_CAFILE"),
            certfile=get("SUBSIDY_KAFKA_SSL_CERTFILE"),
            keyfile=get("SUBSIDY_KAFKA_SSL_KEYFILE"),
            key_password=secret("SUBSIDY_KAFKA_SSL_KEY_PASSWORD", env),
            check_hostname=check,
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for aiokafka/faust (kafka-python takes the files)."""
        if not self.uses_ssl:
            return None
        context = ssl.create_default_context(cafile=self.cafile or None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = self.check_hostname
        if self.certfile:
            context.load_cert_chain(self.certfile, self.keyfile or None, self.key_password or None)
        return context

    def kafka_python(self) -> dict[str, Any]:
        if self.protocol == "PLAINTEXT":
            return {}
        config: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_sasl:
            config.update(
                sasl_mechanism=self.mechanism, sasl_plain_username=self.username, sasl_plain_password=self.password
            )
        if self.uses_ssl:
            config["ssl_check_hostname"] = self.check_hostname
            if self.cafile:
                config["ssl_cafile"] = self.cafile
            if self.certfile:
                config["ssl_certfile"] = self.certfile
            if self.keyfile:
                config["ssl_keyfile"] = self.keyfile
            if self.key_password:
                config["ssl_password"] = self.key_password
        return config

    def faust(self) -> dict[str, Any]:
        if self.protocol == "PLAINTEXT":
            return {}
        import faust

        context = self.ssl_context()
        if self.uses_sasl:
            credentials: Any = faust.SASLCredentials(
                username=self.username, password=self.password, ssl_context=context, mechanism=self.mechanism
            )
        else:
            credentials = faust.SSLCredentials(context)
        return {"broker_credentials": credentials}

    def describe(self) -> dict[str, Any]:
        """For the start-up log line: no password."""
        return {"kafka_security_protocol": self.protocol, "kafka_sasl_mechanism": self.mechanism or None}


def client_config(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for every kafka-python client (empty for PLAINTEXT)."""
    return KafkaSecurity.from_env(env).kafka_python()


def faust_config(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``faust.App`` (``broker_credentials``), empty for PLAINTEXT."""
    return KafkaSecurity.from_env(env).faust()
