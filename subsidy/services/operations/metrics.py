"""operations' Prometheus metrics (the shared ones: subsidy/platform/metrics.py)."""

from prometheus_client import Counter, Gauge

from subsidy.platform import metrics as shared

LETTERS_READ = shared.metric(
    Counter,
    "subsidy_operations_dead_letters_read",
    "Dead letters read from the DLQ topics, by topic and outcome (stored, duplicate).",
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
