"""A decision superseding the grant's (a policy version's adoption, issue 14):
the ledger replaces a RESERVED grant's amount, planned over the firm's
history without the old grant, releases or tops up the reservation
(GrantAdjusted), and keeps a grant past its notice; the same superseding
decision twice changes nothing. Over the in-memory unit of work
(fakes.py); over SQL: tests/integration/test_payout_supersede.py."""

from __future__ import annotations

import dataclasses
import datetime as dt

from subsidy.core.domain import ReviewRecord
from subsidy.services.payout import handlers
from subsidy.services.payout.model import GrantState
from subsidy.v1 import payout_pb2

from .fakes import FakeUnitOfWork
from .support import FIRM, OTHER_FIRM, RENT_CAP, line, rent_decision

TRACE = "ab" * 16
AT = dt.datetime(2025, 3, 1, 0, 0, tzinfo=dt.UTC)


def event(message):
    body = payout_pb2.PayoutEvent.FromString(message.value)
    return body.WhichOneof("event"), getattr(body, body.WhichOneof("event"))


def superseding(old, amount_fen, *, version="v2+test", **kwargs):
    new = rent_decision(old.application_id, amount_fen, policy_version=version, **kwargs)
    return dataclasses.replace(new, supersedes_decision_id=old.decision_id)


def granted(uow, *decisions):
    for decision in decisions:
        handlers.apply_decision(uow, decision, TRACE, AT)


class TestSupersedeReserved:
    def test_a_lower_amount_releases_the_difference_and_the_grant_holds_the_new_decision(self):
        uow = FakeUnitOfWork()
        old = rent_decision("A-1", 240_000_000)
        granted(uow, old)
        new = superseding(old, 150_000_000)
        applied = handlers.apply_decision(uow, new, TRACE, AT)
        assert applied.result == handlers.ADJUSTED
        grant = uow.grants.rows["A-1"]
        assert (grant.decision_id, grant.policy_version, grant.granted_fen, grant.state) == (
            new.decision_id,
            "v2+test",
            150_000_000,
            GrantState.RESERVED,
        )
        assert grant.uses == (("1.rent", 150_000_000),)
        assert uow.usage.used_fen(FIRM, "1.rent") == 150_000_000
        assert uow.inbox.rows[new.decision_id] == ("A-1", handlers.ADJUSTED)
        assert uow.outbox.event_ids == ["grant:A-1", f"adjusted:{new.decision_id}"]
        kind, body = event(uow.outbox.messages[-1])
        assert kind == "grant_adjusted"
        assert (body.previous_decision_id, body.decision_id) == (old.decision_id, new.decision_id)
        assert (body.previous_policy_version, body.policy_version) == ("v1+test", "v2+test")
        assert (body.previous_granted_fen, body.granted_fen) == (240_000_000, 150_000_000)
        assert (body.released_fen, body.topped_up_fen) == (90_000_000, 0)
        assert body.state == payout_pb2.GRANT_STATE_RESERVED
        # Still no tranche: they follow the notice.
        assert uow.tranches.rows == {}

    def test_a_higher_amount_is_topped_up_only_to_the_cap_room_the_other_grants_leave(self):
        uow = FakeUnitOfWork()
        other = rent_decision("A-0", 300_000_000)  # 300万 of the 500万 cap used by another application
        old = rent_decision("A-1", 150_000_000)
        granted(uow, other, old)
        assert uow.usage.used_fen(FIRM, "1.rent") == 450_000_000
        new = superseding(old, 260_000_000)
        applied = handlers.apply_decision(uow, new, TRACE, AT)
        # The old grant's 150万 is not counted against the new one: 200万 of room, not 50万.
        assert applied.plan.granted_fen == RENT_CAP - 300_000_000
        assert [r.code for r in applied.plan.reasons] == ["CAP_PARTIAL"]
        assert uow.usage.used_fen(FIRM, "1.rent") == RENT_CAP
        _, body = event(uow.outbox.messages[-1])
        assert (body.released_fen, body.topped_up_fen, body.granted_fen) == (0, 50_000_000, 200_000_000)

    def test_an_ineligible_redecision_releases_the_whole_reservation(self):
        uow = FakeUnitOfWork()
        old = rent_decision("A-1", 240_000_000)
        granted(uow, old)
        new = superseding(old, 0, outcome="INELIGIBLE")
        handlers.apply_decision(uow, new, TRACE, AT)
        grant = uow.grants.rows["A-1"]
        assert (grant.granted_fen, grant.outcome, grant.uses) == (0, "INELIGIBLE", ())
        assert uow.usage.used_fen(FIRM, "1.rent") == 0
        _, body = event(uow.outbox.messages[-1])
        assert (body.released_fen, body.topped_up_fen, body.outcome) == (240_000_000, 0, "INELIGIBLE")

    def test_the_same_superseding_decision_twice_changes_nothing(self):
        uow = FakeUnitOfWork()
        old = rent_decision("A-1", 240_000_000)
        granted(uow, old)
        new = superseding(old, 150_000_000)
        handlers.apply_decision(uow, new, TRACE, AT)
        before = (dict(uow.grants.rows), dict(uow.usage.rows), list(uow.outbox.event_ids), dict(uow.inbox.rows))
        again = handlers.apply_decision(uow, new, TRACE, AT)
        assert again.result == "replayed"
        assert (dict(uow.grants.rows), dict(uow.usage.rows), list(uow.outbox.event_ids), dict(uow.inbox.rows)) == before

    def test_the_notice_line_of_the_superseded_decision_is_refused_naming_the_new_one(self):
        uow = FakeUnitOfWork()
        old = rent_decision("A-1", 240_000_000)
        granted(uow, old)
        new = superseding(old, 150_000_000)
        handlers.apply_decision(uow, new, TRACE, AT)
        try:
            handlers.apply_notice_line(uow, line(old), AT)
        except handlers.Rejected as exc:
            assert new.decision_id in str(exc) and "superseded" in str(exc)
        else:
            raise AssertionError("a line naming the superseded amount must not make the grant payable")
        # The line of the new decision makes it payable at the new amount.
        _, grant, tranches = handlers.apply_notice_line(uow, line(new), AT)
        assert grant.state == GrantState.PAYABLE
        assert sum(t.amount_fen for t in tranches) == 150_000_000


class TestKept:
    def test_a_payable_grant_keeps_its_amount_and_nothing_is_announced(self):
        uow = FakeUnitOfWork()
        old = rent_decision("A-1", 240_000_000)
        granted(uow, old)
        handlers.apply_notice_line(uow, line(old), AT)
        events_before = list(uow.outbox.event_ids)
        new = superseding(old, 150_000_000)
        applied = handlers.apply_decision(uow, new, TRACE, AT)
        assert applied.result == handlers.KEPT
        grant = uow.grants.rows["A-1"]
        assert (grant.decision_id, grant.granted_fen, grant.state) == (old.decision_id, 240_000_000, GrantState.PAYABLE)
        assert uow.usage.used_fen(FIRM, "1.rent") == 240_000_000
        assert uow.inbox.rows[new.decision_id] == ("A-1", handlers.KEPT)
        assert uow.outbox.event_ids == events_before

    def test_a_superseding_decision_of_another_firm_is_refused_and_writes_nothing(self):
        uow = FakeUnitOfWork()
        old = rent_decision("A-1", 240_000_000)
        granted(uow, old)
        new = superseding(old, 150_000_000, firm=OTHER_FIRM)
        before = (dict(uow.grants.rows), dict(uow.inbox.rows), list(uow.outbox.event_ids))
        try:
            handlers.apply_decision(uow, new, TRACE, AT)
        except handlers.Rejected as exc:
            assert "credit_code" in str(exc)
        else:
            raise AssertionError("refused")
        assert (dict(uow.grants.rows), dict(uow.inbox.rows), list(uow.outbox.event_ids)) == before


class TestHeldForReview:
    def test_a_superseding_decision_held_for_review_keeps_the_grant_until_its_reviewed_decision(self):
        uow = FakeUnitOfWork()
        old = rent_decision("A-1", 240_000_000)
        granted(uow, old)
        held = dataclasses.replace(
            superseding(old, 150_000_000), review_required=True, review_reasons=("NEEDS_REVIEW_OUTCOME",)
        )
        assert handlers.apply_decision(uow, held, TRACE, AT).result == handlers.HELD_SUPERSEDING
        assert uow.grants.rows["A-1"].granted_fen == 240_000_000
        review = ReviewRecord(held.decision_id, "item-1", ("r1",), "依据", "APPROVED", "2025-03-02T00:00:00Z")
        reviewed = dataclasses.replace(
            rent_decision("A-1", 120_000_000, policy_version="v2+test"),
            decision_id=f"{held.decision_id}/review:item-1",
            review=review,
        )
        applied = handlers.apply_decision(uow, reviewed, TRACE, AT)
        assert applied.result == handlers.ADJUSTED
        assert uow.grants.rows["A-1"].granted_fen == 120_000_000
        assert uow.usage.used_fen(FIRM, "1.rent") == 120_000_000

    def test_without_a_grant_a_superseding_decision_is_applied_like_a_first_one(self):
        uow = FakeUnitOfWork()
        new = dataclasses.replace(rent_decision("A-9", 100_000_000), supersedes_decision_id="A-9@v0+old")
        assert handlers.apply_decision(uow, new, TRACE, AT).result == handlers.APPLIED
        assert uow.grants.rows["A-9"].granted_fen == 100_000_000


def test_the_review_of_an_adjusted_decision_adjusts_the_grant_again():
    """An award in its notice period: the re-decision adjusted the grant, review
    then reviewed it (POLICY_VERSION_IN_NOTICE); the reviewed amount replaces it."""
    uow = FakeUnitOfWork()
    old = rent_decision("A-1", 240_000_000)
    granted(uow, old)
    new = superseding(old, 300_000_000)
    assert handlers.apply_decision(uow, new, TRACE, AT).result == handlers.ADJUSTED
    review = ReviewRecord(new.decision_id, "item-7", ("r1",), "依据", "APPROVED", "2025-03-02T00:00:00Z")
    reviewed = dataclasses.replace(
        rent_decision("A-1", 280_000_000, policy_version="v2+test"),
        decision_id=f"{new.decision_id}/review:item-7",
        review=review,
    )
    applied = handlers.apply_decision(uow, reviewed, TRACE, AT)
    assert (applied.result, applied.previous.decision_id) == (handlers.ADJUSTED, new.decision_id)
    assert uow.grants.rows["A-1"].granted_fen == 280_000_000
    assert uow.usage.used_fen(FIRM, "1.rent") == 280_000_000
    _, body = event(uow.outbox.messages[-1])
    assert (body.previous_granted_fen, body.granted_fen, body.released_fen) == (300_000_000, 280_000_000, 20_000_000)
