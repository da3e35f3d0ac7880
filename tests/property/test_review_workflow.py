"""Invariants of the review workflow's rules over generated inputs:

- working days: a notice period published on any day from 2020 to late 2026
  starts on its first working day on or after publication, holds exactly N
  working days and ends on one; ``add_working_days`` and
  ``working_days_between`` agree; the calendar is the maintained package's;
- review items: whatever sequence of steps by whichever subjects, an item
  never ends APPROVED with the same subject twice, never above its ceiling
  or the manual limit, and a refused step leaves the item as it was.
"""

from __future__ import annotations

import datetime as dt

import chinese_calendar
from hypothesis import given, settings
from hypothesis import strategies as st

from subsidy.core.domain import ELIGIBLE, NEEDS_REVIEW, Decision, Entitlement, LimitKind, Reason
from subsidy.core.workflow import calendar, notice, review
from subsidy.core.workflow.settings import load_workflow

WF = load_workflow().on(dt.date(2025, 1, 1))
days = st.dates(min_value=dt.date(2020, 1, 1), max_value=dt.date(2026, 10, 31))


@given(days, st.integers(min_value=1, max_value=25))
def test_a_notice_period_holds_exactly_its_working_days(published, n):
    period = notice.notice_period(published, n)
    assert period.first_day >= published
    assert calendar.is_working_day(period.first_day) and calendar.is_working_day(period.last_day)
    gap = [published + dt.timedelta(days=i) for i in range((period.first_day - published).days)]
    assert not any(chinese_calendar.is_workday(d) for d in gap)
    span = [period.first_day + dt.timedelta(days=i) for i in range((period.last_day - period.first_day).days + 1)]
    assert sum(chinese_calendar.is_workday(d) for d in span) == n
    assert period.payable_on == period.last_day + dt.timedelta(days=1)


@given(days, st.integers(min_value=0, max_value=30))
def test_adding_and_counting_working_days_agree(day, n):
    later = calendar.add_working_days(day, n)
    assert calendar.working_days_between(day, later) == n
    assert n == 0 or calendar.is_working_day(later)


def _decision(manual: bool, ceiling: int) -> Decision:
    d = Decision(
        decision_id="P-1@v",
        application_id="P-1",
        credit_code="91310117313Q6C3D6G",
        clause="15" if manual else "1.purchase",
        outcome=NEEDS_REVIEW if manual else ELIGIBLE,
        max_award_fen=0 if manual else ceiling,
        reasons=(Reason("R", "1", "x"),),
        policy_version="v",
        decision_year=2025,
        submitted_on=dt.date(2025, 3, 3),
        entitlements=() if manual else (Entitlement("1.purchase", LimitKind.CUMULATIVE_CAP, ceiling, 10**10),),
        tranche_shares_percent=() if manual else (40, 30, 30),
    )
    return review.stamp(d, WF)


subjects = st.sampled_from(["alice", "bob", "carol", ""])
steps = st.lists(
    st.tuples(
        st.sampled_from(["claim", "approve", "reject", "info", "answer", "second", "back"]),
        subjects,
        st.integers(min_value=-5, max_value=300_000_000),
    ),
    max_size=12,
)


@settings(max_examples=300)
@given(st.booleans(), st.integers(min_value=100_000_000, max_value=250_000_000), steps)
def test_no_sequence_of_steps_breaks_four_eyes_or_the_limits(manual, ceiling, plan):
    item = review.new_item(_decision(manual, ceiling), dt.date(2025, 3, 3))
    for action, who, amount in plan:
        before = item
        try:
            if action == "claim":
                item = review.claim(item, who)
            elif action == "approve":
                item = review.decide(item, who, review.APPROVED, WF, "t", amount_fen=amount, basis="b")
            elif action == "reject":
                item = review.decide(item, who, review.REJECTED, WF, "t", reasons="r")
            elif action == "info":
                item = review.decide(item, who, review.MORE_INFO_REQUESTED, WF, "t", missing="m")
            elif action == "answer":
                item = review.answer_information(item, "a", len(item.info_requests))
            elif action == "back":
                item = review.send_back(item, who, "r")
            else:
                item = review.second_approve(item, who, "t")
        except review.WorkflowError:
            assert item == before
    if item.status in (review.APPROVED, review.AWAITING_SECOND):
        limit = WF.manual_award_limit_fen if manual else ceiling
        assert 0 < item.amount_fen <= limit
        assert item.first_reviewer
    if item.status == review.APPROVED:
        if manual or item.amount_fen >= WF.four_eyes_threshold_fen:
            assert item.second_reviewer and item.second_reviewer != item.first_reviewer
        reviewed = review.reviewed_decision(item, WF)
        assert reviewed.max_award_fen == item.amount_fen == sum(e.amount_fen for e in reviewed.entitlements)
        assert len(set(reviewed.review.reviewers)) == len(reviewed.review.reviewers)
