"""Reading a service's settings from the environment, the one way intake,
payout and notify do it (each service's ``config.py`` says which variables
and defaults it has; this says how a value is read).

- ``text``: a blank or unset variable means the default;
- ``raw``: set, even to "", wins (``…_METRICS_ADDRESS=""`` turns the
  endpoint off); unset means the default;
- ``number`` / ``whole``: ``text`` as a float or an int (a bad value fails
  at start with Python's own message, naming the value);
- ``secret``: from ``NAME`` or the file named by ``NAME_FILE``
  (subsidy/platform/security/secrets.py).

Each service's ``config.py`` still spells out every variable it reads, on
purpose: one search finds where a setting is read, and tests/ops/test_k8s.py
checks every variable the Kubernetes manifests set against those names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

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
