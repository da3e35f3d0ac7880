"""Prometheus metrics of intake (served over HTTP by bootstrap.py)."""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge

from subsidy.platform import metrics as shared


def _counter(name: str, documentation: str, labels: tuple[str, ...] = ()) -> Counter:
    # Another service's module in the same process (an end-to-end test) may
    # have registered the shared name already: use that one.
    try:
        return Counter(name, documentation, labels)
    except ValueError:
        existing = REGISTRY._names_to_collectors.get(name) or REGISTRY._names_to_collectors.get(f"{name}_total")
        if existing is None:
            raise
        return existing  # type: ignore[return-value]


SUBMISSIONS = _counter(
    "subsidy_intake_submissions", "SubmitApplication answers by outcome.", ("outcome",)
)
OUTBOX_PUBLISHED = _counter("subsidy_intake_outbox_published", "Outbox events acknowledged by Kafka.")
OUTBOX_FAILURES = _counter("subsidy_intake_outbox_publish_failures", "Outbox publish attempts that failed.")
DECISIONS_APPLIED = _counter(
    "subsidy_intake_decisions", "Decisions consumed by the status projection, by result.", ("result",)
)
PAYOUT_EVENTS_APPLIED = _counter(
    "subsidy_intake_payout_events", "Payout events folded into applications' grants, by result.", ("result",)
)
# Shared across services (subsidy/platform/metrics.py): every consumer counts what it dead-letters.
DEAD_LETTERS = shared.DEAD_LETTERS
