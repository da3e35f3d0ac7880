"""The messages review writes into its outbox, pure: ReviewEvent on
subsidy.reviews.v1, NoticeEvent on subsidy.notices.v1, reviewed decisions on
subsidy.decisions.v1; each keyed by the firm's credit code, with CloudEvents
headers and a derived event id (a replay writes the same id, which the outbox
enqueues once)."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from subsidy.contracts import cloudevents, codec, topics
from subsidy.core.domain import Decision
from subsidy.platform.outbox import OutboxMessage
from subsidy.services.review.model import SOURCE
from subsidy.v1 import notice_pb2, review_pb2

TYPE_REVIEW = "cn.gov.songjiang.subsidy.review.{kind}.v1"
TYPE_NOTICE = "cn.gov.songjiang.subsidy.notice.{kind}.v1"


def derived_trace_id(seed: str) -> str:
    """A trace id for steps no incoming record started (a notice, the scheduler): stable across replays."""
    return hashlib.sha256(seed.encode()).hexdigest()[:32]


def _message(
    topic: str, event_id: str, kind: str, credit_code: str, value: bytes, trace_id: str, now: dt.datetime
) -> OutboxMessage:
    return OutboxMessage(
        topic=topic,
        key=credit_code.encode(),
        value=value,
        headers=tuple(cloudevents.headers(event_id, kind, SOURCE, trace_id, time=now)),
        event_id=event_id,
    )


def review_event(
    event_id: str, field: str, body: Any, credit_code: str, trace_id: str, now: dt.datetime
) -> OutboxMessage:
    event = review_pb2.ReviewEvent(event_id=event_id, **{field: body})
    kind = TYPE_REVIEW.format(kind=field.replace("_", "."))
    return _message(topics.REVIEWS.name, event_id, kind, credit_code, event.SerializeToString(), trace_id, now)


def notice_event(
    event_id: str, field: str, body: Any, credit_code: str, trace_id: str, now: dt.datetime
) -> OutboxMessage:
    event = notice_pb2.NoticeEvent(event_id=event_id, **{field: body})
    kind = TYPE_NOTICE.format(kind=field.replace("_", "."))
    return _message(topics.NOTICES.name, event_id, kind, credit_code, event.SerializeToString(), trace_id, now)


def decision_message(decision: Decision, trace_id: str, now: dt.datetime) -> OutboxMessage:
    """A reviewed decision for subsidy.decisions.v1, like eligibility's (event id: the decision id)."""
    value = codec.decision_to_proto(decision).SerializeToString()
    return _message(
        topics.DECISIONS.name,
        decision.decision_id,
        cloudevents.TYPE_DECISION_MADE,
        decision.credit_code,
        value,
        trace_id,
        now,
    )
