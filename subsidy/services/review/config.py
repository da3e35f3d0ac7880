"""Configuration from environment variables (read by bootstrap.py only; docs/review.md)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from subsidy.platform.config import Env


@dataclasses.dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    grpc_address: str = "127.0.0.1:50055"
    database_url: str = dataclasses.field(default="sqlite:///var/review.db", repr=False)
    metrics_address: str = "127.0.0.1:9468"  # empty or "off": no metrics endpoint
    today: str = ""  # YYYY-MM-DD: a fixed "today" (SUBSIDY_REVIEW_TODAY); the dev clock file wins when set
    workflow_file: str = ""  # policy/workflow.yaml by default (SUBSIDY_POLICY_DIR)
    notice_font: str = ""  # a CJK TrueType font for the notice PDF; default: fonts-wqy-microhei's
    decisions_group: str = "subsidy-review"
    payouts_group: str = "subsidy-review-payouts"
    applications_group: str = "subsidy-review-applications"
    scheduler_interval_s: float = 30.0
    session_timeout_ms: int = 10000
    grace_s: float = 5.0
    health_interval_s: float = 1.0
    stall_s: float = 60.0
    metrics_refresh_s: float = 5.0
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e, d = Env(env), cls()
        return cls(
            kafka_bootstrap=e.text("KAFKA_BOOTSTRAP_SERVERS", d.kafka_bootstrap),
            grpc_address=e.text("SUBSIDY_REVIEW_GRPC_ADDRESS", d.grpc_address),
            database_url=e.secret("SUBSIDY_REVIEW_DATABASE_URL", d.database_url),
            metrics_address=e.raw("SUBSIDY_REVIEW_METRICS_ADDRESS", d.metrics_address),
            today=e.raw("SUBSIDY_REVIEW_TODAY"),
            workflow_file=e.raw("SUBSIDY_REVIEW_WORKFLOW_FILE"),
            notice_font=e.raw("SUBSIDY_REVIEW_NOTICE_FONT"),
            decisions_group=e.text("SUBSIDY_REVIEW_GROUP", d.decisions_group),
            payouts_group=e.text("SUBSIDY_REVIEW_PAYOUTS_GROUP", d.payouts_group),
            applications_group=e.text("SUBSIDY_REVIEW_APPLICATIONS_GROUP", d.applications_group),
            scheduler_interval_s=e.number("SUBSIDY_REVIEW_SCHEDULER_INTERVAL_SECONDS", d.scheduler_interval_s),
            session_timeout_ms=e.whole("SUBSIDY_REVIEW_KAFKA_SESSION_TIMEOUT_MS", d.session_timeout_ms),
            grace_s=e.number("SUBSIDY_REVIEW_GRACE_SECONDS", d.grace_s),
            health_interval_s=e.number("SUBSIDY_REVIEW_HEALTH_INTERVAL_SECONDS", d.health_interval_s),
            stall_s=e.number("SUBSIDY_REVIEW_STALL_SECONDS", d.stall_s),
            metrics_refresh_s=e.number("SUBSIDY_REVIEW_METRICS_REFRESH_SECONDS", d.metrics_refresh_s),
            log_level=e.text("SUBSIDY_LOG_LEVEL", d.log_level).upper(),
        )
