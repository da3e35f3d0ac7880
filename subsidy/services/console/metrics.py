"""The console's own Prometheus metrics (docs/metrics.md)."""

from __future__ import annotations

from prometheus_client import Counter

REQUESTS = Counter(
    "subsidy_console_requests_total", "Console pages and forms answered, by route and HTTP status", ["route", "status"]
)
SIGNINS = Counter("subsidy_console_signins_total", "Sign-ins, by method (oidc, dev) and result", ["method", "result"])
