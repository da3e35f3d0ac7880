"""Configuration from environment variables (read by bootstrap.py only)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from subsidy.platform.config import Env


@dataclasses.dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    grpc_address: str = "127.0.0.1:50058"
    database_url: str = dataclasses.field(default="sqlite:///var/operations.db", repr=False)
    # One consumer group per DLQ topic: "<prefix>-<topic>".
    group_prefix: str = "subsidy-operations"
    metrics_address: str = "127.0.0.1:9480"  # empty or "off": no metrics endpoint
    grace_s: float = 5.0
    health_interval_s: float = 1.0
    metrics_refresh_s: float = 5.0
    # A consumer or the relay failing this long turns health NOT_SERVING.
    stall_s: float = 120.0
    session_timeout_ms: int = 15_000
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e, d = Env(env), cls()
        return cls(
            kafka_bootstrap=e.text("KAFKA_BOOTSTRAP_SERVERS", d.kafka_bootstrap),
            grpc_address=e.text("SUBSIDY_OPERATIONS_GRPC_ADDRESS", d.grpc_address),
            database_url=e.secret("SUBSIDY_OPERATIONS_DATABASE_URL", d.database_url),
            group_prefix=e.text("SUBSIDY_OPERATIONS_GROUP_PREFIX", d.group_prefix),
            metrics_address=e.raw("SUBSIDY_OPERATIONS_METRICS_ADDRESS", d.metrics_address),
            grace_s=e.number("SUBSIDY_OPERATIONS_GRACE_SECONDS", d.grace_s),
            health_interval_s=e.number("SUBSIDY_OPERATIONS_HEALTH_INTERVAL_SECONDS", d.health_interval_s),
            metrics_refresh_s=e.number("SUBSIDY_OPERATIONS_METRICS_REFRESH_SECONDS", d.metrics_refresh_s),
            stall_s=e.number("SUBSIDY_OPERATIONS_STALL_SECONDS", d.stall_s),
            session_timeout_ms=e.whole("SUBSIDY_OPERATIONS_SESSION_TIMEOUT_MS", d.session_timeout_ms),
            log_level=e.text("SUBSIDY_LOG_LEVEL", d.log_level).upper(),
        )
