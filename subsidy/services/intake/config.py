"""Configuration from environment variables (read by bootstrap.py only)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from subsidy.platform.config import Env


@dataclasses.dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    grpc_address: str = "127.0.0.1:50051"
    database_url: str = dataclasses.field(default="sqlite:///var/intake.db", repr=False)
    registry_url: str = ""  # HTTP government data platform; empty: the file registry
    # file, http or topic (subsidy.firms.v1 through TopicRegistry); empty: http
    # when registry_url is set, else file (subsidy/platform/topic_registry.py).
    registry_source: str = ""
    registry_file: str = "demo/registry.json"
    registry_timeout_s: float = 2.0
    registry_attempts: int = 3
    directory_dir: str = "policy/directory"
    metrics_address: str = "127.0.0.1:9464"  # empty: no metrics endpoint
    projection_group: str = "subsidy-intake-projection"
    # 免申即享 (docs/proposals.md): read subsidy.firms.v1 and propose; off: the
    # ProposalService still answers for what exists, nothing new is proposed.
    proposals: bool = True
    firms_group: str = "subsidy-intake-firms"
    proposal_expiry_interval_s: float = 60.0
    grace_s: float = 5.0
    health_interval_s: float = 1.0
    # Health: a consumer that has not polled (or, with lag, not advanced) for
    # this long, or a relay failing this long, turns health NOT_SERVING.
    stall_s: float = 60.0
    metrics_refresh_s: float = 5.0  # outbox gauges from the database
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e, d = Env(env), cls()
        return cls(
            kafka_bootstrap=e.text("KAFKA_BOOTSTRAP_SERVERS", d.kafka_bootstrap),
            grpc_address=e.text("SUBSIDY_INTAKE_GRPC_ADDRESS", d.grpc_address),
            database_url=e.secret("SUBSIDY_INTAKE_DATABASE_URL", d.database_url),
            registry_url=e.secret("SUBSIDY_REGISTRY_URL"),
            registry_source=e.text("SUBSIDY_REGISTRY_SOURCE", d.registry_source).lower(),
            registry_file=e.text("SUBSIDY_REGISTRY_FILE", d.registry_file),
            registry_timeout_s=e.number("SUBSIDY_REGISTRY_TIMEOUT_SECONDS", d.registry_timeout_s),
            registry_attempts=e.whole("SUBSIDY_REGISTRY_ATTEMPTS", d.registry_attempts),
            directory_dir=e.text("SUBSIDY_DIRECTORY_DIR", d.directory_dir),
            metrics_address=e.raw("SUBSIDY_INTAKE_METRICS_ADDRESS", d.metrics_address),
            projection_group=e.text("SUBSIDY_INTAKE_PROJECTION_GROUP", d.projection_group),
            proposals=_switch(e.text("SUBSIDY_INTAKE_PROPOSALS", "on")),
            firms_group=e.text("SUBSIDY_INTAKE_FIRMS_GROUP", d.firms_group),
            proposal_expiry_interval_s=e.number("SUBSIDY_INTAKE_PROPOSAL_EXPIRY_SECONDS", d.proposal_expiry_interval_s),
            grace_s=e.number("SUBSIDY_INTAKE_GRACE_SECONDS", d.grace_s),
            health_interval_s=e.number("SUBSIDY_INTAKE_HEALTH_INTERVAL_SECONDS", d.health_interval_s),
            stall_s=e.number("SUBSIDY_INTAKE_STALL_SECONDS", d.stall_s),
            metrics_refresh_s=e.number("SUBSIDY_INTAKE_METRICS_REFRESH_SECONDS", d.metrics_refresh_s),
            log_level=e.text("SUBSIDY_LOG_LEVEL", d.log_level).upper(),
        )


def _switch(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("on", "1", "true"):
        return True
    if lowered in ("off", "0", "false"):
        return False
    raise ValueError(f"SUBSIDY_INTAKE_PROPOSALS: on or off, got {value!r}")
