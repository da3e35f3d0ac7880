"""How payout events change the grant intake shows (pure), and which
application the projection files each event under."""

import datetime as dt
from types import SimpleNamespace

import pytest

from subsidy.platform.consumer import RecordRejected
from subsidy.services.intake.adapters.kafka import PayoutEventHandler
from subsidy.services.intake.payouts import fold_bytes
from subsidy.v1 import decision_pb2, payout_pb2

#: A unified social credit code with valid check characters (the decoders check them).
FIRM = "91310117MA1K7D3C8A"

APP = "SJ-2025-0004"


def grant_recorded(granted=1370370_37):
    return payout_pb2.PayoutEvent(
        event_id=f"grant:{APP}",
        grant_recorded=payout_pb2.GrantRecorded(
            application_id=APP,
            decision_id=f"{APP}@v",
            clause="1.purchase",
            max_award_fen=450000000,
            granted_fen=granted,
            decision_year=2025,
            tranche_count=3,
            policy_version="draft-2022@abc",
        ),
    )


def scheduled(number, amount):
    tranche_id = f"{APP}/tranche-{number}"
    return payout_pb2.PayoutEvent(
        event_id=f"scheduled:{tranche_id}",
        tranche_scheduled=payout_pb2.TrancheScheduled(
            tranche_id=tranche_id,
            application_id=APP,
            number=number,
            amount_fen=amount,
            due_on=f"{2025 + number}-03-01",
            budget_year=2025 + number,
        ),
    )


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


def test_the_grant_names_the_policy_version_of_the_decision_that_holds_it():
    grant = replay([grant_recorded()])
    assert grant.policy_version == "draft-2022@abc"
    adjusted = payout_pb2.PayoutEvent(
        event_id=f"adjusted:{APP}",
        grant_adjusted=payout_pb2.GrantAdjusted(
            application_id=APP,
            decision_id=f"{APP}@final",
            previous_decision_id=f"{APP}@v",
            clause="1.purchase",
            granted_fen=100,
            policy_version="final-2023@def",
            previous_policy_version="draft-2022@abc",
            state=payout_pb2.GRANT_STATE_RESERVED,
        ),
    )
    assert replay([grant_recorded(), adjusted]).policy_version == "final-2023@def"


def test_due_paid_and_cancelled_move_a_tranche_along():
    t0, t1 = f"{APP}/tranche-0", f"{APP}/tranche-1"
    grant = replay(
        [
            grant_recorded(),
            scheduled(0, 100),
            scheduled(1, 100),
            payout_pb2.PayoutEvent(event_id="due", tranche_due=payout_pb2.TrancheDue(tranche_id=t0)),
            payout_pb2.PayoutEvent(
                event_id="paid",
                tranche_paid=payout_pb2.TranchePaid(tranche_id=t0, paid_on="2025-04-01", payment_id="P-1"),
            ),
            payout_pb2.PayoutEvent(
                event_id="cancel", tranche_cancelled=payout_pb2.TrancheCancelled(tranche_id=t1, reason="迁出本区")
            ),
        ]
    )
    assert [(t.status, t.payment_id) for t in grant.tranches] == [
        (payout_pb2.TRANCHE_STATUS_PAID, "P-1"),
        (payout_pb2.TRANCHE_STATUS_CANCELLED, ""),
    ]


def test_a_paid_tranche_is_not_made_due_again():
    t0 = f"{APP}/tranche-0"
    grant = replay(
        [
            grant_recorded(),
            scheduled(0, 100),
            payout_pb2.PayoutEvent(
                event_id="paid", tranche_paid=payout_pb2.TranchePaid(tranche_id=t0, paid_on="2025-04-01")
            ),
            payout_pb2.PayoutEvent(event_id="due", tranche_due=payout_pb2.TrancheDue(tranche_id=t0)),
        ]
    )
    assert grant.tranches[0].status == payout_pb2.TRANCHE_STATUS_PAID


def test_the_grant_event_keeps_tranches_that_arrived_first():
    grant = replay([scheduled(0, 100), grant_recorded()])
    assert grant.granted_fen == 137037037 and len(grant.tranches) == 1


class _Store:
    """The one store call the payout projection makes, recorded."""

    def __init__(self):
        self.applied: list[tuple[str, str]] = []

    def apply_payout_event(self, event_id, application_id, fold, at, state_of):
        self.applied.append((event_id, application_id))
        return "applied"


def _project(*events):
    store = _Store()
    handle = PayoutEventHandler(SimpleNamespace(store=store, clock=lambda: dt.datetime(2025, 1, 1)))
    for i, event in enumerate(events):
        handle(SimpleNamespace(value=event.SerializeToString(), partition=0, offset=i))
    return store.applied


def test_the_projection_files_each_event_under_the_application_it_names():
    t2 = f"{APP}/tranche-2"
    paid = payout_pb2.PayoutEvent(
        event_id=f"paid:{t2}",
        tranche_paid=payout_pb2.TranchePaid(
            tranche_id=t2, credit_code=FIRM, application_id="SJ-OTHER", clause="1.purchase"
        ),
    )
    # The event's application_id is believed, not the tranche id's prefix.
    assert _project(grant_recorded_with_payee(), paid) == [(f"grant:{APP}", APP), (f"paid:{t2}", "SJ-OTHER")]


def test_a_tranche_event_published_before_it_named_its_application_is_filed_by_its_tranche_id():
    t2 = f"{APP}/tranche-2"
    due = payout_pb2.PayoutEvent(
        event_id=f"due:{t2}", tranche_due=payout_pb2.TrancheDue(tranche_id=t2, credit_code=FIRM)
    )
    assert _project(due) == [(f"due:{t2}", APP)]


def test_a_payout_event_that_names_no_application_is_dead_lettered():
    for event in (
        payout_pb2.PayoutEvent(event_id="x"),
        payout_pb2.PayoutEvent(
            event_id="due:T-9", tranche_due=payout_pb2.TrancheDue(tranche_id="T-9", credit_code=FIRM)
        ),
    ):
        with pytest.raises(RecordRejected):
            _project(event)


def grant_recorded_with_payee():
    event = grant_recorded()
    event.grant_recorded.credit_code = FIRM
    return event


def test_payable_and_withdrawn_set_the_grants_state_and_a_duplicate_leaves_the_grant_alone():
    recorded = grant_recorded()
    recorded.grant_recorded.state = payout_pb2.GRANT_STATE_RESERVED
    payable = payout_pb2.PayoutEvent(
        event_id=f"payable:{APP}@v",
        grant_payable=payout_pb2.GrantPayable(
            application_id=APP, decision_id=f"{APP}@v", notice_id="N-1", payable_on="2025-03-14"
        ),
    )
    duplicate = payout_pb2.PayoutEvent(
        event_id=f"grant:{APP}@v2",
        grant_recorded=payout_pb2.GrantRecorded(
            application_id=APP,
            decision_id=f"{APP}@v2",
            granted_fen=0,
            state=payout_pb2.GRANT_STATE_RESERVED,
            reasons=[decision_pb2.Reason(code="DUPLICATE_APPLICATION")],
        ),
    )
    grant = replay([recorded, payable, scheduled(0, 100), duplicate])
    assert (grant.state, grant.payable_on, grant.notice_id, grant.decision_id, grant.granted_fen) == (
        payout_pb2.GRANT_STATE_PAYABLE,
        "2025-03-14",
        "N-1",
        f"{APP}@v",
        137037037,
    )
    assert len(grant.tranches) == 1
    withdrawn = payout_pb2.PayoutEvent(
        event_id=f"withdrawn:{APP}@v",
        grant_withdrawn=payout_pb2.GrantWithdrawn(
            application_id=APP, decision_id=f"{APP}@v", notice_id="N-1", withdrawn_on="2025-03-10", reason="异议成立"
        ),
    )
    grant = replay([recorded, withdrawn])
    assert (grant.state, grant.withdrawn_on, grant.withdraw_reason) == (
        payout_pb2.GRANT_STATE_WITHDRAWN,
        "2025-03-10",
        "异议成立",
    )
    # Known first from its GrantPayable (intake began reading later): it still says what it is.
    grant = replay([payable])
    assert (grant.application_id, grant.decision_id, grant.state) == (APP, f"{APP}@v", payout_pb2.GRANT_STATE_PAYABLE)


def test_every_state_intake_keeps_is_answered_as_its_own_application_state():
    from subsidy.services.intake.adapters.grpc import status_to_proto
    from subsidy.services.intake.model import STATES, StoredApplication
    from subsidy.v1 import application_pb2, intake_pb2

    answered = {
        state: status_to_proto(
            StoredApplication(
                application_id=APP,
                credit_code=FIRM,
                payload_sha256="0" * 64,
                payload=application_pb2.Application(application_id=APP).SerializeToString(),
                received_at="2025-02-20T00:00:00Z",
                trace_id="ab" * 16,
                state=state,
            )
        ).state
        for state in STATES
    }
    assert answered == {state: intake_pb2.ApplicationState.Value(f"APPLICATION_STATE_{state}") for state in STATES}
    assert answered["UNDER_REVIEW"] == intake_pb2.APPLICATION_STATE_UNDER_REVIEW == 4
    assert (answered["RESERVED"], answered["PAYABLE"], answered["WITHDRAWN"]) == (5, 6, 7)
    assert answered["RECORDED"] == intake_pb2.APPLICATION_STATE_RECORDED == 3


def _held(number):
    tranche_id = f"{APP}/tranche-{number}"
    return payout_pb2.PayoutEvent(
        event_id=f"held:{tranche_id}#1",
        tranche_held=payout_pb2.TrancheHeld(
            tranche_id=tranche_id, application_id=APP, reason="工商登记已不在松江区", held_on="2026-03-02"
        ),
    )


def _released(number):
    tranche_id = f"{APP}/tranche-{number}"
    return payout_pb2.PayoutEvent(
        event_id=f"released:{tranche_id}#1",
        tranche_released=payout_pb2.TrancheReleased(tranche_id=tranche_id, application_id=APP),
    )


def _paid(number):
    tranche_id = f"{APP}/tranche-{number}"
    return payout_pb2.PayoutEvent(
        event_id=f"paid:{tranche_id}",
        tranche_paid=payout_pb2.TranchePaid(tranche_id=tranche_id, application_id=APP, paid_on="2025-04-01"),
    )


def test_a_held_tranche_shows_held_and_a_released_one_due():
    grant = replay([grant_recorded(), scheduled(0, 100), scheduled(1, 200), _held(1)])
    assert [t.status for t in grant.tranches] == [payout_pb2.TRANCHE_STATUS_SCHEDULED, payout_pb2.TRANCHE_STATUS_HELD]
    grant = replay([grant_recorded(), scheduled(0, 100), scheduled(1, 200), _held(1), _released(1)])
    assert grant.tranches[1].status == payout_pb2.TRANCHE_STATUS_DUE
    paid_then_held = replay([grant_recorded(), scheduled(0, 100), _paid(0), _held(0)])
    assert paid_then_held.tranches[0].status == payout_pb2.TRANCHE_STATUS_PAID, "paid money is never held"


def test_paid_recovered_and_net_follow_the_events_and_a_replay_adds_nothing():
    opened = payout_pb2.PayoutEvent(
        event_id="recovery:R-1",
        recovery_opened=payout_pb2.RecoveryOpened(
            recovery_id="R-1", application_id=APP, tranche_ids=[f"{APP}/tranche-0"], amount_fen=60, reason="虚报"
        ),
    )
    recorded = payout_pb2.PayoutEvent(
        event_id="recovered:R-1:C-1",
        recovery_recorded=payout_pb2.RecoveryRecorded(
            recovery_id="R-1",
            application_id=APP,
            confirmation_id="C-1",
            amount_fen=40,
            recovered_fen=40,
            outstanding_fen=20,
        ),
    )
    events = [grant_recorded(), scheduled(0, 100), scheduled(1, 200), _paid(0), opened, recorded]
    grant = replay(events)
    assert (grant.paid_fen, grant.recovered_fen, grant.net_fen) == (100, 40, 60)
    assert [(r.recovery_id, r.amount_fen, r.recovered_fen, r.status) for r in grant.recoveries] == [
        ("R-1", 60, 40, "OPEN")
    ]
    again = replay([*events, recorded, _paid(0), grant_recorded()])
    assert (again.paid_fen, again.recovered_fen, again.net_fen) == (100, 40, 60)
    assert len(again.recoveries) == 1 and len(again.tranches) == 2


def test_the_grant_event_replayed_after_the_notice_keeps_the_notice_and_the_state():
    payable = payout_pb2.PayoutEvent(
        event_id=f"payable:{APP}@v",
        grant_payable=payout_pb2.GrantPayable(
            application_id=APP, decision_id=f"{APP}@v", notice_id="N-1", payable_on="2026-10-10"
        ),
    )
    grant = replay([grant_recorded(), payable, scheduled(0, 100), grant_recorded()])
    assert (grant.state, grant.notice_id, grant.payable_on) == (payout_pb2.GRANT_STATE_PAYABLE, "N-1", "2026-10-10")
    assert len(grant.tranches) == 1
