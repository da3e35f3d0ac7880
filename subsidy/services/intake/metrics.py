"""Prometheus metrics of intake (served over HTTP by bootstrap.py)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from subsidy.platform import metrics as shared

# Every metric through shared.metric: a name another service's module
# registered first in the same process (an end-to-end test) is reused.
SUBMISSIONS = shared.metric(
    Counter, "subsidy_intake_submissions", "SubmitApplication answers by outcome.", ("outcome",)
)
OUTBOX_PUBLISHED = shared.metric(Counter, "subsidy_intake_outbox_published", "Outbox events acknowledged by Kafka.")
OUTBOX_FAILURES = shared.metric(
    Counter, "subsidy_intake_outbox_publish_failures", "Outbox publish attempts that failed."
)
DECISIONS_APPLIED = shared.metric(
    Counter, "subsidy_intake_decisions", "Decisions consumed by the status projection, by result.", ("result",)
)
PAYOUT_EVENTS_APPLIED = shared.metric(
    Counter, "subsidy_intake_payout_events", "Payout events folded into applications' grants, by result.", ("result",)
)
PROPOSALS = shared.metric(
    Counter,
    "subsidy_intake_proposals",
    "免申即享 proposals by event (created, confirmed, declined, expired; skipped_applied: the firm already applied "
    "for the claim; skipped_proposed: the claim was already proposed under another fact).",
    ("event",),
)
PROPOSALS_BY_STATE = shared.metric(
    Gauge, "subsidy_intake_proposals_by_state", "免申即享 proposals by state, from the database.", ("state",)
)
# Shared across services (subsidy/platform/metrics.py): every consumer counts what it dead-letters.
DEAD_LETTERS = shared.DEAD_LETTERS
