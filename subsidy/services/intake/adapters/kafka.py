"""The status projections: ``decision_projection`` consumes
``subsidy.decisions.v1`` and records each decision on its application (state
DECIDED, or UNDER_REVIEW for a decision that requires review; a reviewed
decision supersedes the computed one and is never replaced by it, whichever
arrives first); ``payout_projection`` consumes ``subsidy.payouts.v1`` and
folds the grant, its state and its tranches in (state RESERVED, PAYABLE,
WITHDRAWN, or RECORDED for a grant of 0), so GetApplication tells the whole
story (intake/payouts.py: the rules).

subsidy.platform.consumer.KafkaRecordLoop (kafka-python in a thread, like the relay):
the work per message is one blocking database transaction; offsets are
committed once per poll, after every record of it was applied. Idempotent:
a replayed decision (same decision id) changes nothing. A decision for an
application intake does not know is logged and counted. A message that is not a valid Decision goes to ``subsidy.decisions.v1.dlq`` as
a DeadLetter (and is counted); the partition keeps moving.
"""

from __future__ import annotations

import logging
from typing import Any

from subsidy.contracts import codec, events, topics
from subsidy.contracts.codec import BadInput
from subsidy.core import credit_code
from subsidy.platform import logs
from subsidy.platform.consumer import KafkaRecordLoop, RecordRejected
from subsidy.services.intake import handlers, metrics

log = logging.getLogger("subsidy.services.intake.adapters.kafka")

GROUP_ID = "subsidy-intake-projection"
CONSUMER = "intake-projection"


def parse_decision(value: bytes | None) -> Any:
    """A valid subsidy.v1.Decision, or RecordRejected saying what is wrong."""
    try:
        message = events.decision(value)
        codec.decision_from_proto(message)
    except (events.MalformedEvent, BadInput) as exc:
        raise RecordRejected(str(exc)) from None
    return message


class DecisionHandler:
    """subsidy.decisions.v1 -> the decision recorded on its application."""

    def __init__(self, deps: handlers.Deps):
        self.deps = deps

    def __call__(self, record: Any) -> str:
        decision = parse_decision(record.value)
        result = handlers.apply_decision(self.deps, decision.application_id, decision.decision_id, bytes(record.value))
        metrics.DECISIONS_APPLIED.labels(result).inc()
        where = logs.fields(
            application_id=decision.application_id,
            decision_id=decision.decision_id,
            outcome=decision.outcome,
            partition=record.partition,
            offset=record.offset,
        )
        if result == "unknown":
            log.warning("decision for an unknown application: skipped", extra=where)
        elif result == "superseded":
            log.info("decision superseded by the reviewed decision already shown: kept that one", extra=where)
        else:
            log.info(f"decision {result}", extra=where)
        return result


def decision_projection(
    deps: handlers.Deps,
    bootstrap: str,
    *,
    group_id: str = GROUP_ID,
    topic: str = topics.DECISIONS.name,
    dlq_topic: str = topics.DECISIONS_DLQ.name,
    **kwargs: Any,
) -> KafkaRecordLoop:
    """An undecodable decision goes to ``subsidy.decisions.v1.dlq``."""
    return _projection(CONSUMER, DecisionHandler(deps), bootstrap, group_id, topic, dlq_topic, **kwargs)


def _projection(
    consumer: str, handler: Any, bootstrap: str, group_id: str, topic: str, dlq_topic: str, **kwargs: Any
) -> KafkaRecordLoop:
    """One of intake's two status projections: a consumer group of its own
    on one topic, dead letters to that topic's DLQ."""
    # A poll's records in one transaction (the store's batch: a savepoint
    # each, so a rejected record rolls back alone), as payout applies its
    # decisions; the loop redoes the whole poll if the batch fails.
    kwargs.setdefault("batch_scope", handler.deps.store.batch)
    return KafkaRecordLoop(
        consumer,
        handler,
        bootstrap,
        topics=[topic],
        group_id=group_id,
        dlq_topic=dlq_topic,
        source=handlers.SOURCE,
        client_id=group_id,
        **kwargs,
    )


PAYOUT_GROUP_ID = "subsidy-intake-payouts"
PAYOUT_CONSUMER = "intake-payout-projection"


def parse_payout_event(value: bytes | None) -> Any:
    """A subsidy.v1.PayoutEvent naming its application, or RecordRejected."""
    try:
        return events.payout_event(value)
    except events.MalformedEvent as exc:
        raise RecordRejected(str(exc)) from None


class PayoutEventHandler:
    """subsidy.payouts.v1 -> the grant and its tranches folded into the
    application, once per event id."""

    def __init__(self, deps: handlers.Deps):
        self.deps = deps

    def __call__(self, record: Any) -> str:
        event = parse_payout_event(record.value)
        # The event's own application_id; for a tranche event published
        # before it carried one, read from its tranche id (docs/finance-events.md).
        application_id = events.application_id_of(event)
        result = handlers.apply_payout_event(self.deps, event.event_id, application_id, event)
        metrics.PAYOUT_EVENTS_APPLIED.labels(result).inc()
        where = logs.fields(
            application_id=application_id,
            event_id=event.event_id,
            kind=event.WhichOneof("event"),
            partition=record.partition,
            offset=record.offset,
        )
        if result == "unknown":
            log.warning("payout event for an unknown application: skipped", extra=where)
        else:
            log.info(f"payout event {result}", extra=where)
        return result


def payout_projection(
    deps: handlers.Deps,
    bootstrap: str,
    *,
    group_id: str = PAYOUT_GROUP_ID,
    topic: str = topics.PAYOUTS.name,
    dlq_topic: str = topics.PAYOUTS_DLQ.name,
    **kwargs: Any,
) -> KafkaRecordLoop:
    """An undecodable event goes to ``subsidy.payouts.v1.dlq``."""
    return _projection(PAYOUT_CONSUMER, PayoutEventHandler(deps), bootstrap, group_id, topic, dlq_topic, **kwargs)


FIRMS_GROUP_ID = "subsidy-intake-firms"
FIRMS_CONSUMER = "intake-firms"


class FirmFactsHandler:
    """subsidy.firms.v1 -> 免申即享 proposals (subsidy/services/intake/proposals.py).
    A record that is not usable FirmFacts goes to subsidy.firms.v1.dlq; a
    tombstone (the platform no longer knows the firm) proposes nothing."""

    def __init__(self, deps: Any):
        self.deps = deps

    def __call__(self, record: Any) -> str:
        from subsidy.services.intake import proposals

        key = record.key.decode("utf-8", "replace") if record.key else ""
        if not credit_code.is_valid(key):
            # Every record of subsidy.firms.v1 is keyed by a firm: a tombstone
            # or facts under anything else is not the platform's, and is kept.
            raise RecordRejected(f"key: {key[:64]!r} is not a unified social credit code")
        try:
            message = events.firm_facts(record.value)
        except events.MalformedEvent as exc:
            raise RecordRejected(str(exc)) from None
        if message is None:
            return "tombstone"
        if message.credit_code != key:
            raise RecordRejected(f"credit_code: {message.credit_code!r} is not the record's key {key!r}")
        try:
            results = proposals.on_firm_facts(self.deps, message)
        except (BadInput, ValueError) as exc:
            raise RecordRejected(f"firm facts the contract refuses: {exc}") from None
        created = sum(1 for _, r in results if r == "created")
        if results:
            log.info(
                "firm facts read for proposals",
                extra=logs.fields(
                    credit_code=key,
                    created=created,
                    results=[r for _, r in results],
                    partition=record.partition,
                    offset=record.offset,
                ),
            )
        return "created" if created else "nothing"


def firm_facts_consumer(
    deps: Any,
    bootstrap: str,
    *,
    group_id: str = FIRMS_GROUP_ID,
    topic: str = topics.FIRMS.name,
    dlq_topic: str = topics.FIRMS_DLQ.name,
    **kwargs: Any,
) -> KafkaRecordLoop:
    """The firm facts registry-sync publishes, read for 免申即享 proposals."""
    return _projection(FIRMS_CONSUMER, FirmFactsHandler(deps), bootstrap, group_id, topic, dlq_topic, **kwargs)
