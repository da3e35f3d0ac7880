"""Configuration from environment variables (read by bootstrap.py only)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from subsidy.platform.config import Env


@dataclasses.dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    grpc_address: str = "127.0.0.1:50057"
    database_url: str = dataclasses.field(default="sqlite:///var/registry_sync.db", repr=False)
    # The data platform's change feed (docs/data-platform.md) and its bearer
    # token (SUBSIDY_REGISTRY_SYNC_FEED_TOKEN_FILE: a mounted Secret).
    feed_url: str = "http://127.0.0.1:8790"
    feed_token: str = dataclasses.field(default="", repr=False)
    feed_timeout_s: float = 10.0
    feed_attempts: int = 4
    feed_backoff_s: float = 0.5
    feed_max_backoff_s: float = 30.0
    page_size: int = 500
    # Between rounds when caught up; after a failed round the wait doubles up to the cap.
    poll_interval_s: float = 5.0
    failure_max_backoff_s: float = 300.0
    metrics_address: str = "127.0.0.1:9470"  # empty or "off": no metrics endpoint
    grace_s: float = 5.0
    health_interval_s: float = 1.0
    # The relay failing (Kafka down) this long turns health NOT_SERVING.
    stall_s: float = 120.0
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e, d = Env(env), cls()
        return cls(
            kafka_bootstrap=e.text("KAFKA_BOOTSTRAP_SERVERS", d.kafka_bootstrap),
            grpc_address=e.text("SUBSIDY_REGISTRY_SYNC_GRPC_ADDRESS", d.grpc_address),
            database_url=e.secret("SUBSIDY_REGISTRY_SYNC_DATABASE_URL", d.database_url),
            feed_url=e.text("SUBSIDY_REGISTRY_SYNC_FEED_URL", d.feed_url),
            feed_token=e.secret("SUBSIDY_REGISTRY_SYNC_FEED_TOKEN"),
            feed_timeout_s=e.number("SUBSIDY_REGISTRY_SYNC_FEED_TIMEOUT_SECONDS", d.feed_timeout_s),
            feed_attempts=max(1, e.whole("SUBSIDY_REGISTRY_SYNC_FEED_ATTEMPTS", d.feed_attempts)),
            feed_backoff_s=e.number("SUBSIDY_REGISTRY_SYNC_FEED_BACKOFF_SECONDS", d.feed_backoff_s),
            feed_max_backoff_s=e.number("SUBSIDY_REGISTRY_SYNC_FEED_MAX_BACKOFF_SECONDS", d.feed_max_backoff_s),
            page_size=max(1, e.whole("SUBSIDY_REGISTRY_SYNC_PAGE_SIZE", d.page_size)),
            poll_interval_s=e.number("SUBSIDY_REGISTRY_SYNC_POLL_SECONDS", d.poll_interval_s),
            failure_max_backoff_s=e.number(
                "SUBSIDY_REGISTRY_SYNC_FAILURE_MAX_BACKOFF_SECONDS", d.failure_max_backoff_s
            ),
            metrics_address=e.raw("SUBSIDY_REGISTRY_SYNC_METRICS_ADDRESS", d.metrics_address),
            grace_s=e.number("SUBSIDY_REGISTRY_SYNC_GRACE_SECONDS", d.grace_s),
            health_interval_s=e.number("SUBSIDY_REGISTRY_SYNC_HEALTH_INTERVAL_SECONDS", d.health_interval_s),
            stall_s=e.number("SUBSIDY_REGISTRY_SYNC_STALL_SECONDS", d.stall_s),
            log_level=e.text("SUBSIDY_LOG_LEVEL", d.log_level).upper(),
        )
