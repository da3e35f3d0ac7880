"""Configuration from environment variables (read by bootstrap.py only)."""

from __future__ import annotations

import dataclasses
from typing import Mapping

from subsidy.platform.config import Env


@dataclasses.dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    grpc_address: str = "127.0.0.1:50051"
    database_url: str = dataclasses.field(default="sqlite:///var/intake.db", repr=False)
    registry_url: str = ""  # HTTP government data platform; empty: the file registry
    registry_file: str = "demo/registry.json"
    registry_timeout_s: float = 2.0
    registry_attempts: int = 3
    directory_dir: str = "policy/directory"
    metrics_address: str = "127.0.0.1:9464"  # empty: no metrics endpoint
    projection_group: str = "subsidy-intake-projection"
    grace_s: float = 5.0
    health_interval_s: float = 1.0
    # Health: a consumer that has not polled (or, with lag, not advanced) for
    # this long, or a relay failing this long, turns health NOT_SERVING.
    stall_s: float = 60.0
    metrics_refresh_s: float = 5.0  # outbox gauges from the database
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        e, d = Env(env), cls()
        return cls(
            **e.service("intake", d, metrics_refresh=True),
            **e.registry(d),
            directory_dir=e.text("SUBSIDY_DIRECTORY_DIR", d.directory_dir),
            projection_group=e.text("SUBSIDY_INTAKE_PROJECTION_GROUP", d.projection_group),
        )
