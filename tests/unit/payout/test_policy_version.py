"""Every grant and every payout event names the policy version its amount
was decided under (issue 14): the decision the grant holds, and after a
superseding decision of a RESERVED grant the new decision's. Over the SQL
unit of work on in-memory SQLite (adapters/store.py), where a tranche's
version is read from its grant's row (payout_tranches has no such column),
and the Grant read model as PayoutService's ledger RPCs answer it."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from subsidy.core.release import FirmStanding
from subsidy.platform.db import Database
from subsidy.services.payout import events, handlers
from subsidy.services.payout.adapters.grpc import grant_to_proto
from subsidy.services.payout.adapters.store import SqlStore
from subsidy.services.payout.model import DUE, GrantRow, GrantState, Payment, TrancheRow
from subsidy.v1 import payout_pb2

from .support import FIRM, line, rent_decision

TRACE = "ab" * 16
AT = dt.datetime(2025, 3, 1, 8, 0, tzinfo=dt.UTC)
D = dt.date.fromisoformat
V1, V2 = "v1+test", "v2+test"


@pytest.fixture
def store():
    db = Database("sqlite:///:memory:", store="payout")
    s = SqlStore(db)
    s.create_schema()
    yield s
    db.close()


def grace(day):
    return 90


def superseding(old, amount_fen, version=V2):
    new = rent_decision(old.application_id, amount_fen, policy_version=version, shares=(40, 30, 30))
    return dataclasses.replace(new, supersedes_decision_id=old.decision_id)


def standing(sequence, as_of, registered=True):
    return FirmStanding(
        credit_code=FIRM,
        known=True,
        as_of=D(as_of),
        registered_in_district=registered,
        tax_registered_in_district=True,
        independent_legal_person=True,
        feed_sequence=sequence,
    )


def published(store):
    """(event id, kind, body) of every outbox row, in order."""
    with store.db.transaction() as tx:
        rows = tx.all("SELECT event_id, value FROM payout_outbox ORDER BY id")
    out = []
    for event_id, value in rows:
        event = payout_pb2.PayoutEvent.FromString(bytes(value))
        kind = event.WhichOneof("event")
        out.append((event_id, kind, getattr(event, kind)))
    return out


def grant_proto(store, application_id):
    (grant,) = [g for g in handlers.ledger(store, FIRM).grants if g.application_id == application_id]
    return grant_to_proto(grant)


def test_every_event_kind_and_the_grant_name_the_version_of_the_decision_applied(store):
    old = rent_decision("A-1", 240_000_000, shares=(40, 30, 30))
    handlers.apply_decision(store, old, TRACE, AT)
    assert grant_proto(store, "A-1").policy_version == V1

    # Re-decided under V2 while RESERVED: the grant, and everything after, is V2's.
    new = superseding(old, 150_000_000)
    assert handlers.apply_decision(store, new, TRACE, AT).result == handlers.ADJUSTED
    assert grant_proto(store, "A-1").policy_version == V2
    _, payable, scheduled = handlers.apply_notice_line(store, line(new), AT)
    assert payable.policy_version == V2
    assert [t.policy_version for t in scheduled] == [V2, V2, V2]
    t0, t1, _ = (f"A-1/tranche-{k}" for k in range(3))
    handlers.advance_tranches(store, D("2025-02-20"), AT, grace)  # t0 DUE
    handlers.apply_firm_facts(store, standing(1, "2025-03-01", registered=False), "某公司", D("2025-03-01"), AT, grace)
    handlers.apply_firm_facts(store, standing(2, "2025-04-01"), "某公司", D("2025-04-01"), AT, grace)
    handlers.advance_tranches(store, D("2025-04-01"), AT, grace)  # t0 released, DUE again
    handlers.apply_payment(store, Payment("P-1", t0, FIRM, 60_000_000, "2025-04-02"), AT)
    handlers.cancel_tranche(store, t1, "企业已迁出松江区", D("2025-04-03"), AT)

    # Another application under V1, withdrawn after an objection.
    other = rent_decision("A-2", 100_000_000)
    handlers.apply_decision(store, other, TRACE, AT)
    handlers.apply_notice_line(store, line(other, "withdrawn", reason="异议成立"), AT)

    versions = {(body.application_id, kind, event_id): body.policy_version for event_id, kind, body in published(store)}
    assert versions == {
        ("A-1", "grant_recorded", "grant:A-1"): V1,
        ("A-1", "grant_adjusted", f"adjusted:{new.decision_id}"): V2,
        ("A-1", "grant_payable", f"payable:{new.decision_id}"): V2,
        ("A-1", "tranche_scheduled", f"scheduled:{t0}"): V2,
        ("A-1", "tranche_scheduled", f"scheduled:{t1}"): V2,
        ("A-1", "tranche_scheduled", "scheduled:A-1/tranche-2"): V2,
        ("A-1", "tranche_due", f"due:{t0}"): V2,
        ("A-1", "tranche_held", f"held:{t0}#1"): V2,
        ("A-1", "tranche_released", f"released:{t0}#1"): V2,
        ("A-1", "tranche_due", f"due:{t0}#released-1"): V2,
        ("A-1", "tranche_paid", f"paid:{t0}"): V2,
        ("A-1", "tranche_cancelled", f"cancelled:{t1}"): V2,
        ("A-2", "grant_recorded", "grant:A-2"): V1,
        ("A-2", "grant_withdrawn", f"withdrawn:{other.decision_id}"): V1,
    }

    # The read model: the grant and each of its tranches as read back.
    a1 = grant_proto(store, "A-1")
    assert (a1.decision_id, a1.policy_version, a1.state) == (new.decision_id, V2, payout_pb2.GRANT_STATE_PAYABLE)
    ledger = {g.application_id: g for g in handlers.ledger(store, FIRM).grants}
    assert {t.policy_version for t in ledger["A-1"].tranches} == {V2}
    assert (grant_proto(store, "A-2").policy_version, grant_proto(store, "A-2").state) == (
        V1,
        payout_pb2.GRANT_STATE_WITHDRAWN,
    )


def test_a_grant_past_its_notice_keeps_its_version_when_a_later_decision_is_kept(store):
    old = rent_decision("A-1", 240_000_000, shares=(40, 30, 30))
    handlers.apply_decision(store, old, TRACE, AT)
    handlers.apply_notice_line(store, line(old), AT)
    assert handlers.apply_decision(store, superseding(old, 150_000_000), TRACE, AT).result == handlers.KEPT
    due = handlers.raise_tranches_due(store, D("2025-02-20"), AT, grace)
    assert [(t.tranche_id, t.status, t.policy_version) for t in due] == [("A-1/tranche-0", DUE, V1)]
    told = {event_id: body.policy_version for event_id, _, body in published(store)}
    assert told["due:A-1/tranche-0"] == V1
    assert grant_proto(store, "A-1").policy_version == V1


GRANT = GrantRow(
    application_id="SJ-7",
    decision_id="SJ-7@v3",
    credit_code=FIRM,
    clause="10.cloud",
    outcome="ELIGIBLE",
    policy_version="v3+abc",
    max_award_fen=1000,
    granted_fen=1000,
    decision_year=2026,
    reasons=(),
    trace_id=TRACE,
    state=GrantState.PAYABLE,
    notice_id="N-1",
    payable_on="2026-03-01",
)
ROW = TrancheRow(
    tranche_id="SJ-7/tranche-1",
    application_id="SJ-7",
    credit_code=FIRM,
    clause="10.cloud",
    number=1,
    amount_fen=500,
    due_on="2027-03-01",
    budget_year=2027,
    status=DUE,
    held_on="2027-03-02",
    hold_until="2027-05-31",
    hold_reason="工商登记已不在松江区",
    hold_count=1,
    policy_version="v3+abc",
)


def test_each_constructor_copies_the_version_from_the_row_it_is_built_from():
    built = [
        events.grant_payable(GRANT, 2),
        events.grant_withdrawn(dataclasses.replace(GRANT, state=GrantState.WITHDRAWN), 1000),
        events.tranche_due(ROW, TRACE),
        events.tranche_due_again(ROW, TRACE),
        events.tranche_cancelled(ROW, "迁出", "2027-06-01", TRACE),
        events.tranche_paid(ROW, "2027-03-05", "PAY-1", TRACE),
        events.tranche_held(ROW, ("REGISTERED_OUTSIDE_DISTRICT",), "2027-03-02", TRACE),
        events.tranche_released(ROW, "2027-04-01", "2027-04-01", TRACE),
    ]
    for message in built:
        event = payout_pb2.PayoutEvent.FromString(message.value)
        kind = event.WhichOneof("event")
        assert getattr(event, kind).policy_version == "v3+abc", kind
    assert grant_to_proto(GRANT).policy_version == "v3+abc"
