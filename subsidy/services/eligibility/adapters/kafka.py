"""The eligibility service, wired: the one composition root.

``create_app(settings, policy=..., registry=...)`` builds, without starting
anything,

- a faust-streaming app (id ``subsidy-eligibility``) whose one agent reads
  ``subsidy.applications.v1`` as raw bytes, concurrency 1, and hands each
  record to ``Eligibility.submit``: ``processor.process`` (pure) says what to
  produce and ``submit`` hands it to the producer without waiting for the
  broker; ``InFlight`` keeps what was handed over, in the order it was read,
  and as the broker acknowledges it, counts, logs and acknowledges the source
  record to faust (``Eligibility.delivered``);
- the gRPC server (``grpc_api.GrpcServer``), started and stopped with the
  faust worker in the same event loop;
- the Prometheus counters (``metrics.Metrics``).

``Eligibility.worker()`` returns the faust Worker that runs both;
``subsidy/services/eligibility/__main__.py`` loads settings and policy, creates the
topics and runs it.

Delivery: at least once. The agent reads with acks disabled
(``stream.noack()``) and acknowledges a record to faust only once the broker
has acknowledged its output *and the output of every record read before it*,
so faust, which commits (every ``commit_interval_seconds``) the offsets of
acknowledged records, never commits past a record whose decision or dead
letter the broker does not have. Up to ``max_in_flight`` outputs are with the
producer at once (pipelined, instead of one broker round trip per record);
the first one the producer gives up on stops the flow and crashes the app.
After a crash the uncommitted tail is processed again and lands on the same
derived ids (decision id = application id @ policy version, dead letter id =
consumer:topic/partition/offset). faust's ``exactly_once`` processing
guarantee is deliberately not used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import faust
from prometheus_client import CollectorRegistry

from subsidy.services.eligibility import handlers as processor
from subsidy.services.eligibility.config import Settings
from subsidy.services.eligibility.adapters.grpc import GrpcServer
from subsidy.services.eligibility.metrics import CONSUMER, PRODUCER, Metrics
from subsidy.platform import metrics as shared_metrics
from subsidy.services.eligibility.handlers import Decided, DeadLettered, Origin, Outcome
from subsidy.platform.security import kafka as kafka_security
from subsidy.platform import logs
from subsidy.contracts import topics
from subsidy.core.policy import Policy, load_policy

log = logging.getLogger("subsidy.eligibility")

#: (topic, key, value, headers) -> once the producer has taken the record: an
#: awaitable that completes when the broker has acknowledged it, or raises if
#: it never will.
Sink = Callable[[str, "bytes | None", bytes, list], Awaitable[Awaitable[Any]]]


@dataclass(slots=True, eq=False)
class Sent:
    """One source record whose output is with the producer."""

    event: Any  # the faust Event it was read as (acknowledged once delivered)
    outcome: Outcome
    delivery: "asyncio.Future[Any]"
    stream: Any = None  # the stream it came from (for faust's sensors)


#: How long faust may take to stop after a crash before the process exits hard.
CRASH_EXIT_AFTER_S = 20.0
#: The exit status then (EX_SOFTWARE): not 0, so a supervisor restarts it.
EXIT_CRASHED = 70


def _exit_after_crash(after_s: float) -> None:
    log.critical("still running %.0fs after the crash; exiting", after_s)
    logging.shutdown()
    os._exit(EXIT_CRASHED)


class InFlight:
    """Outputs handed to the producer and not yet acknowledged by the broker,
    in the order their source records were read.

    ``delivered(sent)`` is called for each in that order, and only once the
    broker has acknowledged it and everything before it: acknowledging the
    source record there means an offset is never acknowledged to faust (and so
    never committed) while an earlier record of its partition still waits.
    The first delivery that fails calls ``failed(sent, exc)`` and stops the
    flow for good: nothing after it is delivered (acknowledged) any more, and
    ``add`` and ``drained`` raise the error.

    ``add`` waits while ``limit`` outputs are in flight (back-pressure)."""

    def __init__(self, limit: int, delivered: Callable[[Sent], None],
                 failed: Callable[[Sent, BaseException], None]):
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._delivered = delivered
        self._failed = failed
        self._queue: deque[Sent] = deque()
        self._changed = asyncio.Event()
        self.failure: BaseException | None = None

    def __len__(self) -> int:
        return len(self._queue)

    async def add(self, event: Any, outcome: Outcome, delivery: Awaitable[Any], stream: Any = None) -> None:
        if self.failure is not None:
            raise self.failure
        sent = Sent(event, outcome, asyncio.ensure_future(delivery), stream)
        self._queue.append(sent)
        sent.delivery.add_done_callback(self._on_done)
        while len(self._queue) >= self.limit and self.failure is None:
            self._changed.clear()
            await self._changed.wait()
        if self.failure is not None:
            raise self.failure

    async def drained(self) -> None:
        """Until every output handed over is delivered; raises if one failed."""
        while self._queue and self.failure is None:
            self._changed.clear()
            await self._changed.wait()
        if self.failure is not None:
            raise self.failure

    def _on_done(self, future: "asyncio.Future[Any]") -> None:
        queue = self._queue
        while queue and self.failure is None and queue[0].delivery.done():
            sent = queue[0]
            error = (asyncio.CancelledError("delivery cancelled") if sent.delivery.cancelled()
                     else sent.delivery.exception())
            if error is None:
                queue.popleft()
                try:
                    self._delivered(sent)
                except Exception as exc:  # noqa: BLE001 - a bug in counting/acking: stop, do not skip
                    error = exc
            if error is not None:
                self.failure = error
                self._failed(sent, error)
        if self.failure is not None and future.done() and not future.cancelled():
            future.exception()  # retrieved: the failure is reported once, by `failed`
        self._changed.set()


def faust_settings(settings: Settings) -> dict[str, Any]:
    """faust App configuration for our broker and our guarantees."""
    return dict(
        broker=settings.broker_urls,
        # No tables; the memory store keeps faust away from RocksDB.
        store="memory://",
        datadir=str(settings.data_dir),
        key_serializer="raw",
        value_serializer="raw",
        # At least once, with derived ids; exactly_once is not used (see docs/eligibility.md).
        processing_guarantee="at_least_once",
        # Messages we send are produced now, not held until the source offset commits.
        stream_publish_on_commit=False,
        # Drain in-flight records and commit on shutdown.
        stream_wait_empty=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=settings.commit_interval_seconds,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
        broker_rebalance_timeout=max(settings.session_timeout_seconds, 10.0),
        producer_acks=-1,
        # faust's own topics on a one-node broker: no leader topic (we use no
        # app.timer(on_leader=True)), and replication factor from settings for
        # any changelog a future table would create.
        topic_disable_leader=True,
        topic_replication_factor=settings.topic_replication_factor,
        # The legacy aiohttp web server (port 6066) is not used: metrics have
        # their own endpoint and the API is gRPC.
        web_enabled=False,
        autodiscover=False,
        # TLS / SASL to the brokers, from the environment (subsidy/platform/security/kafka.py).
        **kafka_security.faust_config(),
    )


@dataclass
class Eligibility:
    """The running parts of the service and how records flow through them."""

    settings: Settings
    policy: Policy
    metrics: Metrics
    app: faust.App
    grpc: GrpcServer
    applications: Any = None  # faust topics
    decisions: Any = None
    dead_letters: Any = None
    agent: Any = None
    sink: Sink | None = None
    progress: Any = None  # subsidy.platform.metrics.ConsumerProgress
    in_flight: InFlight | None = None  # the running agent's
    #: The process (python -m subsidy.services.eligibility) exits hard this long after
    #: a crash if faust has not stopped by then; None in tests, which run the
    #: app inside pytest's own process.
    exit_after_crash_s: float | None = None
    _gave_up: bool = field(default=False, repr=False)
    _crash: Any = field(default=None, repr=False)
    _producer: Any = field(default=None, repr=False)
    _last_probe: float = field(default=float("-inf"), repr=False)
    _lag_keys: set = field(default_factory=set, repr=False)

    # -------------------------------------------------------------- flow
    async def submit(self, message: Any) -> tuple[Outcome, Awaitable[Any]]:
        """One consumed record (a faust Message): decide or dead-letter it and
        hand the result to the producer. Returns the outcome and the awaitable
        of the broker's acknowledgement; counting, logging and acknowledging
        the record wait for that (``delivered``)."""
        self.metrics.consumed.labels(message.topic).inc()
        self.metrics.kafka_consumed.labels(message.topic, CONSUMER).inc()
        outcome = processor.process(
            message.key,
            message.value,
            message.headers,
            policy=self.policy,
            origin=Origin(message.topic, message.partition, message.offset),
        )
        sink = self.sink or self._kafka_sink
        try:
            delivery = await sink(outcome.topic, outcome.key, outcome.value, outcome.headers)
        except Exception as exc:
            with logs.trace(outcome.trace_id):
                self._give_up(outcome, exc)
            await self._crash
            raise
        return outcome, delivery

    def delivered(self, sent: Sent) -> None:
        """The broker has the output of ``sent`` and of everything read before
        it: count and log it, and acknowledge its record to faust, which may
        now commit its offset."""
        outcome = sent.outcome
        with logs.trace(outcome.trace_id):
            self.metrics.produced.labels(outcome.topic).inc()
            self.metrics.kafka_produced.labels(outcome.topic, PRODUCER).inc()
            self._record(outcome)
        if self.progress is not None:
            self.progress.advanced()
        event = sent.event
        if event is not None:
            # What Stream.ack does (it is a coroutine; this runs in a future's callback).
            message = event.message
            last = event.ack()
            sensors = self.app.sensors
            if sent.stream is not None:
                sensors.on_stream_event_out(message.tp, message.offset, sent.stream, event)
            if last:
                sensors.on_message_out(message.tp, message.offset, message)

    def failed(self, sent: Sent, exc: BaseException) -> None:
        """The producer gave up on the output of ``sent``: crash rather than
        move past it, so its offset is never committed and it is processed
        again after the restart."""
        with logs.trace(sent.outcome.trace_id):
            self._give_up(sent.outcome, exc)

    def _give_up(self, outcome: Outcome, exc: BaseException) -> None:
        if self._gave_up:
            return
        self._gave_up = True
        log.critical("producing to %s failed; stopping", outcome.topic,
                     exc_info=(type(exc), exc, exc.__traceback__))
        # The failed record and those after it are never acknowledged, so
        # faust's wait for every stream to acknowledge what it took (at stop
        # and rebalance) would never end: stop without it. What was
        # acknowledged before the failure may still be committed.
        self.app.conf.stream_wait_empty = False
        self._crash = asyncio.ensure_future(self.app.crash(exc))
        # faust's shutdown after a crash can still wait on the producer or the
        # consumer for good (seen once in a full test run): the process must
        # end so that it is restarted, and exiting hard commits nothing more.
        if self.exit_after_crash_s is not None:
            exit_timer = threading.Timer(self.exit_after_crash_s, _exit_after_crash, (self.exit_after_crash_s,))
            exit_timer.daemon = True
            exit_timer.start()

    async def _kafka_sink(self, topic: str, key: bytes | None, value: bytes, headers: list) -> Awaitable[Any]:
        # The app's producer (acks=all), directly: ``Topic.send`` would go
        # through ``App.maybe_start_producer``, a mode ``stampede`` that yields
        # to the event loop three times per call -- a third of eligibility's
        # time per record on a busy machine (bench/eligibility.py).
        producer = self._producer
        if producer is None:
            producer = self._producer = await self.app.maybe_start_producer()
        # Appended to the producer's batch for the partition (key: credit
        # code, default partitioner, as Topic.send); the returned future
        # completes with the broker's acknowledgement.
        return await producer.send(topic, key, value, partition=None, timestamp=None, headers=headers)

    def _record(self, outcome: Outcome) -> None:
        if isinstance(outcome, Decided):
            d = outcome.decision
            self.metrics.decisions.labels(d.clause, d.outcome).inc()
            log.info(
                "decided application %s clause %s outcome %s", d.application_id, d.clause, d.outcome,
                extra=dict(trace_id=outcome.trace_id, **logs.fields(application_id=d.application_id, decision_id=d.decision_id,
                                  credit_code=d.credit_code, clause=d.clause, outcome=d.outcome,
                                  max_award_fen=d.max_award_fen)),
            )
            return
        assert isinstance(outcome, DeadLettered)
        origin = outcome.origin
        self.metrics.dead_letters.labels(origin.topic, processor.CONSUMER).inc()
        where = f"{origin.topic}/{origin.partition}@{origin.offset}"
        fields = dict(trace_id=outcome.trace_id, **logs.fields(source_topic=origin.topic, source_partition=origin.partition,
                             source_offset=origin.offset, dead_letter_topic=outcome.topic,
                             application_id=outcome.application_id, error=outcome.error))
        if outcome.unexpected:
            exc = outcome.exception
            log.error("dead-lettered %s after an unexpected failure: %s", where, outcome.error,
                      exc_info=(type(exc), exc, exc.__traceback__) if exc else None, extra=fields)
        else:
            log.warning("dead-lettered %s: %s", where, outcome.error, extra=fields)

    # ------------------------------------------------------------ health
    def consumer_running(self) -> bool:
        app = self.app
        if not app.started or app.should_stop:
            return False
        consumer = app.consumer
        return consumer.started and not consumer.should_stop

    def not_ready_reason(self) -> str | None:
        if self.policy is None:
            return "no policy loaded"
        if not self.consumer_running():
            return "faust consumer not running"
        if self.progress is not None:
            return self.progress.stall_reason()
        return None

    def ready(self) -> bool:
        return self.not_ready_reason() is None

    async def probe(self) -> None:
        """Every few seconds (from the gRPC server's readiness task): the
        broker's end offsets of the assigned partitions, minus the committed
        offsets, as ``subsidy_kafka_consumer_lag``; an answer counts as the
        consumer having polled and reached the broker."""
        if self.progress is None or not self.consumer_running():
            return
        now = self.progress.clock()
        if now - self._last_probe < self.progress.stall_s / 3 and now - self._last_probe < 5.0:
            return
        self._last_probe = now
        consumer = self.app.consumer
        try:
            assigned = set(consumer.assignment())
        except Exception:  # noqa: BLE001 - not yet subscribed
            assigned = set()
        if not assigned:
            # A group member waiting for partitions: running is all we can tell.
            self.progress.polled()
            self.progress.broker_answered(0)
            return
        try:
            ends = await asyncio.wait_for(consumer.highwaters(*assigned), timeout=5.0)
        except Exception as exc:  # noqa: BLE001 - the broker does not answer: health shows it
            log.debug("lag probe failed: %s", exc)
            return
        total = 0
        current = set()
        for tp in assigned:
            end = ends.get(tp)
            done = consumer._committed_offset.get(tp)  # noqa: SLF001 - faust keeps no public accessor
            if done is None:
                read = consumer._read_offset.get(tp)  # noqa: SLF001
                done = read + 1 if read is not None else None
            if end is None or done is None:
                continue
            lag = max(0, int(end) - int(done))
            total += lag
            key = (tp.topic, str(tp.partition), self.settings.app_id)
            shared_metrics.KAFKA_LAG.labels(*key).set(lag)
            current.add(key)
        for key in self._lag_keys - current:
            with contextlib.suppress(KeyError):
                shared_metrics.KAFKA_LAG.remove(*key)
        self._lag_keys = current
        self.progress.polled(0 if total == 0 else 1)
        self.progress.broker_answered(total)

    # ------------------------------------------------------------ worker
    def worker(self, loglevel: str | None = None, **kwargs: Any) -> faust.Worker:
        """The faust Worker running the gRPC server and the app (in that start
        order; stopped in reverse: the consumer drains and commits first,
        then gRPC stops with its grace period). It handles SIGTERM/SIGINT."""
        return faust.Worker(
            self.app,
            self.grpc,
            loglevel=loglevel or self.settings.log_level,
            quiet=True,
            redirect_stdouts=False,
            override_logging=False,  # subsidy.platform.logs JSON lines stay in place
            **kwargs,
        )


def create_app(
    settings: Settings | None = None,
    *,
    policy: Policy | None = None,
    registry: CollectorRegistry | None = None,
    sink: Sink | None = None,
) -> Eligibility:
    """Build the service. Raises PolicyError (naming file and field) when the
    policy is malformed; nothing is started and nothing is connected here."""
    settings = settings or Settings.from_env()
    policy = policy if policy is not None else load_policy(settings.policy_dir)
    metrics = Metrics(registry)
    app = faust.App(settings.app_id, **faust_settings(settings))

    def raw_topic(spec: topics.TopicSpec, **extra: Any) -> Any:
        return app.topic(spec.name, key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw", **extra)

    service = Eligibility(settings=settings, policy=policy, metrics=metrics, app=app, grpc=None,  # type: ignore[arg-type]
                          sink=sink, progress=shared_metrics.ConsumerProgress(CONSUMER, settings.stall_seconds))
    # allow_empty: a tombstone reaches the agent (and the DLQ) instead of being skipped.
    service.applications = raw_topic(topics.APPLICATIONS, allow_empty=True)
    service.decisions = raw_topic(topics.DECISIONS)
    service.dead_letters = raw_topic(topics.APPLICATIONS_DLQ)

    async def decide(stream: faust.StreamT) -> None:
        # Only moves bytes: everything else is Eligibility.submit / delivered /
        # processor.process. Acks are manual: a record is acknowledged (and its
        # offset may be committed) only when InFlight says the broker has its
        # output and that of every record read before it.
        manual = stream.noack()
        in_flight = service.in_flight = InFlight(settings.max_in_flight, service.delivered, service.failed)
        async for event in manual.events():
            outcome, delivery = await service.submit(event.message)
            await in_flight.add(event, outcome, delivery, manual)

    service.agent = app.agent(service.applications, name="decide", concurrency=1)(decide)
    service.grpc = GrpcServer(
        settings.grpc_address, policy, ready=service.ready, grace_seconds=settings.grpc_grace_seconds,
        probe=service.probe,
    )
    return service
