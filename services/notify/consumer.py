"""The notify consumer: ``subsidy.decisions.v1`` and ``subsidy.payouts.v1``
-> notifications, kafka-python in a thread, group ``subsidy-notify``.

Per record: parse (undecodable -> dead letter), notify every channel (the
log is written after each successful send), then commit the offset. A
channel that gives up after its retries sends the event to
``subsidy.notifications.v1.dlq``; the partition moves on. When the database,
the registry or the DLQ producer fails, every partition of the batch is
rewound to its first unfinished record and retried with backoff (a replay is
harmless: the log skips what was sent).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any, Callable

from subsidy import cloudevents, logs, topics
from subsidy import metrics as shared
from services.notify import handlers, metrics
from services.notify.model import DeliveryFailed, Interrupted, InvalidEvent
from subsidy import kafka_security

log = logging.getLogger("services.notify.consumer")

GROUP_ID = "subsidy-notify"
CONSUMER = "notify"


class NotifyConsumer:
    def __init__(
        self,
        deps: handlers.Deps,
        bootstrap: str,
        *,
        group_id: str = GROUP_ID,
        topics_: tuple[str, ...] = (topics.DECISIONS.name, topics.PAYOUTS.name),
        dlq_topic: str = topics.NOTIFICATIONS_DLQ.name,
        max_backoff: float = 10.0,
        stall_s: float = 60.0,
        consumer_factory: Callable[[], Any] | None = None,
        producer_factory: Callable[[], Any] | None = None,
    ):
        # Health: when it last polled, advanced, reached the broker (subsidy/metrics.py).
        self.progress = shared.ConsumerProgress(CONSUMER, stall_s)
        self.lag_interval_s = min(5.0, stall_s / 3)
        self._last_lag_refresh = float("-inf")
        self._lag_keys: set = set()
        #: Test hook: hold() stops the loop polling, as if it hung.
        self.hold = shared.Hold()
        self.deps = deps
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.topics = topics_
        self.dlq_topic = dlq_topic
        self.max_backoff = max_backoff
        self._consumer_factory = consumer_factory or self._new_consumer
        self._producer_factory = producer_factory or self._new_producer
        self._consumer: Any = None
        self._producer: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.consuming = threading.Event()
        # Retry waits end early when the service stops.
        deps.sleep = self._sleep

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="notify-consumer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("notify consumer did not stop within %.0fs; leaving it (daemon thread)", timeout)

    @property
    def running(self) -> bool:
        return self.consuming.is_set() and self._thread is not None and self._thread.is_alive()

    def _sleep(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise Interrupted("the service is stopping")

    def _new_consumer(self) -> Any:
        from kafka import KafkaConsumer

        return KafkaConsumer(
            *self.topics,
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            client_id="subsidy-notify",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            bootstrap_timeout_ms=5000,
            reconnect_backoff_max_ms=2000,
            # A record may wait out its retries (attempts x backoff) before
            # the next poll: keep the group membership meanwhile.
            max_poll_interval_ms=600_000, **kafka_security.client_config()
        )

    def _new_producer(self) -> Any:
        from kafka import KafkaProducer

        return KafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id="subsidy-notify-dlq",
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
                    log.info("notify consuming", extra=logs.fields(topics=list(self.topics), group=self.group_id))
                self.hold.wait_while_held(self._stop)
                batches = self._consumer.poll(timeout_ms=300, max_records=50)
                self.progress.polled(sum(len(r) for r in batches.values()))
                unprocessed = {tp: records[0].offset for tp, records in batches.items() if records}
                try:
                    for tp, records in batches.items():
                        for record in records:
                            if self._stop.is_set():
                                raise Interrupted("the service is stopping")
                            shared.KAFKA_CONSUMED.labels(record.topic, CONSUMER).inc()
                            self.handle(record)
                            self._consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})
                            self.progress.advanced()
                            unprocessed[tp] = record.offset + 1
                        unprocessed.pop(tp, None)
                except BaseException:
                    for tp, offset in unprocessed.items():
                        self._consumer.seek(tp, offset)
                    raise
                backoff = 0.0
                self._refresh_lag()
            except Interrupted:
                break
            except Exception as exc:  # noqa: BLE001 - retry, never crash the service
                backoff = min(self.max_backoff, backoff * 2 if backoff else 0.25)
                log.warning(
                    "notify consumer failed, retrying",
                    extra=logs.fields(error=f"{type(exc).__name__}: {exc}"[:300], retry_in_s=backoff),
                )
                if self._consumer is not None:
                    self._refresh_lag()
                self._stop.wait(backoff)
        self.consuming.clear()
        shared.clear_lag(self._lag_keys)
        for client, close in ((self._consumer, lambda c: c.close(autocommit=False)),
                              (self._producer, lambda p: p.close(timeout=2))):
            if client is not None:
                try:
                    close(client)
                except Exception:  # noqa: BLE001
                    log.warning("notify: closing a Kafka client failed", exc_info=True)

    def _refresh_lag(self) -> None:
        """Every few seconds: lag per assigned partition, and proof the broker answers."""
        now = self.progress.clock()
        if now - self._last_lag_refresh < self.lag_interval_s:
            return
        self._last_lag_refresh = now
        try:
            shared.refresh_kafka_lag(self._consumer, self.group_id, self.progress, self._lag_keys)
        except Exception as exc:  # noqa: BLE001 - the broker is down: health shows it
            log.debug("lag refresh failed", extra=logs.fields(consumer=CONSUMER, error=str(exc)[:200]))

    def handle(self, record: Any) -> str:
        """Process one consumed record; return what happened."""
        trace_id = cloudevents.trace_id_of(record.headers)
        with logs.trace(trace_id):
            parse = handlers.parse_decision if record.topic == topics.DECISIONS.name else handlers.parse_payout_event
            try:
                event = parse(record.value, trace_id)
            except InvalidEvent as exc:
                self.dead_letter(record, str(exc), trace_id)
                return "dead_letter"
            try:
                outcome = handlers.notify(self.deps, event)
            except DeliveryFailed as exc:
                self.dead_letter(record, f"{event.event_id}: {exc}", trace_id)
                return "dead_letter"
            log.info(
                "event handled",
                extra=logs.fields(event_id=event.event_id, kind=event.kind, credit_code=event.credit_code,
                                  sent=outcome.sent, replayed=outcome.replayed, partition=record.partition,
                                  offset=record.offset),
            )
            return "unknown_firm" if outcome.unknown_firm else "handled"

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
            consumer=CONSUMER,
            failed_at=now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
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
        self._producer.send(self.dlq_topic, key=record.key or b"", value=letter.SerializeToString(),
                            headers=headers).get(timeout=30)
        shared.KAFKA_PRODUCED.labels(self.dlq_topic, "notify-dlq").inc()
        metrics.DEAD_LETTERS.labels(record.topic, CONSUMER).inc()
        log.warning(
            "event sent to the dead-letter topic",
            extra=logs.fields(topic=record.topic, partition=record.partition, offset=record.offset,
                              dlq=self.dlq_topic, error=error[:500]),
        )
