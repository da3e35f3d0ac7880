"""Every record review writes to its outbox: on its topic, keyed by the
firm's credit code, CloudEvents headers whose ce_id is the derived event id,
ce_source review, ce_time the step's instant, and the value decodes as the
topic's message with the same event id."""

from __future__ import annotations

import datetime as dt

from subsidy.contracts import cloudevents, codec, topics
from subsidy.services.review import handlers
from subsidy.v1 import decision_pb2, notice_pb2, review_pb2

from . import test_handlers as h
from .fakes import FakeUnitOfWork


def test_every_outbox_record_is_a_well_formed_event():
    uow = FakeUnitOfWork()
    item_id = h.queued(uow)
    handlers.claim(uow, item_id, h.ALICE, h.NOW)
    h.decide(uow, item_id, result="MORE_INFO_REQUESTED", missing="发票")
    handlers.answer_information(uow, item_id, h.Actor("f", "ENTERPRISE", h.FIRM), h.FIRM, 1, "已补", h.NOW)
    h.decide(uow, item_id, result="APPROVED", amount_fen=10_000, basis="核定")
    handlers.second_approve(uow, item_id, h.BOB, h.WF, h.TODAY, h.NOW)
    _, lines = h.published(uow)
    o = handlers.lodge_objection(uow, h.Actor("p", "PORTAL"), lines[0].line_id, "", "疑", h.TODAY, h.NOW)
    handlers.resolve_objection(uow, h.ALICE, o.objection_id, "UPHELD", "属实", h.TODAY, h.NOW)
    handlers.close_notice_periods(uow, dt.date(2025, 2, 7), h.NOW)

    seen = set()
    for event_id, m in uow.outbox.rows.items():
        ce = cloudevents.as_dict(m.headers)
        assert ce["ce_id"] == event_id == m.event_id
        assert ce["ce_source"] == "/songjiang/subsidy/review" and ce["ce_specversion"] == "1.0"
        assert ce["ce_time"] == "2025-01-24T02:00:00.000Z"
        assert cloudevents.trace_id_of(m.headers)
        if m.topic == topics.REVIEWS.name:
            body = review_pb2.ReviewEvent.FromString(m.value)
            kind = body.WhichOneof("event")
            assert ce["ce_type"] == f"cn.gov.songjiang.subsidy.review.{kind.replace('_', '.')}.v1"
            assert getattr(body, kind).credit_code.encode() == m.key
        elif m.topic == topics.NOTICES.name:
            body = notice_pb2.NoticeEvent.FromString(m.value)
            kind = body.WhichOneof("event")
            assert ce["ce_type"] == f"cn.gov.songjiang.subsidy.notice.{kind.replace('_', '.')}.v1"
            codes = (
                {x.credit_code for x in body.notice_published.lines}
                if kind == "notice_published"
                else {getattr(body, kind).credit_code}
            )
            assert codes == {m.key.decode()}
        else:
            assert m.topic == topics.DECISIONS.name
            d = codec.decision_from_proto(decision_pb2.Decision.FromString(m.value))
            assert (d.decision_id, d.credit_code.encode()) == (event_id, m.key)
            assert ce["ce_type"] == cloudevents.TYPE_DECISION_MADE
            kind = "decision"
        if m.topic != topics.DECISIONS.name:
            assert body.event_id == event_id
        seen.add(kind)
    assert seen == {
        "review_requested",
        "information_requested",
        "information_answered",
        "review_decided",
        "second_approval_given",
        "decision",
        "notice_published",
        "objection_lodged",
        "objection_resolved",
        "line_withdrawn",
        "line_payable",
    }
