"""Configuration from environment variables (read by bootstrap.py only)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from subsidy.platform.config import Env
from subsidy.platform.security.config import SecurityConfig


@dataclasses.dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    grpc_address: str = "127.0.0.1:50054"
    database_url: str = dataclasses.field(default="sqlite:///var/notify.db", repr=False)
    consumer_group: str = "subsidy-notify"
    # E-mail: an SMTP server (smtp://, smtp+starttls://, smtps://), or, when
    # empty, .eml files in mail_dir (the local default).
    smtp_url: str = dataclasses.field(default="", repr=False)
    smtp_timeout_s: float = 10.0
    smtp_cafile: str = ""  # CA bundle for the SMTP server's certificate (default: the system's)
    mail_from: str = "subsidy-notify@songjiang.example.cn"
    mail_dir: str = "var/mail"
    # Webhook: on only with a signing secret. SMS: on only with a gateway URL.
    # Every secret X may be given as X_FILE (a mounted file) instead.
    # Legacy single key: X-Subsidy-Signature: sha256=<hex>.
    webhook_secret: str = dataclasses.field(default="", repr=False)
    # Rotating keys "kid1=secret1,kid2=secret2": the active one (default: the
    # first) signs, X-Subsidy-Signature: keyid=<kid>,sha256=<hex>.
    webhook_keys: str = dataclasses.field(default="", repr=False)
    webhook_active_key_id: str = ""
    webhook_timeout_s: float = 5.0
    # Webhook URLs are https:// only; plain http:// to a loopback host
    # (127.0.0.0/8, ::1, localhost) when this is on. auto: on when notify runs
    # without TLS (no SUBSIDY_TLS_CERT_FILE / SUBSIDY_NOTIFY_TLS_CERT_FILE), the
    # rule of SUBSIDY_GRPC_REFLECTION; the cluster sets off.
    webhook_allow_http_loopback: str = "auto"
    tls: bool = False  # notify's gRPC server has TLS (SecurityConfig.tls)
    sms_gateway_url: str = dataclasses.field(default="", repr=False)
    sms_timeout_s: float = 5.0
    registry_source: str = ""  # file, http or topic (SUBSIDY_REGISTRY_SOURCE)
    registry_url: str = ""
    registry_file: str = "demo/registry.json"
    registry_timeout_s: float = 2.0
    registry_attempts: int = 3
    # Delivery retries per channel: attempts in all, backoff doubling from
    # retry_backoff_s up to retry_max_backoff_s.
    attempts: int = 5
    retry_backoff_s: float = 0.5
    retry_max_backoff_s: float = 30.0
    metrics_address: str = "127.0.0.1:9467"  # empty or "off": no metrics endpoint
    grace_s: float = 5.0
    health_interval_s: float = 1.0
    # Health: the consumer not polling (or, with lag, not advancing) for this
    # long turns health NOT_SERVING. Longer than elsewhere: one record may
    # legitimately wait out its delivery retries on every channel.
    stall_s: float = 180.0
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e, d = Env(env), cls()
        return cls(
            kafka_bootstrap=e.text("KAFKA_BOOTSTRAP_SERVERS", d.kafka_bootstrap),
            grpc_address=e.text("SUBSIDY_NOTIFY_GRPC_ADDRESS", d.grpc_address),
            database_url=e.secret("SUBSIDY_NOTIFY_DATABASE_URL", d.database_url),
            consumer_group=e.text("SUBSIDY_NOTIFY_GROUP", d.consumer_group),
            smtp_url=e.secret("SUBSIDY_NOTIFY_SMTP_URL"),
            smtp_cafile=e.raw("SUBSIDY_NOTIFY_SMTP_CAFILE"),
            smtp_timeout_s=e.number("SUBSIDY_NOTIFY_SMTP_TIMEOUT_SECONDS", d.smtp_timeout_s),
            mail_from=e.text("SUBSIDY_NOTIFY_MAIL_FROM", d.mail_from),
            mail_dir=e.text("SUBSIDY_NOTIFY_MAIL_DIR", d.mail_dir),
            webhook_secret=e.secret("SUBSIDY_NOTIFY_WEBHOOK_SECRET"),
            webhook_keys=e.secret("SUBSIDY_NOTIFY_WEBHOOK_KEYS"),
            webhook_active_key_id=e.raw("SUBSIDY_NOTIFY_WEBHOOK_ACTIVE_KEY_ID"),
            webhook_timeout_s=e.number("SUBSIDY_NOTIFY_WEBHOOK_TIMEOUT_SECONDS", d.webhook_timeout_s),
            webhook_allow_http_loopback=e.text(
                "SUBSIDY_NOTIFY_WEBHOOK_ALLOW_HTTP_LOOPBACK", d.webhook_allow_http_loopback
            ).lower(),
            tls=SecurityConfig.from_env("notify", e.env).tls,
            sms_gateway_url=e.secret("SUBSIDY_NOTIFY_SMS_GATEWAY_URL"),
            sms_timeout_s=e.number("SUBSIDY_NOTIFY_SMS_TIMEOUT_SECONDS", d.sms_timeout_s),
            registry_source=e.text("SUBSIDY_REGISTRY_SOURCE", d.registry_source).lower(),
            registry_url=e.secret("SUBSIDY_REGISTRY_URL"),
            registry_file=e.text("SUBSIDY_REGISTRY_FILE", d.registry_file),
            registry_timeout_s=e.number("SUBSIDY_REGISTRY_TIMEOUT_SECONDS", d.registry_timeout_s),
            registry_attempts=e.whole("SUBSIDY_REGISTRY_ATTEMPTS", d.registry_attempts),
            attempts=max(1, e.whole("SUBSIDY_NOTIFY_ATTEMPTS", d.attempts)),
            retry_backoff_s=e.number("SUBSIDY_NOTIFY_RETRY_BACKOFF_SECONDS", d.retry_backoff_s),
            retry_max_backoff_s=e.number("SUBSIDY_NOTIFY_RETRY_MAX_BACKOFF_SECONDS", d.retry_max_backoff_s),
            metrics_address=e.raw("SUBSIDY_NOTIFY_METRICS_ADDRESS", d.metrics_address),
            grace_s=e.number("SUBSIDY_NOTIFY_GRACE_SECONDS", d.grace_s),
            health_interval_s=e.number("SUBSIDY_NOTIFY_HEALTH_INTERVAL_SECONDS", d.health_interval_s),
            stall_s=e.number("SUBSIDY_NOTIFY_STALL_SECONDS", d.stall_s),
            log_level=e.text("SUBSIDY_LOG_LEVEL", d.log_level).upper(),
        )

    def __post_init__(self) -> None:
        if self.webhook_allow_http_loopback not in ("auto", "on", "off"):
            raise ValueError(
                f"SUBSIDY_NOTIFY_WEBHOOK_ALLOW_HTTP_LOOPBACK: auto, on or off, got {self.webhook_allow_http_loopback!r}"
            )

    @property
    def webhook_http_loopback_allowed(self) -> bool:
        """auto: on in plaintext only (as SecurityConfig.reflection_enabled)."""
        if self.webhook_allow_http_loopback == "auto":
            return not self.tls
        return self.webhook_allow_http_loopback == "on"
