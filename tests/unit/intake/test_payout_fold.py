"""How payout events change the grant intake shows (pure)."""

import pytest

from subsidy.services.intake.payouts import NotAPayoutEvent, application_id_of, fold_bytes
from subsidy.v1 import payout_pb2

APP = "SJ-2025-0004"


def grant_recorded(granted=1370370_37):
    return payout_pb2.PayoutEvent(event_id=f"grant:{APP}", grant_recorded=payout_pb2.GrantRecorded(
        application_id=APP, decision_id=f"{APP}@v", clause="1.purchase", max_award_fen=450000000, granted_fen=granted,
        decision_year=2025, tranche_count=3,
    ))


def scheduled(number, amount):
    tranche_id = f"{APP}/tranche-{number}"
    return payout_pb2.PayoutEvent(event_id=f"scheduled:{tranche_id}", tranche_scheduled=payout_pb2.TrancheScheduled(
        tranche_id=tranche_id, application_id=APP, number=number, amount_fen=amount, due_on=f"{2025 + number}-03-01",
        budget_year=2025 + number,
    ))


def replay(events):
    grant = None
    for event in events:
        grant = fold_bytes(grant, event)
    return payout_pb2.Grant.FromString(grant)


def test_a_grant_and_its_tranches_build_up_in_tranche_order():
    grant = replay([grant_recorded(), scheduled(2, 41111112), scheduled(0, 54814814), scheduled(1, 41111111)])
    assert grant.granted_fen == 137037037
    assert [t.number for t in grant.tranches] == [0, 1, 2]
    assert all(t.status == payout_pb2.TRANCHE_STATUS_SCHEDULED for t in grant.tranches)


def test_due_paid_and_cancelled_move_a_tranche_along():
    t0, t1 = f"{APP}/tranche-0", f"{APP}/tranche-1"
    grant = replay([
        grant_recorded(), scheduled(0, 100), scheduled(1, 100),
        payout_pb2.PayoutEvent(event_id="due", tranche_due=payout_pb2.TrancheDue(tranche_id=t0)),
        payout_pb2.PayoutEvent(event_id="paid", tranche_paid=payout_pb2.TranchePaid(tranche_id=t0, paid_on="2025-04-01", payment_id="P-1")),
        payout_pb2.PayoutEvent(event_id="cancel", tranche_cancelled=payout_pb2.TrancheCancelled(tranche_id=t1, reason="迁出本区")),
    ])
    assert [(t.status, t.payment_id) for t in grant.tranches] == [
        (payout_pb2.TRANCHE_STATUS_PAID, "P-1"), (payout_pb2.TRANCHE_STATUS_CANCELLED, ""),
    ]


def test_a_paid_tranche_is_not_made_due_again():
    t0 = f"{APP}/tranche-0"
    grant = replay([
        grant_recorded(), scheduled(0, 100),
        payout_pb2.PayoutEvent(event_id="paid", tranche_paid=payout_pb2.TranchePaid(tranche_id=t0, paid_on="2025-04-01")),
        payout_pb2.PayoutEvent(event_id="due", tranche_due=payout_pb2.TrancheDue(tranche_id=t0)),
    ])
    assert grant.tranches[0].status == payout_pb2.TRANCHE_STATUS_PAID


def test_the_grant_event_keeps_tranches_that_arrived_first():
    grant = replay([scheduled(0, 100), grant_recorded()])
    assert grant.granted_fen == 137037037 and len(grant.tranches) == 1


def test_events_name_their_application_directly_or_through_the_tranche_id():
    assert application_id_of(grant_recorded()) == APP
    due = payout_pb2.PayoutEvent(event_id="d", tranche_due=payout_pb2.TrancheDue(tranche_id=f"{APP}/tranche-2"))
    assert application_id_of(due) == APP
    with pytest.raises(NotAPayoutEvent):
        application_id_of(payout_pb2.PayoutEvent(event_id="x"))
