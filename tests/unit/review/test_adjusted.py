"""Review and a grant the ledger adjusted (issue 14: a policy version's
adoption re-decided it): the new amount joins the pool and the old one
leaves it; a line of the old amount still in its period is SUPERSEDED (never
payable, no objection), and the new amount is noticed afresh after its
review (a reviewed decision, of an item review closed, goes straight to the
next notice: it is that review); a repeated
GrantAdjusted changes nothing; a superseding decision that needs no review
opens no review item, one that does opens one."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from subsidy.core.domain import ELIGIBLE, NEEDS_REVIEW
from subsidy.core.workflow import review
from subsidy.core.workflow.settings import load_workflow
from subsidy.platform.db import Database
from subsidy.services.review import handlers
from subsidy.services.review.adapters.store import SqlStore
from subsidy.services.review.model import Actor, FailedPrecondition
from subsidy.v1 import payout_pb2

from .fakes import FakeUnitOfWork
from .test_handlers import ALICE, BOB, FIRM, NOW, TODAY, application, decision, grant

WF = load_workflow()


@pytest.fixture(params=["memory", "sqlite"])
def uow(request, tmp_path):
    """The in-memory unit of work and the SQL store (PostgreSQL: tests/integration/test_review_store.py)."""
    if request.param == "memory":
        yield FakeUnitOfWork()
        return
    store = SqlStore(Database(f"sqlite:///{tmp_path / 'review.db'}", store="review"))
    store.create_schema()
    yield store
    store.db.close()


def adjusted(uow, app_id, new_fen, old_fen=300_000, version="v2"):
    event = payout_pb2.PayoutEvent(
        event_id=f"adjusted:{app_id}@{version}",
        grant_adjusted=payout_pb2.GrantAdjusted(
            application_id=app_id,
            credit_code=FIRM,
            clause="1.purchase",
            previous_decision_id=f"{app_id}@v1",
            decision_id=f"{app_id}@{version}",
            previous_policy_version="v1",
            policy_version=version,
            previous_granted_fen=old_fen,
            granted_fen=new_fen,
            released_fen=max(0, old_fen - new_fen),
            topped_up_fen=max(0, new_fen - old_fen),
            decision_year=2025,
            state=payout_pb2.GRANT_STATE_RESERVED,
        ),
    )
    return handlers.record_payout_event(uow, event.SerializeToString(), NOW)


def test_a_pooled_grant_is_replaced_by_the_adjusted_one_and_noticed_at_the_new_amount(uow):
    application(uow, "APP-1", FIRM, "企业1")
    assert grant(uow, "APP-1", 300_000) == "recorded"
    assert adjusted(uow, "APP-1", 200_000) == "adjusted"
    assert adjusted(uow, "APP-1", 200_000) == "replayed"
    _, lines = handlers.publish_notice(uow, ALICE, WF, TODAY, NOW)
    assert [(x.decision_id, x.amount_fen) for x in lines] == [("APP-1@v2", 200_000)]
    with uow:
        states = {g.decision_id: g.state for g in uow.grants.of_firm(FIRM)}
    assert states == {"APP-1@v1": handlers.SUPERSEDED, "APP-1@v2": "RESERVED"}


def adjusted_to(uow, app_id, previous, new, fen, clause="1.purchase"):
    event = payout_pb2.PayoutEvent(
        event_id=f"adjusted:{new}",
        grant_adjusted=payout_pb2.GrantAdjusted(
            application_id=app_id,
            credit_code=FIRM,
            clause=clause,
            previous_decision_id=previous,
            decision_id=new,
            granted_fen=fen,
            decision_year=2025,
            state=payout_pb2.GRANT_STATE_RESERVED,
        ),
    )
    return handlers.record_payout_event(uow, event.SerializeToString(), NOW)


@pytest.mark.parametrize("ledger_first", [True, False])
def test_a_change_to_an_award_in_its_notice_period_is_reviewed_then_noticed_afresh(uow, ledger_first):
    """workflow.md: "a change to an award in notice is a new reviewed decision"."""
    application(uow, "APP-1", FIRM, "企业1")
    grant(uow, "APP-1", 300_000)
    _, [old_line] = handlers.publish_notice(uow, ALICE, WF, TODAY, NOW)
    redecision = dataclasses.replace(
        decision("APP-1", outcome="ELIGIBLE", clause="1.purchase", max_award=450_000),
        decision_id="APP-1@v2",
        policy_version="v2",
        supersedes_decision_id="APP-1@v1",
    )
    assert not redecision.review_required  # the review rules alone would not ask for it
    steps = [
        lambda: adjusted(uow, "APP-1", 450_000),
        lambda: handlers.queue_decision(uow, redecision, WF, TODAY, NOW, "ab" * 16),
    ]
    results = [step() for step in (steps if ledger_first else reversed(steps))]
    assert sorted(results) == ["adjusted", "queued"]
    with uow:
        assert uow.lines.get(old_line.line_id).status == handlers.SUPERSEDED
    # Never payable at the old amount; no objection against it; the new amount waits for its review.
    assert handlers.close_notice_periods(uow, dt.date(2025, 2, 7), NOW) == []
    with pytest.raises(FailedPrecondition):
        handlers.lodge_objection(uow, Actor("portal", "PORTAL"), old_line.line_id, FIRM, "理由", TODAY, NOW)
    with pytest.raises(FailedPrecondition, match="pool is empty"):
        handlers.publish_notice(uow, ALICE, WF, TODAY, NOW)
    queue, _ = handlers.list_queue(uow, handlers.queue_query("", "", [], "", False, 50, ""), TODAY)
    [(queued, _)] = queue
    assert (queued.decision.decision_id, queued.reasons) == ("APP-1@v2", (handlers.IN_NOTICE,))
    # A reviewer can ask the queue for exactly these items (the console's reason filter).
    by_reason, _ = handlers.list_queue(uow, handlers.queue_query("", handlers.IN_NOTICE, [], "", False, 50, ""), TODAY)
    assert [i.item_id for i, _ in by_reason] == [queued.item_id]
    # The reviewed decision, once the ledger applied it, goes on a new notice.
    assert adjusted_to(uow, "APP-1", "APP-1@v2", f"APP-1@v2/review:{queued.item_id}", 400_000) == "adjusted"
    _, [new_line] = handlers.publish_notice(uow, ALICE, WF, TODAY, NOW)
    assert (new_line.decision_id, new_line.amount_fen) == (f"APP-1@v2/review:{queued.item_id}", 400_000)


@pytest.mark.parametrize("ledger_first", [True, False], ids=["ledger_first", "decision_first"])
@pytest.mark.parametrize(
    "reviewed_on",
    [dt.date(2025, 2, 5), dt.date(2025, 2, 7)],
    ids=["in_the_period", "period_ended_not_yet_closed"],
)
@pytest.mark.parametrize(
    ("clause", "outcome", "ceiling", "amount"),
    [("13", NEEDS_REVIEW, 0, 500_000), ("1.purchase", ELIGIBLE, 150_000_000, 150_000_000)],
    ids=["needs_review", "four_eyes"],
)
def test_a_redecision_reviewed_for_its_own_reasons_while_its_award_is_in_notice_is_noticed_afresh(
    uow, clause, outcome, ceiling, amount, reviewed_on, ledger_first
):
    """A re-decision that needs review anyway (NEEDS_REVIEW, the four-eyes
    threshold) is held by the ledger until its reviewed decision arrives,
    which then supersedes the old grant whose line is still NOTICED. That
    reviewed decision is already the "new reviewed decision" workflow.md
    asks for: it goes on the next notice, it does not wait for a review
    that nobody will ever open (review ignores reviewed decisions)."""
    application(uow, "APP-1", FIRM, "企业1")
    grant(uow, "APP-1", 300_000, clause=clause)
    notice, [old_line] = handlers.publish_notice(uow, ALICE, WF, TODAY, NOW)
    assert notice.last_day == dt.date(2025, 2, 6)
    redecision = dataclasses.replace(
        decision("APP-1", outcome=outcome, clause=clause, max_award=ceiling),
        decision_id="APP-1@v2",
        policy_version="v2",
        supersedes_decision_id="APP-1@v1",
    )
    assert redecision.review_required  # the usual reasons: payout holds it (held_superseding), no GrantAdjusted
    assert handlers.queue_decision(uow, redecision, WF, TODAY, NOW, "ab" * 16) == "queued"
    item_id = review.item_id_for("APP-1@v2")
    with uow:  # the reviewer sees both why: the usual reason, and that the public saw the old amount
        assert uow.items.get(item_id).reasons == (*redecision.review_reasons, handlers.IN_NOTICE)
    at = dt.datetime.combine(reviewed_on, dt.time(2), dt.UTC)
    handlers.claim(uow, item_id, ALICE, at)
    handlers.decide(uow, item_id, ALICE, WF, reviewed_on, at, result="APPROVED", amount_fen=amount, basis="核定")
    assert handlers.second_approve(uow, item_id, BOB, WF, reviewed_on, at).status == review.APPROVED
    with uow:  # the reviewed decision review published on subsidy.decisions.v1
        reviewed = review.reviewed_decision(uow.items.get(item_id), WF.on(reviewed_on))
    assert reviewed.decision_id == f"APP-1@v2/review:{item_id}"
    steps = [
        # The ledger applies the reviewed decision to the grant it still holds: v1's (v2 was never applied).
        lambda: adjusted_to(uow, "APP-1", "APP-1@v1", reviewed.decision_id, amount, clause),
        # Review reads its own reviewed decision back from subsidy.decisions.v1.
        lambda: handlers.queue_decision(uow, reviewed, WF, reviewed_on, at, "ab" * 16),
    ]
    results = [step() for step in (steps if ledger_first else reversed(steps))]
    assert sorted(results) == ["adjusted", "ignored"]
    with uow:
        assert uow.lines.get(old_line.line_id).status == handlers.SUPERSEDED
        states = {g.decision_id: g.state for g in uow.grants.of_firm(FIRM)}
    assert states == {"APP-1@v1": handlers.SUPERSEDED, reviewed.decision_id: "RESERVED"}
    # The old amount never becomes payable; the reviewed one is noticed afresh.
    assert handlers.close_notice_periods(uow, dt.date(2025, 2, 7), at) == []
    later = dt.date(2025, 2, 10)
    _, [new_line] = handlers.publish_notice(uow, ALICE, WF, later, dt.datetime.combine(later, dt.time(2), dt.UTC))
    assert (new_line.decision_id, new_line.amount_fen) == (reviewed.decision_id, amount)
    with uow:
        assert uow.lines.get(new_line.line_id).status == "NOTICED"


def test_a_superseding_decision_opens_a_review_item_only_when_review_is_required():
    uow = FakeUnitOfWork()
    plain = dataclasses.replace(
        decision("APP-1"), review_required=False, review_reasons=(), supersedes_decision_id="APP-1@v0"
    )
    assert handlers.queue_decision(uow, plain, WF, TODAY, NOW, "ab" * 16) == "ignored"
    needs = dataclasses.replace(decision("APP-2"), supersedes_decision_id="APP-2@v0")
    assert needs.review_required
    assert handlers.queue_decision(uow, needs, WF, TODAY, NOW, "ab" * 16) == "queued"


def test_an_adjusted_grant_whose_ids_break_the_contract_is_a_dead_letter_not_a_notice_line(uow):
    """A GrantAdjusted puts its application on a public notice: like GrantRecorded,
    its ids are checked against the contract (notify and intake refuse it too)."""
    application(uow, "APP-1", FIRM, "企业1")
    assert grant(uow, "APP-1", 300_000) == "recorded"
    with pytest.raises(handlers.Rejected, match="grant_adjusted.application_id"):
        adjusted(uow, "APP-1\n<script>", 200_000)
    with pytest.raises(handlers.Rejected, match="grant_adjusted.credit_code"):
        handlers.record_payout_event(
            uow,
            payout_pb2.PayoutEvent(
                event_id="adjusted:bad-code",
                grant_adjusted=payout_pb2.GrantAdjusted(
                    application_id="APP-1", credit_code="not-a-code", decision_id="APP-1@v2", granted_fen=1
                ),
            ).SerializeToString(),
            NOW,
        )
    _, lines = handlers.publish_notice(uow, ALICE, WF, TODAY, NOW)
    assert [(x.decision_id, x.amount_fen) for x in lines] == [("APP-1@v1", 300_000)]
