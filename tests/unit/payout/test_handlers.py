"""Payout's use cases (handlers.py) over the in-memory unit of work
(fakes.py): what each writes, what it announces, that it commits once, and
that a refusal or a failure keeps nothing. The same use cases over SQL:
test_store.py (SQLite) and tests/integration/test_payout_store.py,
test_db_batch.py (SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from subsidy.contracts import cloudevents
from subsidy.core.domain import ReviewRecord
from subsidy.services.payout import handlers
from subsidy.services.payout.model import (
    CANCELLED,
    DUE,
    PAID,
    SCHEDULED,
    FailedPrecondition,
    GrantState,
    InvalidArgument,
    NotFound,
    Payment,
    Rejected,
)
from subsidy.v1 import payout_pb2

from .fakes import FakeUnitOfWork
from .support import FIRM, OTHER_FIRM, RENT_CAP, line, rent_decision

TRACE = "ab" * 16
OTHER_TRACE = "cd" * 16
AT = dt.datetime(2025, 3, 1, 0, 0, tzinfo=dt.UTC)


def event(message):
    body = payout_pb2.PayoutEvent.FromString(message.value)
    return body.WhichOneof("event"), getattr(body, body.WhichOneof("event"))


def tables(uow):
    """Everything a unit of work can write, to compare before and after."""
    return (
        dict(uow.inbox.rows),
        dict(uow.grants.rows),
        dict(uow.tranches.rows),
        dict(uow.usage.rows),
        dict(uow.payments.rows),
        list(uow.outbox.event_ids),
    )


class TestApplyDecision:
    def test_an_eligible_decision_records_a_reserved_grant_usage_inbox_and_event_in_one_commit_and_no_tranche(self):
        uow = FakeUnitOfWork()
        applied = handlers.apply_decision(uow, rent_decision("A-1", 240_000_000, shares=(40, 30, 30)), TRACE, AT)
        assert (applied.result, applied.plan.granted_fen) == ("applied", 240_000_000)
        assert uow.commits == 1
        assert uow.inbox.rows == {"A-1@v1+test": ("A-1", "applied")}
        grant = uow.grants.rows["A-1"]
        assert (grant.granted_fen, grant.trace_id, grant.state) == (240_000_000, TRACE, GrantState.RESERVED)
        assert (grant.uses, grant.tranche_shares_percent, grant.submitted_on) == (
            (("1.rent", 240_000_000),),
            (40, 30, 30),
            "2025-02-20",
        )
        assert uow.tranches.rows == {}
        # The reservation counts against the cap at once.
        assert uow.usage.used_fen(FIRM, "1.rent") == 240_000_000
        assert uow.outbox.event_ids == ["grant:A-1"]
        kind, body = event(uow.outbox.messages[0])
        assert (kind, body.state, body.tranche_count) == ("grant_recorded", payout_pb2.GRANT_STATE_RESERVED, 0)

    def test_the_events_carry_the_decisions_trace_and_the_time_of_the_write(self):
        uow = FakeUnitOfWork()
        handlers.apply_decision(uow, rent_decision("A-1"), TRACE, AT)
        for message in uow.outbox.messages:
            headers = cloudevents.as_dict(message.headers)
            assert cloudevents.trace_id_of(headers) == TRACE and headers["ce_time"] == "2025-03-01T00:00:00.000Z"

    def test_the_firm_is_locked_before_the_inbox_is_read(self):
        uow = FakeUnitOfWork()
        seen = []
        has = uow.inbox.has
        uow.inbox.has = lambda decision_id: (seen.append(list(uow.firms.locked)), has(decision_id))[1]
        handlers.apply_decision(uow, rent_decision("A-1"), TRACE, AT)
        assert seen == [[FIRM]]

    def test_a_replayed_decision_writes_nothing_new(self):
        uow = FakeUnitOfWork()
        handlers.apply_decision(uow, rent_decision("A-1"), TRACE, AT)
        before = tables(uow)
        assert handlers.apply_decision(uow, rent_decision("A-1"), OTHER_TRACE, AT).result == "replayed"
        assert tables(uow) == before

    def test_a_later_decision_for_a_granted_application_records_a_grant_of_0_under_its_own_id(self):
        uow = FakeUnitOfWork()
        handlers.apply_decision(uow, rent_decision("A-1"), TRACE, AT)
        applied = handlers.apply_decision(uow, rent_decision("A-1", policy_version="v2+test"), TRACE, AT)
        assert applied.result == "duplicate" and applied.plan.granted_fen == 0
        assert uow.inbox.rows["A-1@v2+test"] == ("A-1", "duplicate")
        assert len(uow.grants.rows) == 1 and uow.usage.used_fen(FIRM, "1.rent") == 240_000_000
        kind, body = event(uow.outbox.messages[-1])
        assert uow.outbox.event_ids[-1] == "grant:A-1@v2+test"
        assert (kind, body.granted_fen, [r.code for r in body.reasons]) == (
            "grant_recorded",
            0,
            ["DUPLICATE_APPLICATION"],
        )

    def test_the_cap_holds_across_applications_and_the_firms_usage_is_kept_per_firm(self):
        uow = FakeUnitOfWork()
        granted = [
            handlers.apply_decision(uow, rent_decision(f"A-{i}", 240_000_000), TRACE, AT).plan.granted_fen
            for i in range(3)
        ]
        assert granted == [240_000_000, 240_000_000, 20_000_000]
        assert [r.code for r in uow.grants.rows["A-2"].reasons] == ["CAP_PARTIAL"]
        assert uow.usage.used_fen(FIRM, "1.rent") == RENT_CAP
        other = handlers.apply_decision(uow, rent_decision("B-1", 240_000_000, firm=OTHER_FIRM), TRACE, AT)
        assert other.plan.granted_fen == 240_000_000

    def test_an_ineligible_decision_is_recorded_as_a_grant_of_0_without_tranches_or_usage(self):
        uow = FakeUnitOfWork()
        handlers.apply_decision(uow, rent_decision("A-1", outcome="REFERRED"), TRACE, AT)
        assert (uow.grants.rows["A-1"].outcome, uow.grants.rows["A-1"].granted_fen) == ("REFERRED", 0)
        assert uow.tranches.rows == {} and uow.usage.rows == {} and uow.outbox.event_ids == ["grant:A-1"]

    def test_a_failure_before_the_commit_keeps_nothing_of_the_decision(self):
        uow = FakeUnitOfWork()
        handlers.apply_decision(uow, rent_decision("A-0"), TRACE, AT)
        before = tables(uow)

        def broken(messages, at):
            raise ConnectionError("the database went away")

        uow.outbox.add = broken
        with pytest.raises(ConnectionError):
            handlers.apply_decision(uow, rent_decision("A-1"), TRACE, AT)
        assert tables(uow) == before and uow.commits == 1


def granted(uow, *decisions):
    """Each decision applied and its notice line payable on its submission
    day (so its tranches are due as they were before the notice gate)."""
    for decision in decisions:
        handlers.apply_decision(uow, decision, TRACE, AT)
        handlers.apply_notice_line(uow, line(decision), AT)
    return uow


def reviewed(computed, item_id="R-1", *, result="APPROVED", amount_fen=240_000_000, **kwargs):
    """The reviewed decision superseding ``computed`` (decision.proto: ReviewRecord)."""
    decision = rent_decision(
        computed.application_id, amount_fen, outcome="ELIGIBLE" if result == "APPROVED" else "INELIGIBLE", **kwargs
    )
    return dataclasses.replace(
        decision,
        decision_id=f"{computed.decision_id}/review:{item_id}",
        review=ReviewRecord(
            computed.decision_id, item_id, ("reviewer-a", "reviewer-b"), "依据", result, "2025-03-01T00:00:00Z"
        ),
    )


def held(decision):
    return dataclasses.replace(decision, review_required=True, review_reasons=("ABOVE_FOUR_EYES_THRESHOLD",))


class TestReview:
    def test_a_decision_that_requires_review_is_seen_once_and_grants_and_reserves_nothing(self):
        uow = FakeUnitOfWork()
        computed = held(rent_decision("A-1"))
        assert handlers.apply_decision(uow, computed, TRACE, AT).result == "held_for_review"
        assert uow.inbox.rows == {"A-1@v1+test": ("A-1", "held_for_review")}
        assert uow.grants.rows == {} and uow.usage.rows == {} and uow.outbox.event_ids == []
        before = tables(uow)
        assert handlers.apply_decision(uow, computed, TRACE, AT).result == "replayed"
        assert tables(uow) == before

    def test_the_reviewed_decision_is_applied_like_a_computed_one_under_its_own_id(self):
        uow = FakeUnitOfWork()
        computed = held(rent_decision("A-1"))
        handlers.apply_decision(uow, computed, TRACE, AT)
        decision = reviewed(computed, amount_fen=100_000_000)
        applied = handlers.apply_decision(uow, decision, TRACE, AT)
        assert (applied.result, applied.plan.granted_fen) == ("applied", 100_000_000)
        grant = uow.grants.rows["A-1"]
        assert (grant.decision_id, grant.state) == ("A-1@v1+test/review:R-1", GrantState.RESERVED)
        assert uow.usage.used_fen(FIRM, "1.rent") == 100_000_000
        assert handlers.apply_decision(uow, decision, TRACE, AT).result == "replayed"

    def test_a_rejected_review_is_a_grant_of_0(self):
        uow = FakeUnitOfWork()
        computed = held(rent_decision("A-1"))
        handlers.apply_decision(uow, computed, TRACE, AT)
        applied = handlers.apply_decision(uow, reviewed(computed, result="REJECTED"), TRACE, AT)
        assert applied.plan.granted_fen == 0 and uow.usage.rows == {}

    def test_a_reviewed_decision_superseding_an_applied_decision_is_refused_and_writes_nothing(self):
        uow = FakeUnitOfWork()
        computed = rent_decision("A-1")
        handlers.apply_decision(uow, computed, TRACE, AT)
        before = tables(uow)
        with pytest.raises(
            Rejected, match=r"^review.supersedes_decision_id: decision A-1@v1\+test was already applied"
        ):
            handlers.apply_decision(uow, reviewed(computed), TRACE, AT)
        assert tables(uow) == before

    def test_a_reviewed_decision_of_another_application_is_refused(self):
        uow = FakeUnitOfWork()
        computed = held(rent_decision("A-1"))
        handlers.apply_decision(uow, computed, TRACE, AT)
        other = dataclasses.replace(reviewed(computed), application_id="A-2")
        with pytest.raises(Rejected, match="is of application A-1"):
            handlers.apply_decision(uow, other, TRACE, AT)

    @pytest.mark.parametrize(
        "change, message",
        [
            (dict(decision_id="A-1@v1+test/review:R-9"), "^decision_id: a reviewed decision's id is"),
            (dict(review_required=True), "^review_required: "),
            (dict(outcome="NEEDS_REVIEW"), "^outcome: a reviewed decision APPROVED must be ELIGIBLE"),
        ],
    )
    def test_a_reviewed_decision_breaking_the_contract_is_rejected_naming_the_field(self, change, message):
        from .support import decision_bytes

        decision = dataclasses.replace(reviewed(held(rent_decision("A-1"))), **change)
        with pytest.raises(Rejected, match=message):
            handlers.parse_decision(decision_bytes(decision))

    def test_a_reviewed_decision_with_an_unknown_result_is_rejected(self):
        from .support import decision_bytes

        decision = reviewed(held(rent_decision("A-1")))
        decision = dataclasses.replace(decision, review=dataclasses.replace(decision.review, result="MAYBE"))
        with pytest.raises(Rejected, match="^review.result: APPROVED or REJECTED, got 'MAYBE'$"):
            handlers.parse_decision(decision_bytes(decision))


class TestNoticeLines:
    def test_payable_schedules_the_tranches_due_on_the_later_of_payable_on_and_their_day(self):
        uow = FakeUnitOfWork()
        decision = rent_decision("A-1", 240_000_000, shares=(40, 30, 30))
        handlers.apply_decision(uow, decision, TRACE, AT)
        result, grant, tranches = handlers.apply_notice_line(uow, line(decision, day="2025-03-14"), AT)
        assert result == "applied" and grant.state == GrantState.PAYABLE
        assert [(t.tranche_id, t.amount_fen, t.due_on, t.budget_year, t.status) for t in tranches] == [
            ("A-1/tranche-0", 96_000_000, "2025-03-14", 2025, SCHEDULED),
            ("A-1/tranche-1", 72_000_000, "2026-02-20", 2026, SCHEDULED),
            ("A-1/tranche-2", 72_000_000, "2027-02-20", 2027, SCHEDULED),
        ]
        assert uow.tranches.of_firm(FIRM) == tranches
        stored = uow.grants.rows["A-1"]
        assert (stored.state, stored.notice_id, stored.payable_on) == (GrantState.PAYABLE, "N-2025-01", "2025-03-14")
        assert uow.usage.used_fen(FIRM, "1.rent") == 240_000_000
        assert uow.outbox.event_ids == [
            "grant:A-1",
            "payable:A-1@v1+test",
            "scheduled:A-1/tranche-0",
            "scheduled:A-1/tranche-1",
            "scheduled:A-1/tranche-2",
        ]
        kind, body = event(uow.outbox.messages[1])
        assert (kind, body.payable_on, body.granted_fen, body.tranche_count, body.notice_id) == (
            "grant_payable",
            "2025-03-14",
            240_000_000,
            3,
            "N-2025-01",
        )
        for message in uow.outbox.messages:
            assert cloudevents.trace_id_of(cloudevents.as_dict(message.headers)) == TRACE

    def test_a_repeated_payable_line_writes_nothing(self):
        uow = granted(FakeUnitOfWork(), rent_decision("A-1"))
        before = tables(uow)
        result, grant, tranches = handlers.apply_notice_line(uow, line(rent_decision("A-1"), day="2025-05-05"), AT)
        assert (result, grant.state, tranches) == ("repeat", GrantState.PAYABLE, [])
        assert tables(uow) == before

    def test_withdrawn_releases_the_reservation_so_the_room_is_free_again(self):
        uow = FakeUnitOfWork()
        first = rent_decision("A-1", 400_000_000)
        handlers.apply_decision(uow, first, TRACE, AT)
        assert (
            handlers.apply_decision(uow, rent_decision("A-2", 400_000_000), TRACE, AT).plan.granted_fen == 100_000_000
        )
        result, grant, tranches = handlers.apply_notice_line(
            uow, line(first, "withdrawn", "2025-03-05", reason="异议成立"), AT
        )
        assert (result, grant.state, tranches) == ("applied", GrantState.WITHDRAWN, [])
        assert uow.usage.used_fen(FIRM, "1.rent") == 100_000_000
        stored = uow.grants.rows["A-1"]
        assert (stored.withdrawn_on, stored.withdraw_reason) == ("2025-03-05", "异议成立")
        assert uow.tranches.rows == {}
        kind, body = event(uow.outbox.messages[-1])
        assert uow.outbox.event_ids[-1] == "withdrawn:A-1@v1+test"
        assert (kind, body.released_fen, body.reason, body.withdrawn_on) == (
            "grant_withdrawn",
            400_000_000,
            "异议成立",
            "2025-03-05",
        )
        # The room released is there for the next application.
        assert (
            handlers.apply_decision(uow, rent_decision("A-3", 400_000_000), TRACE, AT).plan.granted_fen == 400_000_000
        )
        before = tables(uow)
        assert handlers.apply_notice_line(uow, line(first, "withdrawn", "2025-03-06"), AT)[0] == "repeat"
        assert tables(uow) == before

    def test_a_once_award_withdrawn_can_be_awarded_again(self):
        from subsidy.core.domain import Entitlement, LimitKind

        def once(application_id):
            d = rent_decision(application_id, 1_000_000)
            return dataclasses.replace(d, entitlements=(Entitlement("7.once", LimitKind.ONCE, 1_000_000, 1_000_000),))

        uow = FakeUnitOfWork()
        handlers.apply_decision(uow, once("A-1"), TRACE, AT)
        assert handlers.apply_decision(uow, once("A-2"), TRACE, AT).plan.granted_fen == 0
        handlers.apply_notice_line(uow, line(once("A-1"), "withdrawn"), AT)
        assert handlers.apply_decision(uow, once("A-3"), TRACE, AT).plan.granted_fen == 1_000_000

    def test_payable_after_withdrawn_and_withdrawn_after_payable_are_rejected_and_write_nothing(self):
        uow = granted(FakeUnitOfWork(), rent_decision("A-1"))
        handlers.apply_decision(uow, rent_decision("A-2", 1000), TRACE, AT)
        handlers.apply_notice_line(uow, line(rent_decision("A-2", 1000), "withdrawn"), AT)
        before, commits = tables(uow), uow.commits
        with pytest.raises(
            Rejected, match=r"is PAYABLE since 2025-02-20 \(notice N-2025-01\): it cannot become WITHDRAWN"
        ):
            handlers.apply_notice_line(uow, line(rent_decision("A-1"), "withdrawn"), AT)
        with pytest.raises(Rejected, match="is WITHDRAWN since 2025-02-20 .*: it cannot become PAYABLE"):
            handlers.apply_notice_line(uow, line(rent_decision("A-2", 1000)), AT)
        assert tables(uow) == before and uow.commits == commits

    def test_a_line_for_an_unknown_held_or_duplicate_decision_is_rejected_saying_which(self):
        uow = FakeUnitOfWork()
        handlers.apply_decision(uow, held(rent_decision("A-1")), TRACE, AT)
        handlers.apply_decision(uow, rent_decision("A-2"), TRACE, AT)
        handlers.apply_decision(uow, rent_decision("A-2", policy_version="v2+test"), TRACE, AT)
        before = tables(uow)
        with pytest.raises(Rejected, match="unknown decision A-9@v1\\+test: the ledger has recorded no grant"):
            handlers.apply_notice_line(uow, line(rent_decision("A-9")), AT)
        with pytest.raises(Rejected, match="held for review and never applied"):
            handlers.apply_notice_line(uow, line(rent_decision("A-1")), AT)
        with pytest.raises(Rejected, match="it was a duplicate"):
            handlers.apply_notice_line(uow, line(rent_decision("A-2", policy_version="v2+test")), AT)
        assert tables(uow) == before

    def test_a_line_naming_another_firm_or_application_is_rejected(self):
        uow = FakeUnitOfWork()
        decision = rent_decision("A-1")
        handlers.apply_decision(uow, decision, TRACE, AT)
        before = tables(uow)
        with pytest.raises(Rejected, match="^payable:A-1@v1\\+test: credit_code: "):
            handlers.apply_notice_line(uow, line(dataclasses.replace(decision, credit_code=OTHER_FIRM)), AT)
        with pytest.raises(Rejected, match="application_id: decision A-1@v1\\+test is of application A-1, not A-7"):
            handlers.apply_notice_line(uow, line(dataclasses.replace(decision, application_id="A-7")), AT)
        assert tables(uow) == before

    def test_the_ledger_shows_state_and_what_is_reserved_and_payable_per_scope(self):
        uow = granted(FakeUnitOfWork(), rent_decision("A-1", 100_000_000))
        handlers.apply_decision(uow, rent_decision("A-2", 30_000_000), TRACE, AT)
        ledger = handlers.ledger(uow, FIRM)
        assert [(g.application_id, g.state, len(g.tranches)) for g in ledger.grants] == [
            ("A-1", GrantState.PAYABLE, 1),
            ("A-2", GrantState.RESERVED, 0),
        ]
        [scope] = ledger.scopes
        assert (scope.used_fen, scope.reserved_fen, scope.payable_fen) == (130_000_000, 30_000_000, 100_000_000)


class TestRaiseTranchesDue:
    def test_tranches_become_due_on_their_day_once_each_with_an_event_in_the_grants_trace(self):
        uow = granted(FakeUnitOfWork(), rent_decision("A-1", 1000, shares=(50, 50)))
        assert handlers.raise_tranches_due(uow, dt.date(2025, 2, 19), AT) == []
        assert [t.tranche_id for t in handlers.raise_tranches_due(uow, dt.date(2025, 2, 20), AT)] == ["A-1/tranche-0"]
        assert handlers.raise_tranches_due(uow, dt.date(2025, 12, 31), AT) == []
        assert uow.tranches.get("A-1/tranche-0").status == DUE and uow.tranches.get("A-1/tranche-1").status == SCHEDULED
        [due] = [m for m in uow.outbox.messages if m.event_id.startswith("due:")]
        assert due.event_id == "due:A-1/tranche-0"
        assert cloudevents.trace_id_of(cloudevents.as_dict(due.headers)) == TRACE

    def test_firms_are_locked_in_credit_code_order_and_their_tranches_announced_by_due_date(self):
        uow = granted(
            FakeUnitOfWork(),
            rent_decision("B-1", 1000, firm=OTHER_FIRM, submitted_on="2025-01-05"),
            rent_decision("A-2", 1000, submitted_on="2025-02-01"),
            rent_decision("A-1", 1000, submitted_on="2025-01-10"),
        )
        uow.firms.locked.clear()
        marked = handlers.raise_tranches_due(uow, dt.date(2025, 3, 1), AT)
        assert uow.firms.locked == sorted({FIRM, OTHER_FIRM})
        by_firm = {code: [t.tranche_id for t in marked if t.credit_code == code] for code in (FIRM, OTHER_FIRM)}
        assert by_firm == {FIRM: ["A-1/tranche-0", "A-2/tranche-0"], OTHER_FIRM: ["B-1/tranche-0"]}


def payment(payment_id="P-1", tranche_id="A-1/tranche-0", amount_fen=500, code=FIRM):
    return Payment(payment_id, tranche_id, code, amount_fen, "2025-03-03")


class TestApplyPayment:
    def test_a_payment_pays_its_tranche_once_and_a_repeat_is_ignored(self):
        uow = granted(FakeUnitOfWork(), rent_decision("A-1", 1000, shares=(50, 50)))
        result, tranche = handlers.apply_payment(uow, payment(), AT)
        assert result == "applied" and (tranche.status, tranche.payment_id, tranche.paid_on) == (
            PAID,
            "P-1",
            "2025-03-03",
        )
        assert uow.payments.has("P-1") and uow.outbox.event_ids[-1] == "paid:A-1/tranche-0"
        kind, body = event(uow.outbox.messages[-1])
        assert (kind, body.payment_id, body.application_id) == ("tranche_paid", "P-1", "A-1")
        before = tables(uow)
        assert handlers.apply_payment(uow, payment(), AT) == ("repeat", None)
        assert tables(uow) == before

    @pytest.mark.parametrize(
        "bad, reason",
        [
            (payment("P-2", tranche_id="nope"), "unknown tranche: nope"),
            (payment("P-2", amount_fen=499), "amount mismatch"),
            (payment("P-2", code=OTHER_FIRM), "credit code mismatch"),
        ],
    )
    def test_a_payment_that_does_not_match_its_tranche_is_refused_and_writes_nothing(self, bad, reason):
        uow = granted(FakeUnitOfWork(), rent_decision("A-1", 1000, shares=(50, 50)))
        before, commits = tables(uow), uow.commits
        with pytest.raises(Rejected, match=reason):
            handlers.apply_payment(uow, bad, AT)
        assert tables(uow) == before and uow.commits == commits

    def test_a_paid_or_cancelled_tranche_is_not_paid_again(self):
        uow = granted(FakeUnitOfWork(), rent_decision("A-1", 1000, shares=(50, 50)))
        handlers.apply_payment(uow, payment(), AT)
        handlers.cancel_tranche(uow, "A-1/tranche-1", "迁出", dt.date(2025, 3, 2), AT)
        before = tables(uow)
        with pytest.raises(Rejected, match="already paid by payment P-1"):
            handlers.apply_payment(uow, payment("P-2"), AT)
        with pytest.raises(Rejected, match="cancelled"):
            handlers.apply_payment(uow, payment("P-3", tranche_id="A-1/tranche-1"), AT)
        assert tables(uow) == before

    def test_the_tranches_firm_is_locked_before_it_is_paid(self):
        uow = granted(FakeUnitOfWork(), rent_decision("A-1", 1000, shares=(50, 50)))
        uow.firms.locked.clear()
        handlers.apply_payment(uow, payment(), AT)
        assert uow.firms.locked == [FIRM]


class TestCancelTranche:
    def test_an_open_tranche_is_cancelled_once_with_an_event(self):
        uow = granted(FakeUnitOfWork(), rent_decision("A-1", 1000, shares=(50, 50)))
        handlers.raise_tranches_due(uow, dt.date(2025, 6, 1), AT)
        tranche, changed = handlers.cancel_tranche(uow, "A-1/tranche-0", "left the district", dt.date(2025, 6, 2), AT)
        assert changed and tranche.status == CANCELLED
        kind, body = event(uow.outbox.messages[-1])
        assert (kind, body.reason, body.cancelled_on) == ("tranche_cancelled", "left the district", "2025-06-02")
        before = tables(uow)
        assert handlers.cancel_tranche(uow, "A-1/tranche-0", "again", dt.date(2025, 6, 3), AT) == (tranche, False)
        assert tables(uow) == before

    def test_a_paid_or_unknown_tranche_cannot_be_cancelled_and_nothing_is_written(self):
        uow = granted(FakeUnitOfWork(), rent_decision("A-1", 1000, shares=(50, 50)))
        handlers.apply_payment(uow, payment(), AT)
        before = tables(uow)
        with pytest.raises(FailedPrecondition, match="paid on 2025-03-03"):
            handlers.cancel_tranche(uow, "A-1/tranche-0", "too late", dt.date(2025, 6, 3), AT)
        with pytest.raises(NotFound):
            handlers.cancel_tranche(uow, "nope", "", dt.date(2025, 6, 3), AT)
        assert tables(uow) == before

    @pytest.mark.parametrize(
        "reason",
        ["x" * (handlers.MAX_CANCEL_REASON_CHARS + 1), "迁" * 1_048_576, "left\x00the district", "a\nb", "\x1b[31m"],
    )
    def test_a_reason_too_long_or_with_control_characters_is_refused_and_nothing_is_written(self, reason):
        uow = granted(FakeUnitOfWork(), rent_decision("A-1", 1000, shares=(50, 50)))
        before = tables(uow)
        with pytest.raises(InvalidArgument, match="^reason: "):
            handlers.cancel_tranche(uow, "A-1/tranche-0", reason, dt.date(2025, 6, 2), AT)
        assert tables(uow) == before

    def test_a_reason_of_the_limit_is_accepted(self):
        uow = granted(FakeUnitOfWork(), rent_decision("A-1", 1000, shares=(50, 50)))
        reason = "迁" * handlers.MAX_CANCEL_REASON_CHARS
        tranche, changed = handlers.cancel_tranche(uow, "A-1/tranche-0", reason, dt.date(2025, 6, 2), AT)
        assert changed and event(uow.outbox.messages[-1])[1].reason == reason


class TestReading:
    def test_the_ledger_is_the_firms_grants_with_their_tranches_and_its_usage(self):
        uow = granted(
            FakeUnitOfWork(),
            rent_decision("A-2", 1000, shares=(50, 50), year=2026),
            rent_decision("A-1", 300_000_000),
            rent_decision("B-1", 5, firm=OTHER_FIRM),
        )
        ledger = handlers.ledger(uow, FIRM)
        assert [(g.application_id, [t.tranche_id for t in g.tranches]) for g in ledger.grants] == [
            ("A-1", ["A-1/tranche-0"]),
            ("A-2", ["A-2/tranche-0", "A-2/tranche-1"]),
        ]
        [scope] = ledger.scopes
        assert (scope.used_fen, scope.remaining_fen) == (300_001_000, RENT_CAP - 300_001_000)

    def test_tranches_are_listed_page_by_page_by_due_date(self):
        uow = granted(
            FakeUnitOfWork(),
            *[rent_decision(f"A-{i}", 1000, submitted_on=f"2025-0{i + 1}-10", shares=(50, 50)) for i in range(5)],
        )
        seen, token = [], ""
        while True:
            rows, token = handlers.list_tranches(uow, handlers.tranche_query("2025-01-01", "2026-12-31", [], 3, token))
            seen += [t.tranche_id for t in rows]
            if not token:
                break
        assert len(seen) == 10 and seen[:2] == ["A-0/tranche-0", "A-1/tranche-0"] and seen[-1] == "A-4/tranche-1"

    def test_a_budget_years_tranches_come_by_due_date(self):
        uow = granted(
            FakeUnitOfWork(),
            rent_decision("B-1", 1000, submitted_on="2025-05-01", shares=(50, 50)),
            rent_decision("A-1", 1000, submitted_on="2025-03-01"),
        )
        assert [t.tranche_id for t in handlers.tranches_of_budget_year(uow, 2025)] == ["A-1/tranche-0", "B-1/tranche-0"]
