"""Prometheus metrics of review (served over HTTP by bootstrap.py)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from subsidy.platform import metrics as shared

DECISIONS = shared.metric(
    Counter,
    "subsidy_review_decisions",
    "Decisions consumed, by result (queued, replayed, ignored).",
    ("result",),
)
STEPS = shared.metric(
    Counter,
    "subsidy_review_steps",
    "Review and notice steps taken, by action (CLAIMED, DECIDED_APPROVED, SECOND_APPROVED, NOTICE_PUBLISHED, ...).",
    ("action",),
)
REFUSED = shared.metric(
    Counter,
    "subsidy_review_refused",
    "Steps refused, by RPC and gRPC status code (four-eyes, amount limits, closed items, late objections).",
    ("rpc", "code"),
)
ITEMS = shared.metric(Gauge, "subsidy_review_items", "Review items by status.", ("status",))
ITEMS_OVERDUE = shared.metric(
    Gauge, "subsidy_review_items_overdue", "Open review items past their deadline (review_deadline_working_days)."
)
CALENDAR_REMAINING = shared.metric(
    Gauge,
    "subsidy_review_holiday_calendar_remaining_seconds",
    "Time from the service's today to the last day whose working days the pinned chinesecalendar knows, "
    "in whole days as seconds (negative once past it): a notice whose period runs beyond it is refused, "
    "an item queued then has no deadline.",
)
LINES_PAYABLE = shared.metric(
    Counter, "subsidy_review_lines_payable", "Notice lines that became payable (LinePayable)."
)
OUTBOX_PUBLISHED = shared.metric(Counter, "subsidy_review_outbox_published", "Outbox events acknowledged by Kafka.")
OUTBOX_FAILURES = shared.metric(
    Counter, "subsidy_review_outbox_publish_failures", "Outbox publish attempts that failed."
)
