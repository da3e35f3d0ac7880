"""The two Kafka consumers of payout, kafka-python in a thread each:

- ``subsidy.decisions.v1``, group ``subsidy-payout``: each Decision applied to
  the ledger in one transaction (store.apply_decision);
- ``subsidy.payments.v1``, group ``subsidy-payout-payments``: each
  PaymentConfirmed applied in one transaction (store.apply_payment).

Offsets are committed manually, one record at a time, only after the
transaction that applied it committed (at least once; the inbox and the
payment ids make a redelivery harmless). A record that must not be applied
(undecodable, invalid, a payment that does not match its tranche) goes to the
topic's dead-letter topic as a subsidy.v1.DeadLetter, is counted, and its
offset is committed once the dead letter is acknowledged. If the database or
the DLQ is down, every partition of the batch is rewound to its first
unapplied record and retried with backoff.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any, Callable

from subsidy import cloudevents, logs, topics
from subsidy import metrics as shared
from services.payout import handlers, metrics
from services.payout.model import SOURCE, Rejected, rfc3339
from services.payout.store import SqlStore
from subsidy import kafka_security

log = logging.getLogger("services.payout.consumers")

#: Ledger reasons that mean the firm's history limited a grant (subsidy_payout_cap_hits_total).
CAP_REASONS = frozenset({"CAP_PARTIAL", "CAP_EXHAUSTED", "ALREADY_AWARDED"})


class RecordConsumer:
    """Poll, apply one record, commit its offset; dead-letter what is rejected."""

    def __init__(
        self,
        name: str,
        apply: Callable[[Any], str],
        bootstrap: str,
        *,
        topic: str,
        dlq_topic: str,
        group_id: str,
        max_backoff: float = 10.0,
        session_timeout_ms: int = 10000,
        stall_s: float = 60.0,
        consumer_factory: Callable[[], Any] | None = None,
        producer_factory: Callable[[], Any] | None = None,
    ):
        self.name = name
        # Health: when it last polled, advanced, reached the broker (subsidy/metrics.py).
        self.progress = shared.ConsumerProgress(name, stall_s)
        self.lag_interval_s = min(5.0, stall_s / 3)
        self._last_lag_refresh = float("-inf")
        self._lag_keys: set = set()
        #: Test hook: hold() stops the loop polling, as if it hung.
        self.hold = shared.Hold()
        self.apply = apply
        self.bootstrap = bootstrap
        self.topic = topic
        self.dlq_topic = dlq_topic
        self.group_id = group_id
        self.max_backoff = max_backoff
        self.session_timeout_ms = session_timeout_ms
        self._consumer_factory = consumer_factory or self._new_consumer
        self._producer_factory = producer_factory or self._new_producer
        self._consumer: Any = None
        self._producer: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.consuming = threading.Event()

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("consumer did not stop in time; leaving it (daemon thread)",
                            extra=logs.fields(consumer=self.name, timeout_s=timeout))

    @property
    def running(self) -> bool:
        return self.consuming.is_set() and not self._stop.is_set() and bool(self._thread and self._thread.is_alive())

    def _new_consumer(self) -> Any:
        from kafka import KafkaConsumer

        return KafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            client_id=self.name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=50,
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=max(500, self.session_timeout_ms // 3),
            bootstrap_timeout_ms=5000,
            reconnect_backoff_max_ms=2000, **kafka_security.client_config()
        )

    def _new_producer(self) -> Any:
        from kafka import KafkaProducer

        return KafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=f"{self.name}-dlq",
            enable_idempotence=True,
            acks="all",
            max_block_ms=5000,
            bootstrap_timeout_ms=5000, **kafka_security.client_config()
        )

    # -- the loop ------------------------------------------------------------------

    def _run(self) -> None:
        from kafka import OffsetAndMetadata

        backoff = 0.0
        while not self._stop.is_set():
            try:
                if self._consumer is None:
                    self._consumer = self._consumer_factory()
                    self.consuming.set()
                    log.info("consuming", extra=logs.fields(consumer=self.name, topic=self.topic, group=self.group_id))
                self.hold.wait_while_held(self._stop)
                batches = self._consumer.poll(timeout_ms=300)
                self.progress.polled(sum(len(r) for r in batches.values()))
                unprocessed = {tp: records[0].offset for tp, records in batches.items() if records}
                try:
                    for tp, records in batches.items():
                        for record in records:
                            if self._stop.is_set():
                                raise _Stopping()
                            shared.KAFKA_CONSUMED.labels(record.topic, self.name).inc()
                            self.handle(record)
                            self._consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})
                            self.progress.advanced()
                            unprocessed[tp] = record.offset + 1
                        unprocessed.pop(tp, None)
                except BaseException:
                    self._rewind(unprocessed)
                    raise
                backoff = 0.0
                self._refresh_lag()
            except _Stopping:
                break
            except Exception as exc:  # noqa: BLE001 - db, DLQ or a rebalance: retry, never crash
                backoff = min(self.max_backoff, backoff * 2 if backoff else 0.25)
                log.warning("consumer failed, retrying", extra=logs.fields(
                    consumer=self.name, error=f"{type(exc).__name__}: {exc}"[:300], retry_in_s=backoff))
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
                    log.warning("closing a Kafka client failed", exc_info=True)

    def _refresh_lag(self) -> None:
        """Every few seconds: lag per assigned partition, and proof the broker answers."""
        now = self.progress.clock()
        if now - self._last_lag_refresh < self.lag_interval_s:
            return
        self._last_lag_refresh = now
        try:
            shared.refresh_kafka_lag(self._consumer, self.group_id, self.progress, self._lag_keys)
        except Exception as exc:  # noqa: BLE001 - the broker is down: health shows it
            log.debug("lag refresh failed", extra=logs.fields(consumer=self.name, error=str(exc)[:200]))

    def _rewind(self, unprocessed: dict) -> None:
        """Seek every partition still ours back to its first unapplied record
        (a partition taken away by a rebalance is left to its new owner)."""
        try:
            assigned = self._consumer.assignment()
        except Exception:  # noqa: BLE001
            assigned = set()
        for tp, offset in unprocessed.items():
            if tp in assigned:
                try:
                    self._consumer.seek(tp, offset)
                except Exception:  # noqa: BLE001
                    log.warning("rewind failed", extra=logs.fields(consumer=self.name, partition=tp.partition))

    def handle(self, record: Any) -> str:
        trace_id = cloudevents.trace_id_of(record.headers)
        with logs.trace(trace_id):
            try:
                return self.apply(record)
            except Rejected as exc:
                self.dead_letter(record, str(exc), trace_id)
                return "dead_letter"

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
            consumer=self.name,
            failed_at=rfc3339(now),
        )
        if self._producer is None:
            self._producer = self._producer_factory()
        headers = cloudevents.headers(
            event_id=f"{record.topic}/{record.partition}/{record.offset}",
            event_type=cloudevents.TYPE_DEAD_LETTER,
            source=SOURCE,
            trace_id=trace_id or cloudevents.new_trace_id(),
            time=now,
        )
        self._producer.send(self.dlq_topic, key=record.key or b"", value=letter.SerializeToString(),
                            headers=headers).get(timeout=30)
        shared.KAFKA_PRODUCED.labels(self.dlq_topic, f"{self.name}-dlq").inc()
        metrics.DEAD_LETTERS.labels(record.topic, self.name).inc()
        log.warning("message sent to the dead-letter topic", extra=logs.fields(
            topic=record.topic, partition=record.partition, offset=record.offset, dlq=self.dlq_topic,
            error=error[:300]))


class _Stopping(Exception):
    pass


# -- what each consumer does with a record ------------------------------------------------


class DecisionApplier:
    """subsidy.decisions.v1 → the ledger."""

    consumer_name = "payout"

    def __init__(self, store: SqlStore, on_written: Callable[[], None] = lambda: None):
        self.store = store
        self.on_written = on_written

    def __call__(self, record: Any) -> str:
        decision = handlers.parse_decision(record.value)
        trace_id = cloudevents.trace_id_of(record.headers) or cloudevents.new_trace_id()
        with logs.trace(trace_id):
            applied = self.store.apply_decision(decision, trace_id)
            metrics.DECISIONS.labels(applied.result).inc()
            where = dict(application_id=decision.application_id, decision_id=decision.decision_id,
                         credit_code=decision.credit_code, clause=decision.clause, outcome=decision.outcome,
                         partition=record.partition, offset=record.offset)
            if applied.result == "replayed":
                log.info("decision replayed: already applied, nothing written", extra=logs.fields(**where))
                return applied.result
            plan = applied.plan
            if applied.result == "applied":
                metrics.GRANTS.labels(plan.clause, plan.outcome).inc()
                metrics.GRANTED_FEN.labels(plan.clause).inc(plan.granted_fen)
                metrics.TRANSITIONS.labels("SCHEDULED").inc(len(plan.tranches))
                for tranche in plan.tranches:
                    metrics.SCHEDULED_FEN.labels(plan.clause, str(tranche.year)).inc(tranche.amount_fen)
                if any(r.code in CAP_REASONS for r in plan.reasons):
                    metrics.CAP_HITS.labels(plan.clause).inc()
                for reason in plan.reasons:
                    metrics.LEDGER_LIMITS.labels(plan.clause, reason.code).inc()
            log.info(f"decision {applied.result}", extra=logs.fields(
                **where, granted_fen=plan.granted_fen, max_award_fen=plan.max_award_fen,
                tranches=len(plan.tranches), ledger_reasons=[r.code for r in plan.reasons]))
            self.on_written()
            return applied.result


class PaymentApplier:
    """subsidy.payments.v1 → tranche PAID."""

    consumer_name = "payout-payments"

    def __init__(self, store: SqlStore, on_written: Callable[[], None] = lambda: None):
        self.store = store
        self.on_written = on_written

    def __call__(self, record: Any) -> str:
        try:
            payment = handlers.parse_payment(record.value)
            result, tranche = self.store.apply_payment(payment)
        except Rejected:
            metrics.PAYMENTS.labels("dead_letter").inc()
            raise
        metrics.PAYMENTS.labels(result).inc()
        where = logs.fields(payment_id=payment.payment_id, tranche_id=payment.tranche_id,
                            credit_code=payment.credit_code, amount_fen=payment.amount_fen,
                            partition=record.partition, offset=record.offset)
        if result == "applied":
            metrics.TRANSITIONS.labels("PAID").inc()
            metrics.TRANCHES_PAID.inc()
            log.info("payment applied: tranche paid", extra=where)
            self.on_written()
        else:
            log.info("payment repeated: already applied, ignored", extra=where)
        return result


def decisions_consumer(store: SqlStore, bootstrap: str, group_id: str, on_written: Callable[[], None],
                       **kwargs: Any) -> RecordConsumer:
    return RecordConsumer(DecisionApplier.consumer_name, DecisionApplier(store, on_written), bootstrap,
                          topic=topics.DECISIONS.name, dlq_topic=topics.DECISIONS_DLQ.name, group_id=group_id,
                          **kwargs)


def payments_consumer(store: SqlStore, bootstrap: str, group_id: str, on_written: Callable[[], None],
                      **kwargs: Any) -> RecordConsumer:
    return RecordConsumer(PaymentApplier.consumer_name, PaymentApplier(store, on_written), bootstrap,
                          topic=topics.PAYMENTS.name, dlq_topic=topics.PAYMENTS_DLQ.name, group_id=group_id,
                          **kwargs)
