"""operations' Prometheus metrics (the shared ones: subsidy/platform/metrics.py)."""

import datetime as dt
from collections.abc import Mapping

from prometheus_client import Counter, Gauge

from subsidy.platform import metrics as shared
from subsidy.services.operations.model import DLQ_TOPICS, STATES

LETTERS_READ = shared.metric(
    Counter,
    "subsidy_operations_dead_letters_read",
    "Dead letters read from the DLQ topics, by topic and outcome (stored; duplicate: that record read again; copy: another copy of a letter kept).",
    ("topic", "outcome"),
)
LETTERS = shared.metric(
    Gauge,
    "subsidy_operations_dead_letters",
    "Dead letters operations keeps, by DLQ topic and state (PENDING, REPLAYED, DISCARDED).",
    ("topic", "state"),
)
HANDLED = shared.metric(
    Counter,
    "subsidy_operations_dead_letters_handled",
    "Dead letters an operator replayed or discarded, by DLQ topic and action.",
    ("topic", "action"),
)
REFUSED = shared.metric(
    Counter, "subsidy_operations_refused", "OperationsService calls refused, by RPC and gRPC code.", ("rpc", "code")
)
OUTBOX_PUBLISHED = shared.metric(
    Counter, "subsidy_operations_outbox_published", "Replayed records the outbox relay published."
)
OUTBOX_FAILURES = shared.metric(
    Counter, "subsidy_operations_outbox_failures", "Outbox relay batches that failed (Kafka down)."
)
OLDEST_PENDING_AGE = shared.metric(
    Gauge,
    "subsidy_operations_dead_letters_oldest_pending_age_seconds",
    "Age of the oldest dead letter neither replayed nor discarded (PENDING), by DLQ topic; 0 when none "
    "(SubsidyDeadLettersUnhandled).",
    ("topic",),
)


def refresh_letters(counts: Mapping[tuple[str, str], int], oldest_pending: Mapping[str, str], now: dt.datetime) -> None:
    """The letters' gauges for every DLQ topic, from the store's counts
    ({(topic, state): n}) and each topic's oldest PENDING received_at, aged
    by the service's clock (subsidy/platform/clock.py): a topic without
    letters reads 0, so a handled topic's series drops to 0 rather than
    keeping its last value."""
    for topic in DLQ_TOPICS:
        for state in STATES:
            LETTERS.labels(topic, state).set(counts.get((topic, state), 0))
        OLDEST_PENDING_AGE.labels(topic).set(shared.age_seconds(oldest_pending.get(topic), now))
