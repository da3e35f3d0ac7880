"""Reading a service's settings from the environment, the one way intake,
payout and notify do it (each service's ``config.py`` says which variables
and defaults it has; this says how a value is read).

- ``text``: a blank or unset variable means the default;
- ``raw``: set, even to "", wins (``…_METRICS_ADDRESS=""`` turns the
  endpoint off); unset means the default;
- ``number`` / ``whole``: ``text`` as a float or an int (a bad value fails
  at start with Python's own message, naming the value);
- ``secret``: from ``NAME`` or the file named by ``NAME_FILE``
  (subsidy/platform/security/secrets.py);
- ``service``: the settings every service with a database and a gRPC port
  has, under ``SUBSIDY_<SERVICE>_…``, named as the services' Settings name them;
- ``registry``: the government data platform's settings (``SUBSIDY_REGISTRY_…``),
  which intake and notify read alike (subsidy/platform/registry.py).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from subsidy.platform.security.secrets import secret


class Env:
    def __init__(self, env: Mapping[str, str] | None = None):
        self.env = os.environ if env is None else env

    def text(self, name: str, default: str) -> str:
        value = self.env.get(name)
        return default if value is None or value.strip() == "" else value.strip()

    def raw(self, name: str, default: str = "") -> str:
        return self.env.get(name, default).strip()

    def number(self, name: str, default: float) -> float:
        return float(self.text(name, str(default)))

    def whole(self, name: str, default: int) -> int:
        return int(self.text(name, str(default)))

    def secret(self, name: str, default: str = "") -> str:
        return secret(name, self.env, default)

    def service(self, name: str, defaults: Any, *, metrics_refresh: bool = False) -> dict[str, Any]:
        """kafka_bootstrap, grpc_address, database_url, metrics_address,
        grace_s, health_interval_s, stall_s and log_level (and, with
        ``metrics_refresh``, metrics_refresh_s), read over ``defaults`` (the
        Settings' own defaults)."""
        prefix = f"SUBSIDY_{name.upper()}_"
        common = dict(
            kafka_bootstrap=self.text("KAFKA_BOOTSTRAP_SERVERS", defaults.kafka_bootstrap),
            grpc_address=self.text(prefix + "GRPC_ADDRESS", defaults.grpc_address),
            database_url=self.secret(prefix + "DATABASE_URL", defaults.database_url),
            metrics_address=self.raw(prefix + "METRICS_ADDRESS", defaults.metrics_address),
            grace_s=self.number(prefix + "GRACE_SECONDS", defaults.grace_s),
            health_interval_s=self.number(prefix + "HEALTH_INTERVAL_SECONDS", defaults.health_interval_s),
            stall_s=self.number(prefix + "STALL_SECONDS", defaults.stall_s),
            log_level=self.text("SUBSIDY_LOG_LEVEL", defaults.log_level).upper(),
        )
        if metrics_refresh:
            common["metrics_refresh_s"] = self.number(prefix + "METRICS_REFRESH_SECONDS", defaults.metrics_refresh_s)
        return common

    def registry(self, defaults: Any) -> dict[str, Any]:
        """registry_url (a secret: it may carry credentials), registry_file,
        registry_timeout_s and registry_attempts, read over ``defaults``."""
        return dict(
            registry_url=self.secret("SUBSIDY_REGISTRY_URL"),
            registry_file=self.text("SUBSIDY_REGISTRY_FILE", defaults.registry_file),
            registry_timeout_s=self.number("SUBSIDY_REGISTRY_TIMEOUT_SECONDS", defaults.registry_timeout_s),
            registry_attempts=self.whole("SUBSIDY_REGISTRY_ATTEMPTS", defaults.registry_attempts),
        )
