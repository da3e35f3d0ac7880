"""The status projections: ``DecisionProjection`` consumes
``subsidy.decisions.v1`` and records each decision on its application (state
DECIDED, the decision, its id); ``PayoutProjection`` consumes
``subsidy.payouts.v1`` and folds the grant and its tranches in (state
RECORDED), so GetApplication tells the whole story.

kafka-python in a thread, like the relay: the work per message is one
blocking database transaction, and offsets are committed synchronously after
it. Idempotent: a replayed decision (same decision id) changes nothing. A
decision for an application intake does not know is logged and counted. A
message that is not a valid Decision goes to ``subsidy.decisions.v1.dlq`` as
a DeadLetter (and is counted); the partition keeps moving.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any, Callable

from google.protobuf.message import DecodeError

from subsidy import cloudevents, codec, logs, topics
from subsidy import metrics as shared
from subsidy.codec import BadInput
from services.intake import handlers, metrics, payouts
from services.intake.model import rfc3339
from subsidy import kafka_security

log = logging.getLogger("services.intake.projection")

GROUP_ID = "subsidy-intake-projection"
CONSUMER = "intake-projection"


class InvalidDecision(ValueError):
    pass


def parse_decision(value: bytes | None) -> Any:
    """A subsidy.v1.Decision, or InvalidDecision saying what is wrong."""
    from subsidy.v1 import decision_pb2

    if value is None:
        raise InvalidDecision("empty message (no value)")
    try:
        message = decision_pb2.Decision.FromString(value)
    except DecodeError as exc:
        raise InvalidDecision(f"not a subsidy.v1.Decision protobuf: {exc}") from None
    if not message.application_id:
        raise InvalidDecision("application_id: is required")
    if not message.decision_id:
        raise InvalidDecision("decision_id: is required")
    try:
        codec.decision_from_proto(message)
    except BadInput as exc:
        raise InvalidDecision(str(exc)) from None
    return message


class DecisionProjection:
    name = "decision projection"
    consumer = CONSUMER  # label of subsidy_kafka_messages_consumed_total and the progress gauge

    def __init__(
        self,
        deps: handlers.Deps,
        bootstrap: str,
        *,
        group_id: str = GROUP_ID,
        topic: str = topics.DECISIONS.name,
        dlq_topic: str = topics.DECISIONS_DLQ.name,
        max_backoff: float = 10.0,
        stall_s: float = 60.0,
        consumer_factory: Callable[[], Any] | None = None,
        producer_factory: Callable[[], Any] | None = None,
    ):
        # Health: when it last polled, advanced, reached the broker (subsidy/metrics.py).
        self.progress = shared.ConsumerProgress(self.consumer, stall_s)
        self.lag_interval_s = min(5.0, stall_s / 3)
        self._last_lag_refresh = float("-inf")
        self._lag_keys: set = set()
        #: Test hook: hold() stops the loop polling, as if it hung.
        self.hold = shared.Hold()
        self.deps = deps
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.topic = topic
        self.dlq_topic = dlq_topic
        self.max_backoff = max_backoff
        self._consumer_factory = consumer_factory or self._new_consumer
        self._producer_factory = producer_factory or self._new_producer
        self._consumer: Any = None
        self._producer: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.consuming = threading.Event()

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"intake-{self.name.replace(' ', '-')}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("%s did not stop within %.0fs; leaving it (daemon thread)", self.name, timeout)

    def _new_consumer(self) -> Any:
        from kafka import KafkaConsumer

        return KafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            client_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            bootstrap_timeout_ms=5000,
            reconnect_backoff_max_ms=2000, **kafka_security.client_config()
        )

    def _new_producer(self) -> Any:
        from kafka import KafkaProducer

        return KafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id="subsidy-intake-projection-dlq",
            enable_idempotence=True,
            acks="all",
            max_block_ms=5000,
            bootstrap_timeout_ms=5000, **kafka_security.client_config()
        )

    # -- the loop --------------------------------------------------------------

    def _run(self) -> None:
        from kafka import OffsetAndMetadata

        backoff = 0.0
        while not self._stop.is_set():
            try:
                if self._consumer is None:
                    self._consumer = self._consumer_factory()
                    self.consuming.set()
                    log.info(f"{self.name} consuming", extra=logs.fields(topic=self.topic, group=self.group_id))
                self.hold.wait_while_held(self._stop)
                batches = self._consumer.poll(timeout_ms=300, max_records=100)
                self.progress.polled(sum(len(r) for r in batches.values()))
                # Where each partition's unprocessed records start: on a failure
                # (db or DLQ down) every partition is rewound there, so nothing
                # polled but not applied is skipped.
                unprocessed = {tp: records[0].offset for tp, records in batches.items() if records}
                try:
                    for tp, records in batches.items():
                        for record in records:
                            shared.KAFKA_CONSUMED.labels(record.topic, self.consumer).inc()
                            self.handle(record)
                            self._consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})
                            self.progress.advanced()
                            unprocessed[tp] = record.offset + 1
                        unprocessed.pop(tp, None)
                except Exception:
                    for tp, offset in unprocessed.items():
                        self._consumer.seek(tp, offset)
                    raise
                backoff = 0.0
                self._refresh_lag()
            except Exception as exc:  # noqa: BLE001 - retry, never crash the service
                backoff = min(self.max_backoff, backoff * 2 if backoff else 0.25)
                log.warning(
                    f"{self.name} failed, retrying",
                    extra=logs.fields(error=f"{type(exc).__name__}: {exc}"[:300], retry_in_s=backoff),
                )
                if self._consumer is not None:
                    self._refresh_lag()
                self._stop.wait(backoff)
        self.consuming.clear()
        shared.clear_lag(self._lag_keys)
        for client, close in ((self._consumer, lambda c: c.close(autocommit=False)), (self._producer, lambda p: p.close(timeout=2))):
            if client is not None:
                try:
                    close(client)
                except Exception:  # noqa: BLE001
                    log.warning("%s: closing a Kafka client failed", self.name, exc_info=True)

    def _refresh_lag(self) -> None:
        """Every few seconds: lag per assigned partition, and proof the broker answers."""
        now = self.progress.clock()
        if now - self._last_lag_refresh < self.lag_interval_s:
            return
        self._last_lag_refresh = now
        try:
            shared.refresh_kafka_lag(self._consumer, self.group_id, self.progress, self._lag_keys)
        except Exception as exc:  # noqa: BLE001 - the broker is down: health shows it
            log.debug("lag refresh failed", extra=logs.fields(consumer=self.consumer, error=str(exc)[:200]))

    def handle(self, record: Any) -> str:
        """Apply one consumed record; return what happened."""
        trace_id = cloudevents.trace_id_of(record.headers)
        with logs.trace(trace_id):
            try:
                decision = parse_decision(record.value)
            except InvalidDecision as exc:
                self.dead_letter(record, str(exc), trace_id)
                return "dead_letter"
            result = handlers.apply_decision(
                self.deps, decision.application_id, decision.decision_id, bytes(record.value)
            )
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
            else:
                log.info(f"decision {result}", extra=where)
            return result

    def dead_letter(self, record: Any, error: str, trace_id: str | None) -> None:
        from subsidy.v1 import events_pb2

        now = dt.datetime.now(dt.timezone.utc)
        letter = events_pb2.DeadLetter(
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            key=record.key or b"",
            value=record.value or b"",
            headers=[events_pb2.KafkaHeader(key=k, value=v or b"") for k, v in (record.headers or [])],
            error=error,
            consumer=self.consumer,
            failed_at=rfc3339(now),
        )
        if self._producer is None:
            self._producer = self._producer_factory()
        headers = cloudevents.headers(
            event_id=f"{record.topic}/{record.partition}/{record.offset}",
            event_type=cloudevents.TYPE_DEAD_LETTER,
            source=handlers.SOURCE,
            trace_id=trace_id or cloudevents.new_trace_id(),
            time=now,
        )
        self._producer.send(self.dlq_topic, key=record.key or b"", value=letter.SerializeToString(), headers=headers).get(
            timeout=30
        )
        shared.KAFKA_PRODUCED.labels(self.dlq_topic, f"{self.consumer}-dlq").inc()
        metrics.DEAD_LETTERS.labels(record.topic, self.consumer).inc()
        log.warning(
            f"{self.name}: undecodable message sent to the dead-letter topic",
            extra=logs.fields(topic=record.topic, partition=record.partition, offset=record.offset,
                              dlq=self.dlq_topic, error=error[:300]),
        )


PAYOUT_GROUP_ID = "subsidy-intake-payouts"


class InvalidPayoutEvent(ValueError):
    pass


def parse_payout_event(value: bytes | None) -> Any:
    from subsidy.v1 import payout_pb2

    if value is None:
        raise InvalidPayoutEvent("empty message (no value)")
    try:
        event = payout_pb2.PayoutEvent.FromString(value)
    except DecodeError as exc:
        raise InvalidPayoutEvent(f"not a subsidy.v1.PayoutEvent protobuf: {exc}") from None
    if not event.event_id:
        raise InvalidPayoutEvent("event_id: is required")
    try:
        payouts.application_id_of(event)
    except payouts.NotAPayoutEvent as exc:
        raise InvalidPayoutEvent(str(exc)) from None
    return event


class PayoutProjection(DecisionProjection):
    """Folds payout events into the application's grant, once per event id;
    an undecodable event goes to ``subsidy.payouts.v1.dlq``."""

    name = "payout projection"
    consumer = "intake-payout-projection"

    def __init__(self, deps: handlers.Deps, bootstrap: str, **kwargs: Any):
        kwargs.setdefault("group_id", PAYOUT_GROUP_ID)
        kwargs.setdefault("topic", topics.PAYOUTS.name)
        kwargs.setdefault("dlq_topic", topics.PAYOUTS_DLQ.name)
        super().__init__(deps, bootstrap, **kwargs)

    def handle(self, record: Any) -> str:
        trace_id = cloudevents.trace_id_of(record.headers)
        with logs.trace(trace_id):
            try:
                event = parse_payout_event(record.value)
            except InvalidPayoutEvent as exc:
                self.dead_letter(record, str(exc), trace_id)
                return "dead_letter"
            application_id = payouts.application_id_of(event)
            result = self.deps.store.apply_payout_event(
                event.event_id,
                application_id,
                lambda grant: payouts.fold_bytes(grant, event),
                rfc3339(self.deps.clock()),
            )
            metrics.PAYOUT_EVENTS_APPLIED.labels(result).inc()
            where = logs.fields(
                application_id=application_id, event_id=event.event_id, kind=event.WhichOneof("event"),
                partition=record.partition, offset=record.offset,
            )
            if result == "unknown":
                log.warning("payout event for an unknown application: skipped", extra=where)
            else:
                log.info(f"payout event {result}", extra=where)
            return result
