"""The pure rules of subsidy/core/workflow against ../shared/policy/workflow.md:
working days from the maintained holiday calendar (Spring Festival and
National Day 调休 included), the notice period, the review deadline, which
decisions need review, the review item's state machine with four-eyes and
the amount limits, the reviewed decision, and objections."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from subsidy.core.domain import ELIGIBLE, INELIGIBLE, NEEDS_REVIEW, Decision, Entitlement, LimitKind, Reason
from subsidy.core.workflow import calendar, notice, review
from subsidy.core.workflow.settings import WorkflowSettingsError, load_workflow, parse_workflow

D = dt.date
WF = load_workflow().on(D(2025, 6, 1))
AT = "2025-06-02T02:00:00Z"
FIRM = "91310117313Q6C3D6G"


def decision(outcome: str = ELIGIBLE, max_award: int = 150_000_000, clause: str = "1.purchase") -> Decision:
    lines = (
        (
            Entitlement("1.purchase", LimitKind.CUMULATIVE_CAP, 100_000_000, 1_000_000_000),
            Entitlement("1.purchase/x", LimitKind.CUMULATIVE_CAP, max_award - 100_000_000, 1_000_000_000),
        )
        if outcome == ELIGIBLE
        else ()
    )
    d = Decision(
        decision_id=f"app-1@v1+{clause}",
        application_id="app-1",
        credit_code=FIRM,
        clause=clause,
        outcome=outcome,
        max_award_fen=max_award if outcome == ELIGIBLE else 0,
        reasons=(Reason("AWARD_BASIS", clause.split(".")[0], "依据"),),
        policy_version="v1",
        decision_year=2025,
        submitted_on=D(2025, 5, 6),
        entitlements=lines,
        tranche_shares_percent=(40, 30, 30) if outcome == ELIGIBLE else (),
    )
    return review.stamp(d, WF)


# -- working days -------------------------------------------------------------------------


def test_notice_published_on_friday_before_spring_festival_ends_thursday_after():
    period = notice.notice_period(D(2025, 1, 24), 5)
    assert (period.first_day, period.last_day) == (D(2025, 1, 24), D(2025, 2, 6))
    assert period.payable_on == D(2025, 2, 7)


def test_notice_published_on_adjusted_working_sunday_before_national_day():
    period = notice.notice_period(D(2025, 9, 28), 5)
    assert (period.first_day, period.last_day) == (D(2025, 9, 28), D(2025, 10, 10))


def test_notice_published_on_a_holiday_starts_on_the_next_working_day():
    period = notice.notice_period(D(2025, 10, 1), 5)  # National Day
    assert period.first_day == D(2025, 10, 9)
    # 10-09, 10-10, 10-11 (Saturday, 调休 working day), 10-13, 10-14
    assert period.last_day == D(2025, 10, 14)


def test_spring_festival_2026_and_its_adjusted_saturdays():
    assert calendar.is_working_day(D(2026, 2, 14))  # Saturday, 调休
    assert not calendar.is_working_day(D(2026, 2, 17))  # 春节
    period = notice.notice_period(D(2026, 2, 13), 5)
    assert period.first_day == D(2026, 2, 13)
    assert period.last_day > D(2026, 2, 23)


def test_national_day_2026_is_not_working():
    assert not any(calendar.is_working_day(D(2026, 10, d)) for d in range(1, 8))
    assert calendar.next_working_day(D(2026, 10, 1)) == D(2026, 10, 8)


def test_a_plain_weekend_is_skipped():
    assert notice.notice_period(D(2025, 6, 7), 5).first_day == D(2025, 6, 9)
    assert notice.notice_period(D(2025, 6, 9), 5).last_day == D(2025, 6, 13)


def test_a_year_the_calendar_does_not_know_is_a_clear_error():
    with pytest.raises(calendar.CalendarNotCovered, match="working days of 2099 are not known"):
        calendar.is_working_day(D(2099, 1, 5))


def test_the_last_day_the_calendar_knows():
    """chinesecalendar 1.11.0 knows working days up to 2026: the days left are
    what the SubsidyHolidayCalendarEnding alert watches."""
    assert calendar.last_known_day(D(2025, 3, 1)) == D(2026, 12, 31)
    assert calendar.last_known_day(D(2026, 12, 2)) == D(2026, 12, 31)
    # A day in a year it does not know: the last known day is behind it.
    assert calendar.last_known_day(D(2027, 1, 4)) == D(2026, 12, 31)
    calendar.nth_working_day(calendar.last_known_day(D(2026, 1, 5)), 1)  # it really is known
    with pytest.raises(calendar.CalendarNotCovered):
        calendar.is_working_day(calendar.last_known_day(D(2026, 1, 5)) + dt.timedelta(days=1))


def test_working_day_helpers():
    assert calendar.add_working_days(D(2025, 1, 24), 0) == D(2025, 1, 24)
    assert calendar.add_working_days(D(2025, 1, 24), 1) == D(2025, 1, 26)
    assert calendar.working_days_between(D(2025, 1, 24), D(2025, 2, 6)) == 4
    with pytest.raises(ValueError, match="n: must be at least 1"):
        calendar.nth_working_day(D(2025, 1, 1), 0)


def test_review_deadline_is_counted_in_working_days():
    item = review.new_item(decision(), D(2025, 9, 26))  # Friday before National Day
    deadline = item.deadline(WF)
    assert calendar.working_days_between(D(2025, 9, 26), deadline) == 20
    assert deadline == D(2025, 10, 30)  # 9-28 (调休 Sunday) ... 10-11 (调休 Saturday) counted
    assert not item.overdue(deadline, WF)
    assert item.overdue(deadline + dt.timedelta(days=1), WF)
    closed = dataclasses.replace(item, status=review.REJECTED)
    assert not closed.overdue(D(2026, 1, 5), WF)


# -- settings -----------------------------------------------------------------------------


def test_settings_defaults():
    assert WF.four_eyes_threshold_fen == 100_000_000
    assert WF.manual_award_limit_fen == 100_000_000
    assert WF.review_deadline_working_days == 20
    assert WF.notice_period_working_days == 5
    assert WF.hold_grace_days == 90
    assert WF.proposal_window_days == 30


def _settings(**change):
    import yaml

    with open(load_workflow().source, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    for name, value in change.items():
        data["settings"][name] = value
    return data


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {
                "notice_period_working_days": {
                    "unit": "working_days",
                    "values": [{"from": "2022-01-01", "value": 0, "cites": "x"}],
                }
            },
            "settings.notice_period_working_days.values[0].value",
        ),
        (
            {
                "four_eyes_threshold_fen": {
                    "unit": "fen",
                    "values": [{"from": "2022-01-01", "value": 1.5, "cites": "x"}],
                }
            },
            "settings.four_eyes_threshold_fen.values[0].value",
        ),
        (
            {"hold_grace_days": {"unit": "days", "values": [{"from": "someday", "value": 3, "cites": "x"}]}},
            "settings.hold_grace_days.values[0].from",
        ),
        (
            {"proposal_window_days": {"unit": "days", "values": [{"from": "2022-01-01", "value": 3, "cites": ""}]}},
            "settings.proposal_window_days.values[0].cites",
        ),
        ({"manual_award_limit_fen": {"unit": "days", "values": []}}, "settings.manual_award_limit_fen.unit"),
        ({"surprise": {"unit": "fen", "values": []}}, "settings.surprise"),
    ],
)
def test_a_malformed_setting_is_refused_naming_the_field(change, field):
    with pytest.raises(WorkflowSettingsError, match=f"x.yaml: {field.replace('[', '.').replace(']', '.')}"):
        parse_workflow(_settings(**change), "x.yaml")


def test_a_missing_setting_is_refused():
    data = _settings()
    del data["settings"]["review_deadline_working_days"]
    with pytest.raises(WorkflowSettingsError, match="settings.review_deadline_working_days: is required"):
        parse_workflow(data, "x.yaml")


def test_dated_values_apply_from_their_day():
    data = _settings()
    data["settings"]["notice_period_working_days"]["values"].append({"from": "2026-01-01", "value": 7, "cites": "new"})
    s = parse_workflow(data, "x.yaml")
    assert s.on(D(2025, 12, 31)).notice_period_working_days == 5
    assert s.on(D(2026, 1, 1)).notice_period_working_days == 7
    with pytest.raises(WorkflowSettingsError, match="no value in force on 2021-12-31"):
        s.on(D(2021, 12, 31))


# -- routing ------------------------------------------------------------------------------


def test_which_decisions_need_review():
    assert decision(NEEDS_REVIEW, clause="13").review_reasons == (review.NEEDS_REVIEW_OUTCOME,)
    assert decision(ELIGIBLE, 100_000_000).review_reasons == (review.ABOVE_FOUR_EYES_THRESHOLD,)
    assert decision(ELIGIBLE, 100_000_000).review_required
    below = decision(ELIGIBLE, 99_999_999 + 100_000_000 - 100_000_000)
    assert not below.review_required and below.review_reasons == ()
    assert not decision(INELIGIBLE).review_required


# -- the item -----------------------------------------------------------------------------


def test_claim_then_approve_above_threshold_needs_a_second_reviewer():
    item = review.new_item(decision(), D(2025, 6, 2))
    assert item.status == review.OPEN
    item = review.claim(item, "alice")
    assert review.claim(item, "alice") == item
    with pytest.raises(review.FailedPrecondition, match="assigned to 'alice'"):
        review.claim(item, "bob")
    with pytest.raises(review.PermissionDenied, match="assigned to 'alice'"):
        review.decide(item, "bob", review.APPROVED, WF, AT, amount_fen=1, basis="x")
    item = review.decide(item, "alice", review.APPROVED, WF, AT, amount_fen=120_000_000, basis="核对购房发票")
    assert item.status == review.AWAITING_SECOND
    with pytest.raises(review.PermissionDenied, match="four-eyes"):
        review.second_approve(item, "alice", AT)
    done = review.second_approve(item, "bob", AT)
    assert (done.status, done.first_reviewer, done.second_reviewer) == (review.APPROVED, "alice", "bob")
    with pytest.raises(review.FailedPrecondition, match="closed"):
        review.second_approve(done, "carol", AT)
    with pytest.raises(review.FailedPrecondition, match="closed"):
        review.claim(done, "carol")


def test_a_lowered_amount_is_a_manual_amount_and_needs_a_second_reviewer_even_below_the_threshold():
    """Else one person could set an award just under the four-eyes threshold alone."""
    item = review.claim(review.new_item(decision(), D(2025, 6, 2)), "alice")
    item = review.decide(item, "alice", review.APPROVED, WF, AT, amount_fen=99_999_999, basis="压减")
    assert item.status == review.AWAITING_SECOND and item.decided_at == ""
    with pytest.raises(review.PermissionDenied):
        review.second_approve(item, "alice", AT)
    assert review.second_approve(item, "bob", AT).status == review.APPROVED


def test_amount_above_the_ceiling_is_refused_naming_the_field():
    item = review.claim(review.new_item(decision(), D(2025, 6, 2)), "alice")
    with pytest.raises(review.InvalidArgument, match="amount_fen: .*above the max_award_fen of 150000000") as e:
        review.decide(item, "alice", review.APPROVED, WF, AT, amount_fen=150_000_001, basis="x")
    assert e.value.field == "amount_fen"
    with pytest.raises(review.InvalidArgument, match="basis: is required"):
        review.decide(item, "alice", review.APPROVED, WF, AT, amount_fen=1, basis=" ")
    with pytest.raises(review.InvalidArgument, match="amount_fen"):
        review.decide(item, "alice", review.APPROVED, WF, AT, amount_fen=0, basis="x")
    with pytest.raises(review.InvalidArgument, match="result"):
        review.decide(item, "alice", "MAYBE", WF, AT)


def test_manual_award_limit_and_reviewer_amounts_for_clause_13():
    item = review.claim(review.new_item(decision(NEEDS_REVIEW, clause="13"), D(2025, 6, 2)), "alice")
    assert item.manual
    with pytest.raises(review.InvalidArgument, match="above the manual_award_limit_fen of 100000000"):
        review.decide(item, "alice", review.APPROVED, WF, AT, amount_fen=100_000_001, basis="x")
    with pytest.raises(review.InvalidArgument, match=r"reviewer_amounts\[cost_fen\]"):
        review.decide(item, "alice", review.APPROVED, WF, AT, amount_fen=5, basis="x", reviewer_amounts={"cost_fen": 1})
    small = review.decide(
        item,
        "alice",
        review.APPROVED,
        WF,
        AT,
        amount_fen=300_000,
        basis="人社局30%",
        reviewer_amounts={"training_cost_fen": 1_000_000},
    )
    assert small.status == review.AWAITING_SECOND  # any manual amount needs four eyes
    done = review.second_approve(small, "bob", AT)
    reviewed = review.reviewed_decision(done, WF)
    assert reviewed.decision_id == f"{done.decision.decision_id}/review:{done.item_id}"
    assert reviewed.outcome == ELIGIBLE and reviewed.max_award_fen == 300_000
    assert reviewed.entitlements == (Entitlement("13/application_id=app-1", LimitKind.ONCE, 300_000, 0),)
    assert reviewed.tranche_shares_percent == (100,)
    assert reviewed.review is not None and reviewed.review.reviewers == ("alice", "bob")
    assert reviewed.review.supersedes_decision_id == done.decision.decision_id
    assert not reviewed.review_required
    assert (reviewed.decision_year, reviewed.policy_version) == (2025, "v1")


def test_reviewed_decision_of_a_lowered_computed_award():
    item = review.claim(review.new_item(decision(), D(2025, 6, 2)), "alice")
    item = review.second_approve(
        review.decide(item, "alice", review.APPROVED, WF, AT, amount_fen=120_000_000, basis="核减"), "bob", AT
    )
    reviewed = review.reviewed_decision(item, WF)
    assert [e.amount_fen for e in reviewed.entitlements] == [100_000_000, 20_000_000]
    assert reviewed.tranche_shares_percent == (40, 30, 30)
    assert reviewed.reasons[-1].code == "REVIEW_APPROVED"


def test_rejection_and_more_information():
    item = review.claim(review.new_item(decision(NEEDS_REVIEW, clause="15"), D(2025, 6, 2)), "alice")
    asked = review.decide(item, "alice", review.MORE_INFO_REQUESTED, WF, AT, missing="活动照片与签到表")
    assert asked.status == review.MORE_INFO_REQUESTED and asked.info_requests == ("活动照片与签到表",)
    with pytest.raises(review.FailedPrecondition, match="only a CLAIMED item"):
        review.decide(asked, "alice", review.REJECTED, WF, AT, reasons="x")
    with pytest.raises(review.InvalidArgument, match="request_number"):
        review.answer_information(asked, "附件", 2)
    answered = review.answer_information(asked, "已上传", 1)
    assert answered.status == review.CLAIMED and answered.info_answers == ("已上传",)
    with pytest.raises(review.FailedPrecondition, match="already answered"):
        review.answer_information(answered, "再次", 1)
    rejected = review.decide(answered, "alice", review.REJECTED, WF, AT, reasons="材料不全")
    r = review.reviewed_decision(rejected, WF)
    assert (r.outcome, r.max_award_fen, r.entitlements) == (INELIGIBLE, 0, ())
    assert r.review is not None and r.review.result == review.REJECTED and r.review.reviewers == ("alice",)
    with pytest.raises(review.FailedPrecondition, match="closed"):
        review.decide(rejected, "alice", review.APPROVED, WF, AT, amount_fen=1, basis="x")


def test_no_subject_no_step():
    item = review.new_item(decision(), D(2025, 6, 2))
    with pytest.raises(review.PermissionDenied, match="identified subject"):
        review.claim(item, "")


def test_item_ids_are_derived():
    assert review.item_id_for("a@v") == review.item_id_for("a@v") != review.item_id_for("b@v")
    with pytest.raises(review.InvalidArgument, match="review_required"):
        review.new_item(decision(ELIGIBLE, 1_000), D(2025, 6, 2))


def test_a_reviewed_decision_names_the_item_it_closed_with():
    item = review.claim(review.new_item(decision(), D(2025, 6, 2)), "alice")
    own = review.reviewed_decision_id(item.decision.decision_id, item.item_id)
    assert review.reviewed_item_id(own) == item.item_id
    assert [review.reviewed_item_id(x) for x in ("app-1@v1", "/review:rv-1", "app-1@v1/review:")] == ["", "", ""]
    assert not item.closed_with(own), "an open item has no reviewed decision yet"
    item = review.decide(item, "alice", review.APPROVED, WF, AT, amount_fen=150_000_000, basis="核对")
    done = review.second_approve(item, "bob", AT)
    assert done.closed_with(own)
    assert review.reviewed_decision(done, WF).decision_id == own
    assert not done.closed_with(review.reviewed_decision_id("app-2@v1", item.item_id))
    assert not done.closed_with(item.decision.decision_id)


# -- objections ---------------------------------------------------------------------------


def test_objections_only_during_the_period_and_by_firms():
    period = notice.notice_period(D(2025, 1, 24), 5)
    ok = notice.lodge("n/l", notice.NOTICED, period, D(2025, 2, 6), "PORTAL", "portal-1", "金额有误", 1)
    assert ok.objection_id == "n/l/objection-1" and ok.status == notice.OBJECTION_OPEN
    with pytest.raises(review.FailedPrecondition, match="no objection can be lodged on 2025-02-07"):
        notice.lodge("n/l", notice.NOTICED, period, D(2025, 2, 7), "PORTAL", "p", "x", 1)
    with pytest.raises(review.PermissionDenied, match="PORTAL or ENTERPRISE"):
        notice.lodge("n/l", notice.NOTICED, period, D(2025, 1, 27), "REVIEWER", "r", "x", 1)
    with pytest.raises(review.InvalidArgument, match="reason"):
        notice.lodge("n/l", notice.NOTICED, period, D(2025, 1, 27), "ENTERPRISE", "e", " ", 1)
    with pytest.raises(review.FailedPrecondition, match="WITHDRAWN"):
        notice.lodge("n/l", notice.WITHDRAWN, period, D(2025, 1, 27), "ENTERPRISE", "e", "x", 1)


def test_resolution_and_the_line_state():
    period = notice.notice_period(D(2025, 1, 24), 5)
    o = notice.lodge("n/l", notice.NOTICED, period, D(2025, 1, 27), "PORTAL", "p", "x", 1)
    assert notice.line_after(notice.NOTICED, [o]) == notice.HELD
    assert not notice.becomes_payable(notice.HELD, period, D(2025, 2, 7))
    dismissed = notice.resolve(o, notice.DISMISSED, "查无实据", "rev", D(2025, 2, 10))
    assert notice.line_after(notice.HELD, [dismissed]) == notice.NOTICED
    assert notice.becomes_payable(notice.NOTICED, period, D(2025, 2, 10))
    assert not notice.becomes_payable(notice.NOTICED, period, D(2025, 2, 6))
    upheld = notice.resolve(o, notice.UPHELD, "重复申报", "rev", D(2025, 2, 10))
    assert notice.line_after(notice.HELD, [upheld]) == notice.WITHDRAWN
    with pytest.raises(review.FailedPrecondition, match="already resolved"):
        notice.resolve(upheld, notice.DISMISSED, "x", "rev", D(2025, 2, 10))
    with pytest.raises(review.InvalidArgument, match="resolution"):
        notice.resolve(o, "MAYBE", "x", "rev", D(2025, 2, 10))


def test_the_second_reviewer_may_send_a_first_approval_back():
    item = review.claim(review.new_item(decision(NEEDS_REVIEW, clause="13"), D(2025, 6, 2)), "alice")
    proposed = review.decide(item, "alice", review.APPROVED, WF, AT, amount_fen=900_000, basis="x")
    with pytest.raises(review.PermissionDenied, match="four-eyes"):
        review.send_back(proposed, "alice", "自己退回")
    with pytest.raises(review.InvalidArgument, match="reasons"):
        review.send_back(proposed, "bob", " ")
    back = review.send_back(proposed, "bob", "培训费用应扣除差旅费")
    assert (back.status, back.assignee, back.amount_fen, back.first_reviewer) == (review.CLAIMED, "alice", 0, "")
    assert back.returns == ("培训费用应扣除差旅费",) and back.decision_round == 2
    with pytest.raises(review.FailedPrecondition, match="awaits no second approval"):
        review.send_back(back, "bob", "again")
    again = review.decide(back, "alice", review.APPROVED, WF, AT, amount_fen=700_000, basis="扣除差旅费")
    done = review.second_approve(again, "bob", AT)
    assert review.reviewed_decision(done, WF).max_award_fen == 700_000
