"""Intake's fold of GrantAdjusted (issue 14): the RESERVED grant shows the
superseding decision's amount; a grant already further on is not touched;
a re-decision replaces the decision shown, and only its own review replaces it."""

from __future__ import annotations

from subsidy.services.intake import model, payouts
from subsidy.v1 import decision_pb2, payout_pb2


def recorded(fen=300_000):
    return payout_pb2.PayoutEvent(
        event_id="grant:A-1",
        grant_recorded=payout_pb2.GrantRecorded(
            application_id="A-1",
            decision_id="A-1@v1",
            credit_code="91310117MA1K7D2E8N",
            clause="10.cloud",
            granted_fen=fen,
            max_award_fen=fen,
            decision_year=2023,
            state=payout_pb2.GRANT_STATE_RESERVED,
        ),
    )


def adjusted(fen=800_000):
    return payout_pb2.PayoutEvent(
        event_id="adjusted:A-1@v2",
        grant_adjusted=payout_pb2.GrantAdjusted(
            application_id="A-1",
            credit_code="91310117MA1K7D2E8N",
            clause="10.cloud",
            previous_decision_id="A-1@v1",
            decision_id="A-1@v2",
            previous_policy_version="v1",
            policy_version="v2",
            previous_granted_fen=300_000,
            granted_fen=fen,
            topped_up_fen=fen - 300_000,
            max_award_fen=fen,
            outcome="ELIGIBLE",
            decision_year=2023,
            state=payout_pb2.GRANT_STATE_RESERVED,
        ),
    )


def test_the_reserved_grant_shows_the_adjusted_amount_and_decision():
    grant = payout_pb2.Grant.FromString(payouts.fold_bytes(None, recorded()))
    grant = payout_pb2.Grant.FromString(payouts.fold_bytes(grant.SerializeToString(), adjusted()))
    assert (grant.decision_id, grant.granted_fen, grant.state) == ("A-1@v2", 800_000, payout_pb2.GRANT_STATE_RESERVED)
    decision = decision_pb2.Decision(decision_id="A-1@v2", supersedes_decision_id="A-1@v1").SerializeToString()
    assert payouts.state_of(decision, grant.SerializeToString()) == model.RESERVED


def test_a_payable_grant_is_not_adjusted():
    grant = payout_pb2.Grant.FromString(payouts.fold_bytes(None, recorded()))
    grant.state = payout_pb2.GRANT_STATE_PAYABLE
    after = payout_pb2.Grant.FromString(payouts.fold_bytes(grant.SerializeToString(), adjusted()))
    assert (after.decision_id, after.granted_fen) == ("A-1@v1", 300_000)


def d(decision_id, **fields):
    return decision_pb2.Decision(decision_id=decision_id, **fields).SerializeToString()


def test_a_re_decision_replaces_the_reviewed_decision_and_only_its_own_review_replaces_it():
    reviewed_v1 = d("A-1@v1/review:R-1", review=decision_pb2.ReviewRecord(supersedes_decision_id="A-1@v1"))
    redecision = d("A-1@v2", supersedes_decision_id="A-1@v1")
    reviewed_v2 = d("A-1@v2/review:R-2", review=decision_pb2.ReviewRecord(supersedes_decision_id="A-1@v2"))
    assert payouts.replaces(reviewed_v1, redecision)
    assert not payouts.replaces(redecision, reviewed_v1)
    assert not payouts.replaces(redecision, d("A-1@v1"))
    assert payouts.replaces(redecision, reviewed_v2)
    assert not payouts.replaces(reviewed_v2, redecision)
