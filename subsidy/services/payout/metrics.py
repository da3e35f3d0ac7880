"""Prometheus metrics of payout (served over HTTP by bootstrap.py)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from subsidy.platform import metrics as shared

# Every metric through shared.metric: a name another service's module
# registered first in the same process (an end-to-end test) is reused.
DECISIONS = shared.metric(
    Counter,
    "subsidy_payout_decisions",
    "Decisions consumed, by result (applied, replayed, duplicate, held_for_review).",
    ("result",),
)
GRANTS = shared.metric(
    Counter, "subsidy_payout_grants", "Grants recorded, by clause and outcome.", ("clause", "outcome")
)
GRANTED_FEN = shared.metric(Counter, "subsidy_payout_granted_fen", "Amount granted in fen, by clause.", ("clause",))
CAP_HITS = shared.metric(
    Counter,
    "subsidy_payout_cap_hits",
    "Grants limited by the firm's history (a cap partly or wholly used, a one-time award already given), by clause.",
    ("clause",),
)
LEDGER_LIMITS = shared.metric(
    Counter,
    "subsidy_payout_ledger_limits",
    "Ledger reasons that limited a grant, by clause and reason (CAP_PARTIAL, CAP_EXHAUSTED, ALREADY_AWARDED).",
    ("clause", "reason"),
)
SCHEDULED_FEN = shared.metric(
    Counter,
    "subsidy_payout_scheduled_fen",
    "Amount scheduled in tranches in fen, by clause and budget year.",
    ("clause", "budget_year"),
)
TRANSITIONS = shared.metric(
    Counter,
    "subsidy_payout_tranche_transitions",
    "Tranches entering a status (SCHEDULED, DUE, PAID, CANCELLED, HELD).",
    ("status",),
)
TRANCHES_PAID = shared.metric(
    Counter, "subsidy_payout_tranches_paid", "Tranches marked PAID by a payment confirmation."
)
TRANCHES = shared.metric(
    Gauge,
    "subsidy_payout_tranches",
    "Tranches in the ledger by status (SCHEDULED, DUE, PAID, CANCELLED, HELD), refreshed from the database.",
    ("status",),
)
TRANCHES_OVERDUE = shared.metric(
    Gauge,
    "subsidy_payout_tranches_overdue",
    "DUE tranches whose due date is more than 30 days before today (by the service's clock).",
)
GRANT_TRANSITIONS = shared.metric(
    Counter,
    "subsidy_payout_grant_transitions",
    "Grants entering a state (RESERVED from a decision, PAYABLE or WITHDRAWN from a public-notice line).",
    ("state",),
)
NOTICE_LINES = shared.metric(
    Counter,
    "subsidy_payout_notice_lines",
    "Public-notice records consumed, by kind (payable, withdrawn, other) and result "
    "(applied, repeat, skipped, dead_letter).",
    ("kind", "result"),
)
PAYMENTS = shared.metric(
    Counter,
    "subsidy_payout_payments",
    "Payment confirmations consumed, by result (applied, repeat, dead_letter).",
    ("result",),
)
FIRM_FACTS = shared.metric(
    Counter,
    "subsidy_payout_firm_facts",
    "Firm facts records consumed from subsidy.firms.v1, by result (applied, stale, repeat, dead_letter).",
    ("result",),
)
RELEASED = shared.metric(
    Counter, "subsidy_payout_tranches_released", "HELD tranches released (facts restored within the hold grace)."
)
RECOVERIES = shared.metric(
    Counter,
    "subsidy_payout_recoveries_opened",
    "Recoveries (追回) opened through OpenRecovery, by void_award (true, false).",
    ("void_award",),
)
RECOVERY_CONFIRMATIONS = shared.metric(
    Counter,
    "subsidy_payout_recovery_confirmations",
    "Recovery confirmations consumed from subsidy.payments.v1, by result (applied, repeat, dead_letter).",
    ("result",),
)
RECOVERED_FEN = shared.metric(Counter, "subsidy_payout_recovered_fen", "Money confirmed recovered by finance, in fen.")
RECOVERIES_OPEN = shared.metric(
    Gauge,
    "subsidy_payout_recoveries_open",
    "Recoveries not yet fully recovered, refreshed from the database.",
)
SCHEDULER_LAST_RUN = shared.metric(
    Gauge,
    "subsidy_payout_scheduler_last_run_timestamp_seconds",
    "Unix time the tranche scheduler last completed a pass (whether or not it moved a tranche).",
)
SCHEDULED_PAST_DUE = shared.metric(
    Gauge,
    "subsidy_payout_tranches_scheduled_past_due",
    "SCHEDULED tranches whose due date is before today (by the service's clock): the scheduler should have moved them.",
)
HELD_PAST_GRACE = shared.metric(
    Gauge,
    "subsidy_payout_tranches_held_past_grace",
    "HELD tranches whose hold grace ended before today: the scheduler should have cancelled or released them.",
)
RECOVERY_OLDEST_OPEN_AGE = shared.metric(
    Gauge,
    "subsidy_payout_recovery_oldest_open_age_seconds",
    "Age of the oldest open recovery (追回): whole days since it was opened, by the service's clock, in seconds; "
    "0 when none is open.",
)
CAP_MISMATCHES = shared.metric(
    Gauge,
    "subsidy_payout_cap_mismatches",
    "Cap reconciliation: firm scopes whose recorded usage differs from the usage recomputed from the grants "
    "(kind=usage) or is above a cumulative cap (kind=over_cap). Must stay 0.",
    ("kind",),
)
CAP_UNVERIFIABLE_FIRMS = shared.metric(
    Gauge,
    "subsidy_payout_cap_unverifiable_firms",
    "Cap reconciliation: firms with a grant written before migration 0003 (no uses recorded), not checked.",
)
CAP_RECONCILED_FIRMS = shared.metric(
    Gauge, "subsidy_payout_cap_reconciled_firms", "Cap reconciliation: firms checked in the last run."
)
CAP_RECONCILE_LAST_RUN = shared.metric(
    Gauge,
    "subsidy_payout_cap_reconcile_last_run_timestamp_seconds",
    "Unix time the cap reconciliation last completed.",
)
OUTBOX_PUBLISHED = shared.metric(Counter, "subsidy_payout_outbox_published", "Outbox events acknowledged by Kafka.")
OUTBOX_FAILURES = shared.metric(
    Counter, "subsidy_payout_outbox_publish_failures", "Outbox publish attempts that failed."
)
# Shared across services (subsidy/platform/metrics.py): every consumer counts what it dead-letters.
DEAD_LETTERS = shared.DEAD_LETTERS
