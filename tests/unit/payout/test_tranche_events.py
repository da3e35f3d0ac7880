"""Every tranche event payout publishes says what it is about: the
application and the clause, from the ledger's tranche row, so no consumer
parses the tranche id or remembers an earlier event."""

from __future__ import annotations

import datetime as dt

from subsidy.services.payout import events, handlers
from subsidy.services.payout.model import DUE, Payment, TrancheRow
from subsidy.v1 import payout_pb2

from .support import FIRM, line, rent_decision
from .test_store import AT, TRACE, store  # noqa: F401 - the ledger on in-memory SQLite, as test_store has it

ROW = TrancheRow(
    tranche_id="SJ-7/tranche-1",
    application_id="SJ-7",
    credit_code=FIRM,
    clause="10.cloud",
    number=1,
    amount_fen=500,
    due_on="2026-03-01",
    budget_year=2026,
    status=DUE,
)


def _body(value: bytes):
    event = payout_pb2.PayoutEvent.FromString(value)
    return event.WhichOneof("event"), getattr(event, event.WhichOneof("event"))


def test_each_tranche_event_built_from_a_row_carries_its_application_and_clause():
    built = [
        events.tranche_scheduled(ROW, "SJ-7@v", "v", TRACE),
        events.tranche_due(ROW, TRACE),
        events.tranche_cancelled(ROW, "迁出松江区", "2026-04-01", TRACE),
        events.tranche_paid(ROW, "2026-04-02", "PAY-1", TRACE),
    ]
    bodies = dict(_body(m.value) for m in built)
    assert set(bodies) == {"tranche_scheduled", "tranche_due", "tranche_cancelled", "tranche_paid"}
    for kind, body in bodies.items():
        assert (body.application_id, body.clause, body.tranche_id) == ("SJ-7", "10.cloud", "SJ-7/tranche-1"), kind


def _published(store, prefix):  # noqa: F811 - the fixture's name
    """(kind, event) of every pending outbox row whose kind starts with ``prefix``."""
    values = []
    store.relay_batch(lambda rows: (values.extend(r.value for r in rows), ([r.id for r in rows], None))[1])
    return [(kind, body) for kind, body in map(_body, values) if kind.startswith(prefix)]


def test_the_ledger_publishes_due_paid_and_cancelled_with_application_and_clause(store):  # noqa: F811
    handlers.apply_decision(store, rent_decision("A-1", 1000, shares=(50, 50)), TRACE, AT)
    handlers.apply_notice_line(store, line(rent_decision("A-1", 1000, shares=(50, 50))), AT)
    handlers.raise_tranches_due(store, dt.date(2025, 3, 1), AT)
    handlers.cancel_tranche(store, "A-1/tranche-1", "企业已迁出松江区", dt.date(2025, 3, 2), AT)
    handlers.apply_payment(store, Payment("P-1", "A-1/tranche-0", FIRM, 500, "2025-03-03"), AT)
    told = _published(store, "tranche_")
    assert sorted(kind for kind, _ in told) == [
        "tranche_cancelled",
        "tranche_due",
        "tranche_paid",
        "tranche_scheduled",
        "tranche_scheduled",
    ]
    for kind, body in told:
        assert (body.application_id, body.clause) == ("A-1", "1.rent"), kind
