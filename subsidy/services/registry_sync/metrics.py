"""Prometheus metrics of registry-sync (served over HTTP by bootstrap.py)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from subsidy.platform import metrics as shared

CHANGES = shared.metric(
    Counter,
    "subsidy_registry_sync_changes",
    "Feed changes by outcome: applied (folded into a firm's facts), skipped (already taken), "
    "held (dated after today, applied on their day), released (a held change applied).",
    ("outcome",),
)
REJECTED = shared.metric(
    Counter,
    "subsidy_registry_sync_changes_rejected",
    "Feed changes (and snapshot entries) dead-lettered to subsidy.firms.v1.dlq, by the field at fault.",
    ("reason",),
)
PUBLISHED_FACTS = shared.metric(
    Counter, "subsidy_registry_sync_facts_written", "Firm facts records written to the outbox (a firm's facts changed)."
)
RESYNCS = shared.metric(
    Counter,
    "subsidy_registry_sync_resyncs",
    "Full resyncs from the platform's snapshot (the platform forgot our cursor).",
)
FEED_FAILURES = shared.metric(
    Counter,
    "subsidy_registry_sync_feed_failures",
    "Sync rounds that failed, by kind (unavailable: down, slow or refused after retries; broken: an answer that "
    "is not a page; database).",
    ("kind",),
)
LAG_CHANGES = shared.metric(
    Gauge,
    "subsidy_registry_sync_lag_changes",
    "Changes behind the platform: its high-water sequence minus the last sequence taken.",
)
LAST_SUCCESS = shared.metric(
    Gauge,
    "subsidy_registry_sync_last_success_timestamp_seconds",
    "Unix time of the last successful sync round (the feed read to its end).",
)
LAG_SECONDS = shared.metric(
    Gauge,
    "subsidy_registry_sync_lag_seconds",
    "Seconds since the last successful sync round (0 before the first one: see the timestamp).",
)
HELD = shared.metric(Gauge, "subsidy_registry_sync_held_changes", "Changes held until their day (dated after today).")
OUTBOX_PUBLISHED = shared.metric(
    Counter, "subsidy_registry_sync_outbox_published", "Outbox rows (facts and dead letters) acknowledged by Kafka."
)
OUTBOX_FAILURES = shared.metric(
    Counter, "subsidy_registry_sync_outbox_failures", "Outbox relay rounds that failed (Kafka or the database down)."
)
DEAD_LETTERS = shared.DEAD_LETTERS
