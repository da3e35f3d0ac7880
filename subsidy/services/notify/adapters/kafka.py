"""The notify consumer: ``subsidy.decisions.v1``, ``subsidy.payouts.v1``,
``subsidy.notices.v1``, ``subsidy.reviews.v1`` (requests for information)
and ``subsidy.proposals.v1`` (免申即享 proposals made and expired)
-> notifications, group ``subsidy-notify``
(subsidy.platform.consumer.KafkaRecordLoop, kafka-python in a thread).

Per record: parse (undecodable -> dead letter), notify every channel (the
log is written after each successful send; an event no message can be built
from -> dead letter); offsets are committed once per
poll. A channel that gives up after its retries sends the event to
``subsidy.notifications.v1.dlq``; the partition moves on. When the database,
the registry or the DLQ producer fails, every partition of the batch is
rewound to its first unfinished record and retried with backoff (a replay is
harmless: the log skips what was sent).
"""

from __future__ import annotations

import logging
from typing import Any

from subsidy.contracts import cloudevents, topics
from subsidy.platform import logs
from subsidy.platform.consumer import KafkaRecordLoop, RecordRejected
from subsidy.services.notify import handlers
from subsidy.services.notify.model import DeliveryFailed, Event, Interrupted, InvalidEvent

log = logging.getLogger("subsidy.services.notify.adapters.kafka")

GROUP_ID = "subsidy-notify"
CONSUMER = "notify"


class NotifyHandler:
    """One consumed record -> its notifications."""

    def __init__(self, deps: handlers.Deps):
        self.deps = deps

    def __call__(self, record: Any) -> str:
        trace_id = cloudevents.trace_id_of(record.headers)
        try:
            found = self.parse(record, trace_id)
        except InvalidEvent as exc:
            raise RecordRejected(str(exc)) from None
        if not found:
            log.info(
                "event skipped: nothing to tell a firm",
                extra=logs.fields(topic=record.topic, partition=record.partition, offset=record.offset),
            )
            return "skipped"
        problems: list[str] = []
        unknown = False
        # A notice list concerns several firms: each is told (once per channel)
        # even when another's delivery fails; a replay skips who was told.
        for event in found:
            try:
                outcome = handlers.notify(self.deps, event)
            except InvalidEvent as exc:  # no message can be built from it: permanent
                problems.append(str(exc))
                continue
            except DeliveryFailed as exc:
                problems.append(f"{handlers.one_line(event.event_id)}: {exc}")
                continue
            unknown = unknown or outcome.unknown_firm
            log.info(
                "event handled",
                extra=logs.fields(
                    event_id=event.event_id,
                    kind=event.kind,
                    credit_code=event.credit_code,
                    sent=outcome.sent,
                    replayed=outcome.replayed,
                    partition=record.partition,
                    offset=record.offset,
                ),
            )
        if problems:
            raise RecordRejected("; ".join(problems))
        return "unknown_firm" if unknown else "handled"

    @staticmethod
    def parse(record: Any, trace_id: str | None) -> list[Event]:
        """The record's events by its topic (none: nothing to tell a firm)."""
        if record.topic == topics.DECISIONS.name:
            return [handlers.parse_decision(record.value, trace_id)]
        if record.topic == topics.NOTICES.name:
            return handlers.parse_notice_event(record.value, trace_id)
        if record.topic == topics.REVIEWS.name:
            return handlers.parse_review_event(record.value, trace_id)
        if record.topic == topics.PROPOSALS.name:
            return handlers.parse_proposal_event(record.value, trace_id)
        event = handlers.parse_payout_event(record.value, trace_id)
        return [] if event is None else [event]


def notify_consumer(
    deps: handlers.Deps,
    bootstrap: str,
    *,
    group_id: str = GROUP_ID,
    topics_: tuple[str, ...] = (
        topics.DECISIONS.name,
        topics.PAYOUTS.name,
        topics.NOTICES.name,
        topics.REVIEWS.name,
        topics.PROPOSALS.name,
    ),
    dlq_topic: str = topics.NOTIFICATIONS_DLQ.name,
    **kwargs: Any,
) -> KafkaRecordLoop:
    loop = KafkaRecordLoop(
        CONSUMER,
        NotifyHandler(deps),
        bootstrap,
        topics=topics_,
        group_id=group_id,
        dlq_topic=dlq_topic,
        source=handlers.SOURCE,
        client_id="subsidy-notify",
        max_poll_records=50,
        # A record may wait out its retries (attempts x backoff) before the
        # next poll: keep the group membership meanwhile.
        consumer_config={"max_poll_interval_ms": 600_000},
        **kwargs,
    )

    def sleep_unless_stopping(seconds: float) -> None:
        if loop.wait(seconds):
            raise Interrupted("the service is stopping")

    deps.sleep = sleep_unless_stopping
    return loop
