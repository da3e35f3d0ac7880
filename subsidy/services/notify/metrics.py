"""Prometheus metrics of notify (served over HTTP by bootstrap.py)."""

from __future__ import annotations

from prometheus_client import Counter

from subsidy.platform import metrics as shared

# Every metric through shared.metric: a name another service's module
# registered first in the same process (an end-to-end test) is reused.
SENT = shared.metric(Counter, "subsidy_notifications_sent", "Notifications delivered, by channel.", ("channel",))
FAILED = shared.metric(
    Counter,
    "subsidy_notifications_failed",
    "Notifications given up on after their retries (the event went to the dead-letter topic), by channel.",
    ("channel",),
)
ATTEMPTS_FAILED = shared.metric(
    Counter,
    "subsidy_notifications_attempts_failed",
    "Delivery attempts that failed (retried or not), by channel.",
    ("channel",),
)
SKIPPED = shared.metric(
    Counter,
    "subsidy_notifications_skipped",
    "Notifications not sent, by channel and reason (replayed: already in the log; no_contact; unknown_firm).",
    ("channel", "reason"),
)
# Shared across services (subsidy/platform/metrics.py): every consumer counts what it dead-letters.
DEAD_LETTERS = shared.DEAD_LETTERS
