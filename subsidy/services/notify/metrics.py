"""Prometheus metrics of notify (served over HTTP by bootstrap.py)."""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge

from subsidy.platform import metrics as shared


def _counter(name: str, documentation: str, labels: tuple[str, ...] = ()) -> Counter:
    # Another service's module in the same process (an end-to-end test) may
    # have registered a shared name already: use that one.
    try:
        return Counter(name, documentation, labels)
    except ValueError:
        existing = REGISTRY._names_to_collectors.get(name) or REGISTRY._names_to_collectors.get(f"{name}_total")
        if existing is None:
            raise
        return existing  # type: ignore[return-value]


SENT = _counter("subsidy_notifications_sent", "Notifications delivered, by channel.", ("channel",))
FAILED = _counter(
    "subsidy_notifications_failed",
    "Notifications given up on after their retries (the event went to the dead-letter topic), by channel.",
    ("channel",),
)
ATTEMPTS_FAILED = _counter(
    "subsidy_notifications_attempts_failed", "Delivery attempts that failed (retried or not), by channel.", ("channel",)
)
SKIPPED = _counter(
    "subsidy_notifications_skipped",
    "Notifications not sent, by channel and reason (replayed: already in the log; no_contact; unknown_firm).",
    ("channel", "reason"),
)
# Shared across services (subsidy/platform/metrics.py): every consumer counts what it dead-letters.
DEAD_LETTERS = shared.DEAD_LETTERS
