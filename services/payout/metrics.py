"""Prometheus metrics of payout (served over HTTP by bootstrap.py)."""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter


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


DECISIONS = _counter(
    "subsidy_payout_decisions", "Decisions consumed, by result (applied, replayed, duplicate).", ("result",)
)
GRANTS = _counter("subsidy_payout_grants", "Grants recorded, by clause and outcome.", ("clause", "outcome"))
GRANTED_FEN = _counter("subsidy_payout_granted_fen", "Amount granted in fen, by clause.", ("clause",))
CAP_HITS = _counter(
    "subsidy_payout_cap_hits",
    "Grants limited by the firm's history, by clause and reason (CAP_PARTIAL, CAP_EXHAUSTED, ALREADY_AWARDED).",
    ("clause", "reason"),
)
TRANCHES = _counter(
    "subsidy_payout_tranches", "Tranches entering a status (SCHEDULED, DUE, PAID, CANCELLED).", ("status",)
)
PAYMENTS = _counter(
    "subsidy_payout_payments", "Payment confirmations consumed, by result (applied, repeat, dead_letter).",
    ("result",),
)
OUTBOX_PUBLISHED = _counter("subsidy_payout_outbox_published", "Outbox events acknowledged by Kafka.")
OUTBOX_FAILURES = _counter("subsidy_payout_outbox_publish_failures", "Outbox publish attempts that failed.")
# Shared name across services: every consumer counts what it dead-letters.
DEAD_LETTERS = _counter(
    "subsidy_dead_letters",
    "Messages a consumer could not process, sent to the dead-letter topic.",
    ("topic", "consumer"),
)
