"""Review and the public notice (issue 12) in notify: which records tell a
firm something, that each firm on a notice list reads only its own lines,
that reviewers' names never reach a firm, that a replay sends nothing twice,
and that a record no message can come from is rejected naming the field."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from subsidy.contracts import topics
from subsidy.platform.consumer import RecordRejected
from subsidy.services.notify import handlers
from subsidy.services.notify.adapters.kafka import NotifyHandler, notify_consumer
from subsidy.services.notify.model import InvalidEvent
from subsidy.v1 import notice_pb2, payout_pb2

sys.path.insert(0, str(Path(__file__).parent))
from notify_fakes import (
    FIRM,
    OTHER_FIRM,
    TITLES,
    FakeChannel,
    FakeFirms,
    FakeLog,
    firm_record,
    grant_payable,
    held,
    notice_published,
    objection_resolved,
    reviewed,
)


def record(topic, message, offset=0):
    return SimpleNamespace(
        topic=topic.name, value=message.SerializeToString(), key=b"", partition=0, offset=offset, headers=[]
    )


def setup(*records):
    email, hook = FakeChannel("email", "email"), FakeChannel("webhook", "webhook_url")
    other = dataclasses.replace(
        firm_record(OTHER_FIRM),
        firm=dataclasses.replace(firm_record().firm, credit_code=OTHER_FIRM, name="上海别家科技有限公司"),
    )
    deps = handlers.Deps(
        firms=FakeFirms(firm_record(), other),
        log=FakeLog(),
        channels=[email, hook],
        titles=TITLES,
        attempts=1,
        sleep=lambda s: None,
    )
    return NotifyHandler(deps), email, hook


def test_notify_reads_the_notice_topic_and_dead_letters_to_its_own_dlq():
    loop = notify_consumer(
        handlers.Deps(firms=FakeFirms(), log=FakeLog(), channels=[], titles={}), "unused", producer_factory=lambda: None
    )
    assert topics.NOTICES.name in loop.topics and loop.dlq_topic == topics.NOTIFICATIONS_DLQ.name


def test_each_firm_on_a_notice_list_is_told_of_its_own_lines_only():
    handle, email, hook = setup()
    assert handle(record(topics.NOTICES, notice_published())) == "handled"
    by_firm = {n.credit_code: n for n, _ in email.delivered}
    assert set(by_firm) == {FIRM, OTHER_FIRM}
    mine, theirs = by_firm[FIRM], by_firm[OTHER_FIRM]
    assert "SJ-2025-0001" in mine.body and "SJ-2025-0011" in mine.body and "SJ-OTHER-1" not in mine.body
    assert "上海别家科技有限公司" not in mine.body
    assert "SJ-OTHER-1" in theirs.body and "SJ-2025-0001" not in theirs.body
    assert mine.event_id == f"published:N-2025-007/{FIRM}"
    [(data_mine, _)] = [(n.data, a) for n, a in hook.delivered if n.credit_code == FIRM]
    assert [line["application_id"] for line in data_mine["lines"]] == ["SJ-2025-0001", "SJ-2025-0011"]
    assert all(line["credit_code"] == FIRM for line in data_mine["lines"])
    assert data_mine["lines"][0]["amount_fen"] == 296296296
    assert "published_by" not in data_mine
    # Replayed: nothing is sent twice, per firm and channel.
    assert handle(record(topics.NOTICES, notice_published(), 1)) == "handled"
    assert len(email.delivered) == 2 and len(hook.delivered) == 2


def test_reviewers_are_not_told_to_the_firm():
    handle, email, hook = setup()
    handle(record(topics.DECISIONS, reviewed()))
    handle(record(topics.NOTICES, objection_resolved("UPHELD")))
    for notification, _ in email.delivered + hook.delivered:
        text = notification.body + notification.sms + repr(notification.data)
        assert "reviewer-li" not in text and "reviewer-wang" not in text
    [(approved, _)] = [(n, a) for n, a in hook.delivered if n.kind == "review_decided"]
    assert approved.data["review"]["basis"] == "按人社局核定标准的50%计算"
    assert "1,200,000元" in approved.body


def test_under_review_review_result_objection_outcome_and_payable_are_their_own_kinds():
    handle, email, _ = setup()
    for i, (topic, message) in enumerate(
        [
            (topics.DECISIONS, held()),
            (topics.DECISIONS, reviewed("REJECTED")),
            (topics.NOTICES, objection_resolved()),
            (topics.PAYOUTS, grant_payable()),
        ]
    ):
        handle(record(topic, message, i))
    assert [n.kind for n, _ in email.delivered] == [
        "under_review",
        "review_decided",
        "objection_resolved",
        "grant_payable",
    ]
    assert "已转人工审核" in email.delivered[0][0].subject
    assert "审核未通过" in email.delivered[1][0].subject


@pytest.mark.parametrize(
    "topic, message",
    [
        (
            topics.NOTICES,
            notice_pb2.NoticeEvent(
                event_id="objection:O-1",
                objection_lodged=notice_pb2.ObjectionLodged(objection_id="O-1", credit_code=FIRM),
            ),
        ),
        (
            topics.NOTICES,
            notice_pb2.NoticeEvent(
                event_id="payable:D-1",
                line_payable=notice_pb2.LinePayable(decision_id="D-1", credit_code=FIRM, payable_on="2025-02-07"),
            ),
        ),
        (
            topics.NOTICES,
            notice_pb2.NoticeEvent(
                event_id="withdrawn:D-1", line_withdrawn=notice_pb2.LineWithdrawn(decision_id="D-1", credit_code=FIRM)
            ),
        ),
        (
            topics.PAYOUTS,
            payout_pb2.PayoutEvent(
                event_id="withdrawn:D-1",
                grant_withdrawn=payout_pb2.GrantWithdrawn(application_id="A-1", decision_id="D-1", credit_code=FIRM),
            ),
        ),
    ],
)
def test_what_another_event_tells_better_is_skipped_and_nothing_is_sent(topic, message):
    handle, email, hook = setup()
    assert handle(record(topic, message)) == "skipped"
    assert email.calls == [] and hook.calls == []


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda e: e.ClearField("event_id"), "^event_id: is required$"),
        (lambda e: e.ClearField("notice_published"), "^event: none of "),
        (
            lambda e: e.notice_published.lines[1].ClearField("credit_code"),
            r"^notice_published.lines\[1\].credit_code: is required$",
        ),
        (
            lambda e: setattr(e.notice_published.lines[0], "amount_fen", -1),
            r"^notice_published.lines\[0\].amount_fen: must not be negative$",
        ),
        (
            lambda e: setattr(e.notice_published, "period_last_day", "2025-02-30"),
            "^notice_published.period_last_day: not a real date",
        ),
    ],
)
def test_a_notice_no_message_can_come_from_is_rejected_naming_the_field(mutate, message):
    event = notice_published()
    mutate(event)
    with pytest.raises(InvalidEvent, match=message):
        handlers.parse_notice_event(event.SerializeToString())


def test_a_bad_resolution_or_garbage_is_dead_lettered_and_nothing_sent():
    handle, email, _ = setup()
    bad = objection_resolved()
    bad.objection_resolved.resolution = "MAYBE"
    with pytest.raises(RecordRejected, match="objection_resolved.resolution: UPHELD or DISMISSED, got 'MAYBE'"):
        handle(record(topics.NOTICES, bad))
    with pytest.raises(RecordRejected, match="not a subsidy.v1.NoticeEvent protobuf"):
        handle(
            SimpleNamespace(topic=topics.NOTICES.name, value=b"\xff\xff", key=b"", partition=0, offset=1, headers=[])
        )
    assert email.calls == []


def test_a_reserved_grant_waits_for_its_notice_but_a_grant_of_0_keeps_the_old_text():
    from notify_fakes import reserved

    handle, email, _ = setup()
    handle(record(topics.PAYOUTS, reserved(app="SJ-R-1")))
    handle(record(topics.PAYOUTS, reserved(app="SJ-R-0", granted=0), 1))
    waiting, nothing = (n for n, _ in email.delivered)
    assert "（待公示）" in waiting.subject and "公示期满无异议后方可排期拨付" in waiting.body
    assert "待公示" not in nothing.subject and "核定资助金额：0元" in nothing.body


def test_a_notice_record_of_one_firm_as_the_review_service_publishes_it_is_told_under_its_own_id():
    event = notice_published()
    del event.notice_published.lines[2]  # this firm's two lines only
    event.event_id = f"published:N-2025-007:{FIRM}"
    handle, email, _ = setup()
    assert handle(record(topics.NOTICES, event)) == "handled"
    [(told, _)] = email.delivered
    assert (told.event_id, told.credit_code) == (f"published:N-2025-007:{FIRM}", FIRM)


# -- a reviewer asks the firm for a document (subsidy.reviews.v1) ---------------------


def test_notify_reads_the_review_topic():
    loop = notify_consumer(
        handlers.Deps(firms=FakeFirms(), log=FakeLog(), channels=[], titles={}), "unused", producer_factory=lambda: None
    )
    assert topics.REVIEWS.name in loop.topics


def test_the_firm_is_told_what_is_missing_once_and_never_who_asked():
    from notify_fakes import information_requested

    handle, email, hook = setup()
    message = record(topics.REVIEWS, information_requested())
    assert handle(message) == "handled"
    assert handle(message) == "handled"  # a replay
    assert len(email.calls) == 1 and len(hook.calls) == 1
    sent = email.calls[0][0]
    assert "需补充材料" in sent.subject and "请提供融资服务合同及付款凭证" in sent.body
    assert "第1次补充要求" in sent.body
    assert "reviewer-zhang" not in sent.body + sent.subject + sent.sms
    assert "reviewer-zhang" not in repr(hook.calls[0])


@pytest.mark.parametrize(
    "kind",
    ["review_requested", "review_decided", "second_approval_given", "information_answered"],
)
def test_the_other_review_steps_are_told_by_other_events_and_skipped(kind):
    from subsidy.v1 import review_pb2

    handle, email, hook = setup()
    event = review_pb2.ReviewEvent(event_id=f"{kind}:x")
    getattr(event, kind).SetInParent()
    assert handle(record(topics.REVIEWS, event)) == "skipped"
    assert email.calls == [] and hook.calls == []


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda e: e.ClearField("event_id"), "^event_id: is required$"),
        (lambda e: e.ClearField("information_requested"), "^event: none of "),
        (lambda e: e.information_requested.ClearField("missing"), "^information_requested.missing: is required$"),
        (lambda e: e.information_requested.ClearField("credit_code"), "credit_code: is required$"),
        (
            lambda e: setattr(e.information_requested, "request_number", 0),
            "^information_requested.request_number: must be 1 or more, got 0$",
        ),
    ],
)
def test_a_review_event_no_message_can_come_from_is_rejected_naming_the_field(mutate, message):
    from notify_fakes import information_requested

    event = information_requested()
    mutate(event)
    with pytest.raises(InvalidEvent, match=message):
        handlers.parse_review_event(event.SerializeToString())
    with pytest.raises(InvalidEvent, match="not a subsidy.v1.ReviewEvent protobuf"):
        handlers.parse_review_event(b"\xff\xff")
