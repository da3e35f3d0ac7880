"""Configuration from environment variables (read by bootstrap.py only)."""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping

from subsidy.platform.security.secrets import secret


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
        env = os.environ if env is None else env
        d = cls()

        def get(name: str, default: str) -> str:
            value = env.get(name)
            return default if value is None or value.strip() == "" and default else value.strip()

        return cls(
            kafka_bootstrap=get("KAFKA_BOOTSTRAP_SERVERS", d.kafka_bootstrap),
            grpc_address=get("SUBSIDY_INTAKE_GRPC_ADDRESS", d.grpc_address),
            database_url=secret("SUBSIDY_INTAKE_DATABASE_URL", env, d.database_url),
            registry_url=secret("SUBSIDY_REGISTRY_URL", env),
            registry_file=get("SUBSIDY_REGISTRY_FILE", d.registry_file),
            registry_timeout_s=float(get("SUBSIDY_REGISTRY_TIMEOUT_SECONDS", str(d.registry_timeout_s))),
            registry_attempts=int(get("SUBSIDY_REGISTRY_ATTEMPTS", str(d.registry_attempts))),
            directory_dir=get("SUBSIDY_DIRECTORY_DIR", d.directory_dir),
            metrics_address=env.get("SUBSIDY_INTAKE_METRICS_ADDRESS", d.metrics_address).strip(),
            projection_group=get("SUBSIDY_INTAKE_PROJECTION_GROUP", d.projection_group),
            grace_s=float(get("SUBSIDY_INTAKE_GRACE_SECONDS", str(d.grace_s))),
            health_interval_s=float(get("SUBSIDY_INTAKE_HEALTH_INTERVAL_SECONDS", str(d.health_interval_s))),
            stall_s=float(get("SUBSIDY_INTAKE_STALL_SECONDS", str(d.stall_s))),
            metrics_refresh_s=float(get("SUBSIDY_INTAKE_METRICS_REFRESH_SECONDS", str(d.metrics_refresh_s))),
            log_level=get("SUBSIDY_LOG_LEVEL", d.log_level).upper(),
        )
