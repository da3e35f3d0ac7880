"""Configuration from environment variables (read by bootstrap.py only)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from subsidy.platform.clock import Clock, clock_from_env
from subsidy.platform.config import Env


@dataclasses.dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    grpc_address: str = "127.0.0.1:50053"
    database_url: str = dataclasses.field(default="sqlite:///var/payout.db", repr=False)
    metrics_address: str = "127.0.0.1:9465"  # empty or "off": no metrics endpoint
    today: str = ""  # YYYY-MM-DD: a fixed "today" for demos and tests; empty: the real date in Songjiang
    # The dev stack's drivable clock (subsidy/platform/clock.py): a file, used
    # only with SUBSIDY_DEV_MODE=1 (refused at start otherwise); it wins over today.
    dev_clock_file: str = ""
    dev_mode: str = ""
    decisions_group: str = "subsidy-payout"
    payments_group: str = "subsidy-payout-payments"
    notices_group: str = "subsidy-payout-notices"
    firms_group: str = "subsidy-payout-firms"
    scheduler_interval_s: float = 60.0
    # How soon a replica that died without leaving the group loses its
    # partitions to the others (kafka-python's own default is 45 s).
    session_timeout_ms: int = 10000
    grace_s: float = 5.0
    health_interval_s: float = 1.0
    # Health: a consumer that has not polled (or, with lag, not advanced) for
    # this long, or a relay failing this long, turns health NOT_SERVING.
    stall_s: float = 60.0
    metrics_refresh_s: float = 5.0  # outbox and tranche gauges from the database
    # The cap reconciliation (reconcile.py) inside the service: every this
    # many seconds (0: never; the CronJob still runs it).
    reconcile_interval_s: float = 900.0
    log_level: str = "INFO"

    def clock(self) -> Clock:
        """The platform's clock from these settings (subsidy.platform.clock.clock_from_env):
        the dev clock file in dev mode, else SUBSIDY_PAYOUT_TODAY, else the real time."""
        return clock_from_env(
            {
                "SUBSIDY_DEV_CLOCK_FILE": self.dev_clock_file,
                "SUBSIDY_DEV_MODE": self.dev_mode,
                "SUBSIDY_PAYOUT_TODAY": self.today,
            },
            fixed_today_variable="SUBSIDY_PAYOUT_TODAY",
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e, d = Env(env), cls()
        return cls(
            kafka_bootstrap=e.text("KAFKA_BOOTSTRAP_SERVERS", d.kafka_bootstrap),
            grpc_address=e.text("SUBSIDY_PAYOUT_GRPC_ADDRESS", d.grpc_address),
            database_url=e.secret("SUBSIDY_PAYOUT_DATABASE_URL", d.database_url),
            metrics_address=e.raw("SUBSIDY_PAYOUT_METRICS_ADDRESS", d.metrics_address),
            today=e.raw("SUBSIDY_PAYOUT_TODAY"),
            dev_clock_file=e.raw("SUBSIDY_DEV_CLOCK_FILE"),
            dev_mode=e.raw("SUBSIDY_DEV_MODE"),
            decisions_group=e.text("SUBSIDY_PAYOUT_GROUP", d.decisions_group),
            payments_group=e.text("SUBSIDY_PAYOUT_PAYMENTS_GROUP", d.payments_group),
            notices_group=e.text("SUBSIDY_PAYOUT_NOTICES_GROUP", d.notices_group),
            firms_group=e.text("SUBSIDY_PAYOUT_FIRMS_GROUP", d.firms_group),
            scheduler_interval_s=e.number("SUBSIDY_PAYOUT_SCHEDULER_INTERVAL_SECONDS", d.scheduler_interval_s),
            session_timeout_ms=e.whole("SUBSIDY_PAYOUT_KAFKA_SESSION_TIMEOUT_MS", d.session_timeout_ms),
            grace_s=e.number("SUBSIDY_PAYOUT_GRACE_SECONDS", d.grace_s),
            health_interval_s=e.number("SUBSIDY_PAYOUT_HEALTH_INTERVAL_SECONDS", d.health_interval_s),
            stall_s=e.number("SUBSIDY_PAYOUT_STALL_SECONDS", d.stall_s),
            metrics_refresh_s=e.number("SUBSIDY_PAYOUT_METRICS_REFRESH_SECONDS", d.metrics_refresh_s),
            reconcile_interval_s=e.number("SUBSIDY_PAYOUT_RECONCILE_INTERVAL_SECONDS", d.reconcile_interval_s),
            log_level=e.text("SUBSIDY_LOG_LEVEL", d.log_level).upper(),
        )
