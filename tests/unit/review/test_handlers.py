"""Review's use cases (handlers.py) over the in-memory unit of work
(fakes.py): what each writes and announces, and that every refusal — the
same subject approving twice, an amount above the ceiling or the limit, a
step on a closed item, an objection after the period — changes nothing."""

from __future__ import annotations

import datetime as dt

import pytest

from subsidy.contracts import cloudevents, codec, topics
from subsidy.core.domain import ELIGIBLE, NEEDS_REVIEW, Decision, Entitlement, LimitKind, Reason
from subsidy.core.workflow import review
from subsidy.core.workflow.settings import load_workflow
from subsidy.services.review import handlers
from subsidy.services.review.model import (
    Actor,
    FailedPrecondition,
    GrantRow,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Rejected,
)
from subsidy.v1 import application_pb2, decision_pb2, notice_pb2, payout_pb2, review_pb2

from .fakes import FakeUnitOfWork

WF = load_workflow()
FIRM = "91310117313Q6C3D6G"
OTHER = "913101171K0HG2QW66"
TODAY = dt.date(2025, 1, 24)  # a Friday before the Spring Festival
NOW = dt.datetime(2025, 1, 24, 2, tzinfo=dt.UTC)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
ALICE = Actor("alice", "REVIEWER")
BOB = Actor("bob", "REVIEWER")


def decision(app_id="APP-1", outcome=NEEDS_REVIEW, clause="13", max_award=0, firm=FIRM) -> Decision:
    lines = (Entitlement(clause, LimitKind.CUMULATIVE_CAP, max_award, 1_000_000_000),) if outcome == ELIGIBLE else ()
    d = Decision(
        decision_id=f"{app_id}@v1",
        application_id=app_id,
        credit_code=firm,
        clause=clause,
        outcome=outcome,
        max_award_fen=max_award,
        reasons=(Reason("R", clause.split(".")[0], "依据"),),
        policy_version="v1",
        decision_year=2025,
        submitted_on=dt.date(2025, 1, 6),
        entitlements=lines,
        tranche_shares_percent=(40, 30, 30) if outcome == ELIGIBLE else (),
    )
    return review.stamp(d, WF.on(d.submitted_on))


def queued(uow, d=None):
    d = d or decision()
    assert handlers.queue_decision(uow, d, WF, TODAY, NOW, TRACE) == "queued"
    return review.item_id_for(d.decision_id)


def events_of(uow, topic):
    return [m for m in uow.outbox.rows.values() if m.topic == topic]


def decide(uow, item_id, actor=ALICE, **kw):
    return handlers.decide(uow, item_id, actor, WF, TODAY, NOW, **kw)


def refused(uow, error, call):
    before = uow.snapshot()
    commits = uow.commits
    with pytest.raises(error) as raised:
        call()
    assert uow.snapshot() == before and uow.commits == commits, "a refusal changed something"
    return str(raised.value)


# -- the queue -----------------------------------------------------------------------------


def test_a_decision_needing_review_is_queued_once_with_its_event():
    uow = FakeUnitOfWork()
    item_id = queued(uow)
    assert handlers.queue_decision(uow, decision(), WF, TODAY, NOW, TRACE) == "replayed"
    (event,) = events_of(uow, topics.REVIEWS.name)
    assert event.event_id == f"requested:{item_id}" and event.key == FIRM.encode()
    body = review_pb2.ReviewEvent.FromString(event.value)
    assert body.review_requested.review_reasons == [review.NEEDS_REVIEW_OUTCOME]
    assert cloudevents.trace_id_of(event.headers) == TRACE
    assert [e.action for e in uow.audit.rows] == ["QUEUED"]


def test_decisions_without_review_and_reviewed_decisions_are_ignored():
    uow = FakeUnitOfWork()
    plain = decision(outcome=ELIGIBLE, clause="1.purchase", max_award=1_000)
    assert not plain.review_required
    assert handlers.queue_decision(uow, plain, WF, TODAY, NOW, TRACE) == "ignored"
    assert uow.items.rows == {} and uow.outbox.rows == {}


def test_undecodable_records_are_rejected():
    uow = FakeUnitOfWork()
    for bad in (b"", None, b"\xff\xfe not protobuf"):
        with pytest.raises(Rejected):
            handlers.parse_decision(bad)
        with pytest.raises(Rejected):
            handlers.record_payout_event(uow, bad, NOW)


def test_a_payout_event_review_does_not_use_is_passed_over_unjudged_and_a_grant_is_checked():
    """Review keeps GrantRecorded (it goes on a public notice) and passes over
    the other kinds without judging them: a TrancheDue the contract refuses
    is dead-lettered by its readers (notify, intake), not by review."""
    uow = FakeUnitOfWork()
    hostile = "HX-1\r\nBcc: x@evil.example"
    due = payout_pb2.PayoutEvent(
        event_id=f"due:{hostile}",
        tranche_due=payout_pb2.TrancheDue(tranche_id=f"{hostile}/tranche-1", credit_code=FIRM, application_id=hostile),
    )
    assert handlers.record_payout_event(uow, due.SerializeToString(), NOW) == "ignored"
    recorded = payout_pb2.PayoutEvent(
        event_id="grant:APP-1",
        grant_recorded=payout_pb2.GrantRecorded(decision_id="APP-1@v1", credit_code=FIRM, clause="13", granted_fen=1),
    )
    with pytest.raises(Rejected, match=r"^grant_recorded\.application_id: is required$"):
        handlers.record_payout_event(uow, recorded.SerializeToString(), NOW)
    assert uow.grants.of_firm(FIRM) == []


# -- review steps --------------------------------------------------------------------------


def test_manual_award_with_four_eyes_publishes_the_reviewed_decision():
    uow = FakeUnitOfWork()
    item_id = queued(uow)
    handlers.claim(uow, item_id, ALICE, NOW)
    first = decide(
        uow,
        item_id,
        result="APPROVED",
        amount_fen=500_000,
        basis="区人社局补贴比例30%",
        reviewer_amounts={"training_cost_fen": 1_666_667},
    )
    assert first.status == review.AWAITING_SECOND
    assert events_of(uow, topics.DECISIONS.name) == []
    message = refused(uow, PermissionDenied, lambda: handlers.second_approve(uow, item_id, ALICE, WF, TODAY, NOW))
    assert "four-eyes" in message
    done = handlers.second_approve(uow, item_id, BOB, WF, TODAY, NOW)
    assert done.status == review.APPROVED
    (published,) = events_of(uow, topics.DECISIONS.name)
    reviewed = codec.decision_from_proto(decision_pb2.Decision.FromString(published.value))
    assert published.event_id == reviewed.decision_id == f"APP-1@v1/review:{item_id}"
    assert published.key == FIRM.encode()
    assert cloudevents.as_dict(published.headers)["ce_type"] == cloudevents.TYPE_DECISION_MADE
    assert (reviewed.outcome, reviewed.max_award_fen, reviewed.review_required) == (ELIGIBLE, 500_000, False)
    assert reviewed.review is not None
    assert reviewed.review.reviewers == ("alice", "bob") and reviewed.review.basis == "区人社局补贴比例30%"
    kinds = [
        review_pb2.ReviewEvent.FromString(m.value).WhichOneof("event") for m in events_of(uow, topics.REVIEWS.name)
    ]
    assert kinds == ["review_requested", "review_decided", "second_approval_given"]
    assert [e.action for e in uow.audit.rows] == ["QUEUED", "CLAIMED", "DECIDED_APPROVED", "SECOND_APPROVED"]
    assert all(e.at and e.subject for e in uow.audit.rows)


def test_amounts_above_the_ceiling_or_the_limit_are_refused_naming_the_field():
    uow = FakeUnitOfWork()
    manual = queued(uow)
    computed = queued(uow, decision("APP-2", ELIGIBLE, "1.purchase", 150_000_000))
    for item_id in (manual, computed):
        handlers.claim(uow, item_id, ALICE, NOW)
    message = refused(
        uow, InvalidArgument, lambda: decide(uow, manual, result="APPROVED", amount_fen=100_000_001, basis="x")
    )
    assert message.startswith("amount_fen:") and "manual_award_limit_fen" in message
    message = refused(
        uow, InvalidArgument, lambda: decide(uow, computed, result="APPROVED", amount_fen=150_000_001, basis="x")
    )
    assert message.startswith("amount_fen:") and "max_award_fen" in message
    refused(uow, InvalidArgument, lambda: decide(uow, manual, result="APPROVED", amount_fen=5, basis=""))
    refused(
        uow,
        InvalidArgument,
        lambda: decide(uow, manual, result="APPROVED", amount_fen=5, basis="x", reviewer_amounts={"rent": 1}),
    )


def test_a_lowered_computed_award_is_a_manual_amount_and_needs_a_second_reviewer_even_below_the_threshold():
    uow = FakeUnitOfWork()
    item_id = queued(uow, decision("APP-2", ELIGIBLE, "1.purchase", 150_000_000))
    handlers.claim(uow, item_id, ALICE, NOW)
    item = decide(uow, item_id, result="APPROVED", amount_fen=90_000_000, basis="核减至可支持部分")
    assert item.status == review.AWAITING_SECOND
    assert events_of(uow, topics.DECISIONS.name) == [], "nothing published on one person's word"
    handlers.second_approve(uow, item_id, BOB, WF, TODAY, NOW)
    (published,) = events_of(uow, topics.DECISIONS.name)
    reviewed = codec.decision_from_proto(decision_pb2.Decision.FromString(published.value))
    assert reviewed.max_award_fen == 90_000_000 and sum(e.amount_fen for e in reviewed.entitlements) == 90_000_000
    assert reviewed.review.reviewers == ("alice", "bob")


def test_steps_on_a_closed_item_are_refused_and_change_nothing():
    uow = FakeUnitOfWork()
    item_id = queued(uow)
    handlers.claim(uow, item_id, ALICE, NOW)
    decide(uow, item_id, result="REJECTED", reasons="培训对象不属于中层人员和专业技术人才")
    (published,) = events_of(uow, topics.DECISIONS.name)
    assert codec.decision_from_proto(decision_pb2.Decision.FromString(published.value)).outcome == "INELIGIBLE"
    for step in (
        lambda: handlers.claim(uow, item_id, BOB, NOW),
        lambda: decide(uow, item_id, result="APPROVED", amount_fen=1, basis="x"),
        lambda: handlers.second_approve(uow, item_id, BOB, WF, TODAY, NOW),
    ):
        assert "closed" in refused(uow, FailedPrecondition, step)


def test_roles_and_assignment():
    uow = FakeUnitOfWork()
    item_id = queued(uow)
    refused(uow, PermissionDenied, lambda: handlers.claim(uow, item_id, Actor("olga", "OPERATOR"), NOW))
    refused(uow, PermissionDenied, lambda: handlers.claim(uow, item_id, Actor("", "REVIEWER"), NOW))
    handlers.claim(uow, item_id, ALICE, NOW)
    refused(uow, FailedPrecondition, lambda: handlers.claim(uow, item_id, BOB, NOW))
    refused(uow, PermissionDenied, lambda: decide(uow, item_id, BOB, result="REJECTED", reasons="x"))
    refused(uow, NotFound, lambda: handlers.claim(uow, "rv-nothing", ALICE, NOW))
    refused(uow, InvalidArgument, lambda: handlers.claim(uow, "", ALICE, NOW))


def test_more_information_is_answered_once_by_the_firm():
    uow = FakeUnitOfWork()
    item_id = queued(uow)
    handlers.claim(uow, item_id, ALICE, NOW)
    decide(uow, item_id, result="MORE_INFO_REQUESTED", missing="培训合同与发票")
    firm = Actor("firm-user", "ENTERPRISE", FIRM)
    refused(
        uow,
        NotFound,
        lambda: handlers.answer_information(uow, item_id, Actor("x", "ENTERPRISE", OTHER), OTHER, 1, "a", NOW),
    )
    refused(uow, PermissionDenied, lambda: handlers.answer_information(uow, item_id, ALICE, FIRM, 1, "a", NOW))
    refused(uow, InvalidArgument, lambda: handlers.answer_information(uow, item_id, firm, FIRM, 1, " ", NOW))
    item = handlers.answer_information(uow, item_id, firm, FIRM, 1, "已上传合同与发票", NOW)
    assert item.status == review.CLAIMED
    refused(uow, FailedPrecondition, lambda: handlers.answer_information(uow, item_id, firm, FIRM, 1, "again", NOW))
    ids = [m.event_id for m in events_of(uow, topics.REVIEWS.name)]
    assert ids[1:] == [f"info-requested:{item_id}:1", f"info-answered:{item_id}:1"]


def test_the_queue_filters_and_pages():
    uow = FakeUnitOfWork()
    manual = [queued(uow, decision(f"APP-M{i}")) for i in range(3)]
    big = queued(uow, decision("APP-B", ELIGIBLE, "1.purchase", 200_000_000))
    handlers.claim(uow, manual[0], ALICE, NOW)

    def ids(**kw):
        args = dict(clause="", reason="", statuses=[], assignee="", overdue=False, size=0, token="")
        args.update(kw)
        rows, token = handlers.list_queue(uow, handlers.queue_query(**args), kw.pop("today", TODAY))
        return [i.item_id for i, _ in rows], token

    assert set(ids()[0]) == {*manual, big}
    assert ids(clause="1.purchase")[0] == [big]
    assert ids(reason=review.ABOVE_FOUR_EYES_THRESHOLD)[0] == [big]
    assert ids(assignee="alice")[0] == [manual[0]]
    assert ids(statuses=["CLAIMED"])[0] == [manual[0]]
    first, token = ids(size=2)
    second, end = ids(size=2, token=token)
    assert len(first) == 2 and len(second) == 2 and not end and set(first + second) == {*manual, big}
    with pytest.raises(InvalidArgument, match="page_token"):
        ids(size=2, token=token, clause="13")
    with pytest.raises(InvalidArgument, match="statuses"):
        ids(statuses=["LOST"])
    with pytest.raises(InvalidArgument, match="page_size"):
        ids(size=201)
    # 20 working days from 2025-01-24 (Spring Festival in between): overdue only after the deadline.
    deadline = uow.items.rows[big][1]
    assert deadline == dt.date(2025, 2, 27)
    rows, _ = handlers.list_queue(uow, handlers.queue_query("", "", [], "", True, 0, ""), deadline)
    assert rows == []
    rows, _ = handlers.list_queue(
        uow, handlers.queue_query("", "", [], "", True, 0, ""), deadline + dt.timedelta(days=1)
    )
    assert len(rows) == 4


# -- the notice ----------------------------------------------------------------------------


def grant(uow, app_id, amount, firm=FIRM, clause="1.purchase", state=payout_pb2.GRANT_STATE_RESERVED):
    event = payout_pb2.PayoutEvent(
        event_id=f"grant:{app_id}",
        grant_recorded=payout_pb2.GrantRecorded(
            application_id=app_id,
            decision_id=f"{app_id}@v1",
            credit_code=firm,
            clause=clause,
            granted_fen=amount,
            decision_year=2025,
            state=state,
        ),
    )
    return handlers.record_payout_event(uow, event.SerializeToString(), NOW)


def application(uow, app_id, firm, name):
    app = application_pb2.Application(application_id=app_id, firm=application_pb2.Firm(credit_code=firm, name=name))
    handlers.record_application(uow, app.SerializeToString(), NOW)


def published(uow, amounts=((FIRM, 300_000), (OTHER, 0), (OTHER, 2_000_000))):
    for i, (firm, amount) in enumerate(amounts):
        application(uow, f"APP-{i}", firm, f"企业{i}")
        assert grant(uow, f"APP-{i}", amount, firm) == "recorded"
    assert grant(uow, "APP-0", 300_000) == "replayed"
    # Grants recorded before the notice gate (PAYABLE, or no state at all) are never listed.
    assert grant(uow, "OLD-PAYABLE", 9_000, FIRM, state=payout_pb2.GRANT_STATE_PAYABLE) == "recorded"
    assert grant(uow, "OLD-NONE", 9_000, FIRM, state=payout_pb2.GRANT_STATE_UNSPECIFIED) == "recorded"
    return handlers.publish_notice(uow, ALICE, WF, TODAY, NOW)


def notice_events(uow, kind):
    return [
        getattr(notice_pb2.NoticeEvent.FromString(m.value), kind)
        for m in events_of(uow, topics.NOTICES.name)
        if notice_pb2.NoticeEvent.FromString(m.value).WhichOneof("event") == kind
    ]


def test_publishing_lists_the_pool_once_with_the_period_in_working_days():
    uow = FakeUnitOfWork()
    refused(uow, FailedPrecondition, lambda: handlers.publish_notice(uow, ALICE, WF, TODAY, NOW))
    row, lines = published(uow)
    assert (row.first_day, row.last_day) == (dt.date(2025, 1, 24), dt.date(2025, 2, 6))
    # by credit code; the 0-fen grant is not on the list
    assert [(x.credit_code, x.amount_fen, x.firm_name) for x in lines] == [
        (OTHER, 2_000_000, "企业2"),
        (FIRM, 300_000, "企业0"),
    ]
    parts = notice_events(uow, "notice_published")
    assert sorted(p.lines[0].credit_code for p in parts) == sorted([FIRM, OTHER])
    assert all(p.period_last_day == "2025-02-06" for p in parts)
    refused(uow, FailedPrecondition, lambda: handlers.publish_notice(uow, ALICE, WF, TODAY, NOW))
    refused(uow, PermissionDenied, lambda: handlers.publish_notice(uow, Actor("o", "OPERATOR"), WF, TODAY, NOW))


def test_clean_lines_become_payable_the_day_after_the_period():
    uow = FakeUnitOfWork()
    _, lines = published(uow)
    assert handlers.close_notice_periods(uow, dt.date(2025, 2, 6), NOW) == []
    done = handlers.close_notice_periods(uow, dt.date(2025, 2, 7), NOW)
    assert {x.decision_id for x in done} == {x.decision_id for x in lines}
    assert handlers.close_notice_periods(uow, dt.date(2025, 2, 8), NOW) == []
    payable = notice_events(uow, "line_payable")
    assert {p.payable_on for p in payable} == {"2025-02-07"}
    ids = [m.event_id for m in events_of(uow, topics.NOTICES.name) if m.event_id.startswith("payable:")]
    assert sorted(ids) == sorted(f"payable:{x.decision_id}" for x in lines)


def test_an_objection_holds_its_line_and_a_dismissal_releases_it():
    uow = FakeUnitOfWork()
    _, lines = published(uow)
    line = lines[0]
    portal = Actor("portal", "PORTAL")
    objection = handlers.lodge_objection(
        uow, portal, line.line_id, "", "该企业培训未实际开展", dt.date(2025, 2, 5), NOW
    )
    assert uow.lines.get(line.line_id).status == "HELD"
    done = handlers.close_notice_periods(uow, dt.date(2025, 2, 7), NOW)
    assert [x.line_id for x in done] == [lines[1].line_id]  # the held line waits
    o, after = handlers.resolve_objection(
        uow, ALICE, objection.objection_id, "DISMISSED", "经核实培训已开展", dt.date(2025, 2, 10), NOW
    )
    assert (o.status, after.status, after.payable_on) == ("DISMISSED", "PAYABLE", "2025-02-10")  # period over: at once
    assert {p.decision_id for p in notice_events(uow, "line_payable")} == {line.decision_id, lines[1].decision_id}
    refused(
        uow,
        FailedPrecondition,
        lambda: handlers.resolve_objection(
            uow, ALICE, objection.objection_id, "UPHELD", "x", dt.date(2025, 2, 10), NOW
        ),
    )


def test_a_dismissal_during_the_period_leaves_the_line_waiting():
    uow = FakeUnitOfWork()
    _, lines = published(uow)
    o = handlers.lodge_objection(uow, Actor("f", "ENTERPRISE", OTHER), lines[0].line_id, OTHER, "存疑", TODAY, NOW)
    _, after = handlers.resolve_objection(uow, ALICE, o.objection_id, "DISMISSED", "无据", dt.date(2025, 1, 27), NOW)
    assert after.status == "NOTICED"
    assert notice_events(uow, "line_payable") == []
    assert len(handlers.close_notice_periods(uow, dt.date(2025, 2, 7), NOW)) == 2


def test_an_upheld_objection_withdraws_the_line():
    uow = FakeUnitOfWork()
    _, lines = published(uow)
    o = handlers.lodge_objection(uow, Actor("p", "PORTAL"), lines[0].line_id, "", "重复申报", TODAY, NOW)
    _, after = handlers.resolve_objection(
        uow, ALICE, o.objection_id, "UPHELD", "与2024年项目重复", dt.date(2025, 1, 28), NOW
    )
    assert after.status == "WITHDRAWN"
    (withdrawn,) = notice_events(uow, "line_withdrawn")
    assert (withdrawn.decision_id, withdrawn.reason) == (lines[0].decision_id, "与2024年项目重复")
    assert [x.line_id for x in handlers.close_notice_periods(uow, dt.date(2025, 2, 7), NOW)] == [lines[1].line_id]
    refused(
        uow,
        FailedPrecondition,
        lambda: handlers.lodge_objection(uow, Actor("p", "PORTAL"), lines[0].line_id, "", "x", TODAY, NOW),
    )


def test_objections_after_the_period_or_by_others_are_refused_and_change_nothing():
    uow = FakeUnitOfWork()
    _, lines = published(uow)
    message = refused(
        uow,
        FailedPrecondition,
        lambda: handlers.lodge_objection(
            uow, Actor("p", "PORTAL"), lines[0].line_id, "", "迟到", dt.date(2025, 2, 7), NOW
        ),
    )
    assert "2025-02-06" in message
    refused(uow, PermissionDenied, lambda: handlers.lodge_objection(uow, ALICE, lines[0].line_id, "", "x", TODAY, NOW))
    refused(uow, NotFound, lambda: handlers.lodge_objection(uow, Actor("p", "PORTAL"), "nope", "", "x", TODAY, NOW))
    refused(
        uow,
        InvalidArgument,
        lambda: handlers.lodge_objection(uow, Actor("p", "PORTAL"), lines[0].line_id, "", "", TODAY, NOW),
    )


def test_the_audit_trail_pages_and_needs_a_target():
    uow = FakeUnitOfWork()
    row, _ = published(uow)
    item_id = queued(uow)
    handlers.claim(uow, item_id, ALICE, NOW)
    entries, token = handlers.audit_trail(uow, item_id, 1, "")
    assert [e.action for e in entries] == ["QUEUED"] and token
    entries, token = handlers.audit_trail(uow, item_id, 1, token)
    assert [e.action for e in entries] == ["CLAIMED"]
    assert handlers.audit_trail(uow, row.notice_id, 0, "")[0][0].action == "NOTICE_PUBLISHED"
    with pytest.raises(InvalidArgument, match="target"):
        handlers.audit_trail(uow, "", 0, "")


def test_item_detail_has_the_application_and_the_firms_ledger():
    uow = FakeUnitOfWork()
    item_id = queued(uow)
    application(uow, "APP-1", FIRM, "云栈数据")
    grant(uow, "OLD-1", 1_000_000)
    item, deadline, app, ledger = handlers.item_detail(uow, item_id, WF)
    assert application_pb2.Application.FromString(app).firm.name == "云栈数据"
    assert [g.granted_fen for g in ledger] == [1_000_000] and deadline == dt.date(2025, 2, 27)
    assert isinstance(ledger[0], GrantRow)


def test_an_item_whose_deadline_the_calendar_cannot_count_is_queued_all_the_same():
    uow = FakeUnitOfWork()
    late = dt.date(2026, 12, 15)  # 20 working days later is in 2027, which chinesecalendar 1.11 does not know
    assert handlers.queue_decision(uow, decision("APP-2027"), WF, late, NOW, TRACE) == "queued"
    item_id = review.item_id_for(decision("APP-2027").decision_id)
    assert uow.items.rows[item_id][1] == handlers.NO_DEADLINE
    item, deadline, _, _ = handlers.item_detail(uow, item_id, WF)
    assert deadline == handlers.NO_DEADLINE
    rows, _ = handlers.list_queue(uow, handlers.queue_query("", "", [], "", True, 0, ""), dt.date(2027, 6, 1))
    assert rows == []  # never reported overdue on a guess
    assert handlers.claim(uow, item_id, ALICE, NOW).status == "CLAIMED"
    # Publishing a notice in such a year is refused with the reason, naming the year.
    grant(uow, "APP-2027", 1_000)
    with pytest.raises(Exception, match="working days of 2027 are not known"):
        handlers.publish_notice(uow, ALICE, WF, dt.date(2027, 1, 4), NOW)


def test_a_send_back_and_a_new_decision_are_each_announced_once():
    uow = FakeUnitOfWork()
    item_id = queued(uow)
    handlers.claim(uow, item_id, ALICE, NOW)
    decide(uow, item_id, result="APPROVED", amount_fen=900_000, basis="x")
    refused(uow, PermissionDenied, lambda: handlers.send_back(uow, item_id, ALICE, "mine", NOW))
    back = handlers.send_back(uow, item_id, BOB, "应扣除差旅费", NOW)
    assert back.status == "CLAIMED" and back.amount_fen == 0
    decide(uow, item_id, result="APPROVED", amount_fen=700_000, basis="扣除差旅费")
    handlers.second_approve(uow, item_id, BOB, WF, TODAY, NOW)
    ids = [m.event_id for m in events_of(uow, topics.REVIEWS.name)]
    assert ids == [f"requested:{item_id}", f"decided:{item_id}", f"decided:{item_id}:2", f"second:{item_id}"]
    (published,) = events_of(uow, topics.DECISIONS.name)
    assert codec.decision_from_proto(decision_pb2.Decision.FromString(published.value)).max_award_fen == 700_000
    actions = [e.action for e in uow.audit.rows]
    assert actions == ["QUEUED", "CLAIMED", "DECIDED_APPROVED", "SENT_BACK", "DECIDED_APPROVED", "SECOND_APPROVED"]
