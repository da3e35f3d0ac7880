"""Eligibility on Kafka: the faust-streaming app, its one agent, and how the
agent acknowledges records to faust.

The agent reads ``subsidy.applications.v1`` as a raw stream (bytes keys and
values: decoding is the handler's, so a record that does not decode becomes
a dead letter instead of something faust skips), concurrency 1, with
faust's automatic acknowledgement off (``stream.noack()``). For each event:

1. ``Eligibility.submit`` hands the message to the handler
   (``handlers.Handler``: record in, ``Decided`` out, or ``RecordRejected``
   raised -- the shape of every kafka-python consumer's handler), turns a
   rejection into a dead letter with the shared encoding
   (``subsidy.platform.dead_letters.encode``), and gives the output to the
   producer without waiting for the broker;
2. ``InFlight.add`` keeps it, in the order the records were read, and makes
   reading wait while ``max_in_flight`` outputs are unacknowledged;
3. ``InFlight.acknowledge`` (a task beside the reading loop) takes them in
   that order as the broker acknowledges them, and for each
   ``Eligibility.delivered`` counts and logs it and acknowledges its record
   to faust with faust's own ``Stream.ack``.

Delivery: **at least once**. A record is acknowledged to faust only once the
broker has acknowledged its output *and the output of every record read
before it*, so faust, which commits the offsets of acknowledged records
(every ``commit_interval_seconds`` and at shutdown), never commits past a
record whose decision or dead letter the broker does not have. Outputs are
**pipelined**: up to ``max_in_flight`` are with the producer at once,
instead of one broker round trip per record. The first output the producer
gives up on stops the flow (nothing after it is acknowledged) and crashes
the app; so does any unexpected error in the reading loop, rather than let
faust's supervisor restart the agent with records still in flight. After a
crash the uncommitted tail is processed again and lands on the same
**derived ids** (decision id = application id @ policy version, dead letter
id = eligibility:topic/partition/offset). faust's ``exactly_once``
processing guarantee is deliberately not used; which faust features are
unsafe here and the settings that keep them off:
docs/adr/0011-faust-in-eligibility.md.

``Eligibility.worker()`` is the faust Worker running the app and the gRPC
server; subsidy/services/eligibility/bootstrap.py composes and runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import os
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust

from subsidy.contracts import cloudevents, topics
from subsidy.core.domain import Decision
from subsidy.core.policy import Policy
from subsidy.platform import dead_letters, kafka_clients, logs
from subsidy.platform import metrics as shared_metrics
from subsidy.platform.security import kafka as kafka_security
from subsidy.services.eligibility import handlers
from subsidy.services.eligibility.adapters.grpc import GrpcServer
from subsidy.services.eligibility.config import Settings
from subsidy.services.eligibility.handlers import Decided, Rejected
from subsidy.services.eligibility.metrics import CONSUMER, PRODUCER, Metrics
from subsidy.services.eligibility.shadow import agree

log = logging.getLogger("subsidy.eligibility")

#: One actor: faust's ``concurrency=n`` makes n actors take turns on one
#: shared queue, so two records of one partition (one firm) would be decided
#: and produced concurrently, out of order -- and the payout ledger applies
#: caps in order.
AGENT_CONCURRENCY = 1

#: (topic, key, value, headers) -> once the producer has taken the record: an
#: awaitable that completes when the broker has acknowledged it, or raises if
#: it never will.
Sink = Callable[[str, "bytes | None", bytes, list], Awaitable[Awaitable[Any]]]


@dataclass(frozen=True, slots=True)
class DeadLettered:
    """A record given up on: its dead letter, and what the log line needs.
    ``unexpected`` when the record was fine by the contract but handling it
    failed (a bug), with the ``exception``."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    trace_id: str
    source: tuple[str, int, int]  # topic, partition, offset it was read at
    error: str
    unexpected: bool = False
    application_id: str | None = None
    exception: BaseException | None = field(default=None, compare=False)


Outcome = Decided | DeadLettered


@dataclass(slots=True, eq=False)
class Sent:
    """One source record whose output is with the producer."""

    event: Any  # the faust Event it was read as (acknowledged once delivered)
    outcome: Outcome
    delivery: asyncio.Future[Any]


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

    ``acknowledge(delivered, failed)`` runs beside the reading loop and calls
    ``delivered(sent)`` for each in that order, and only once the broker has
    acknowledged it and everything before it: acknowledging the source record
    there means an offset is never acknowledged to faust (and so never
    committed) while an earlier record of its partition still waits. The
    first delivery that fails calls ``failed(sent, exc)`` and stops the flow
    for good: nothing after it is delivered (acknowledged) any more, and
    ``add`` and ``drained`` raise the error.

    ``add`` waits while ``limit`` outputs are in flight (back-pressure).
    ``close`` says nothing more will be added: ``acknowledge`` returns once
    what is in flight is delivered. (It is not cancelled with the reading
    loop: records handed over must still be acknowledged, or faust's wait for
    every stream to acknowledge what it took, at a rebalance or at stop,
    would never end.)"""

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._queue: deque[Sent] = deque()
        self._pending = asyncio.Event()  # something to acknowledge, or closed: wakes `acknowledge`
        self._changed = asyncio.Event()  # room, empty or failed: wakes `add` and `drained`
        self._closed = False
        self.failure: BaseException | None = None

    def __len__(self) -> int:
        return len(self._queue)

    async def add(self, event: Any, outcome: Outcome, delivery: Awaitable[Any]) -> None:
        if self.failure is not None:
            raise self.failure
        queue = self._queue
        queue.append(Sent(event, outcome, asyncio.ensure_future(delivery)))
        if len(queue) == 1:
            self._pending.set()
        while len(queue) >= self.limit and self.failure is None:
            self._changed.clear()
            await self._changed.wait()
        if self.failure is not None:
            raise self.failure

    def close(self) -> None:
        self._closed = True
        self._pending.set()

    async def drained(self) -> None:
        """Until every output handed over is delivered; raises if one failed."""
        while self._queue and self.failure is None:
            self._changed.clear()
            await self._changed.wait()
        if self.failure is not None:
            raise self.failure

    async def acknowledge(
        self, delivered: Callable[[Sent], Awaitable[None]], failed: Callable[[Sent, BaseException], None]
    ) -> None:
        queue = self._queue
        while True:
            if not queue:
                if self._closed:
                    return
                self._pending.clear()
                await self._pending.wait()
                continue
            head = queue[0].delivery
            if not head.done():
                # asyncio.wait, not `await head`: cancelling this task must
                # not cancel the producer's future.
                await asyncio.wait((head,))
            # The broker acknowledges a batch at once: every future done in
            # order from the head is delivered in this one turn.
            while queue and queue[0].delivery.done():
                sent = queue[0]
                error = (
                    asyncio.CancelledError("delivery cancelled")
                    if sent.delivery.cancelled()
                    else sent.delivery.exception()
                )
                if error is None:
                    queue.popleft()
                    try:
                        await delivered(sent)
                    except Exception as exc:  # noqa: BLE001 - a bug in counting/acking: stop, do not skip
                        error = exc
                if error is not None:
                    self.failure = error
                    self._changed.set()
                    # Later outputs may fail too: their errors are this one's
                    # consequence, reported once, by `failed`.
                    for later in queue:
                        later.delivery.add_done_callback(_retrieve)
                    failed(sent, error)
                    return
            self._changed.set()


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def faust_settings(settings: Settings) -> dict[str, Any]:
    """faust App configuration for our broker and our guarantees (each unsafe
    feature and why it is off: docs/adr/0011-faust-in-eligibility.md)."""
    return dict(
        broker=settings.broker_urls,
        # No tables, so no changelog and no table recovery; the memory store
        # keeps faust away from RocksDB.
        store="memory://",
        datadir=str(settings.data_dir),
        key_serializer="raw",
        value_serializer="raw",
        # At least once, with derived ids; not exactly_once (ADR 0003 and 0011).
        processing_guarantee="at_least_once",
        # Messages we send are produced now, not held until the source offset commits.
        stream_publish_on_commit=False,
        # Drain in-flight records and commit on shutdown and at a rebalance.
        stream_wait_empty=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=settings.commit_interval_seconds,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
        broker_rebalance_timeout=max(settings.session_timeout_seconds, 10.0),
        producer_acks=-1,
        # Batching and compression as every producer of ours
        # (subsidy/platform/kafka_clients.py; aiokafka's linger is 0 by default).
        **kafka_clients.faust_producer_tuning(),
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


class App(faust.App):
    """faust's App, but a rebalance that reaches a stopping app leaves the
    consumer to its own shutdown.

    faust's ``App._on_rebalance_when_stopped`` calls ``consumer.close()``,
    which for aiokafka schedules the consumer's ``client.close()`` and
    ``coordinator.close()`` on the app's event loop -- they belong to the
    consumer thread's loop. Seen when SIGTERM came while the worker was
    still starting: the consumer subscribed and joined the group during the
    stop, the assignment arrived, and after that close either the LeaveGroup
    failed ("Connection ... closed") or the consumer thread never finished
    stopping, so the process hung until it was killed (the e2e SIGTERM test;
    4 of 160 stops in the reproduction, none of 80 with this override:
    docs/adr/0011-faust-in-eligibility.md).
    Doing nothing here is safe: the stop that is under way stops the
    consumer thread, whose ``AIOKafkaConsumer.stop()`` closes the coordinator
    (leaving the group) and the client on their own loop."""

    def _on_rebalance_when_stopped(self) -> None:
        log.info("a rebalance reached the consumer while stopping; its own stop closes it")


def faust_app(settings: Settings) -> App:
    return App(settings.app_id, **faust_settings(settings))


def raw_topic(app: faust.App, spec: topics.TopicSpec, **extra: Any) -> Any:
    """A topic of bytes keys and values: faust does not decode anything."""
    return app.topic(spec.name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw", **extra)


@dataclass
class Eligibility:
    """The running parts of the service and how records flow through them."""

    settings: Settings
    policy: Policy
    metrics: Metrics
    app: faust.App
    handler: Callable[[Any], Decided]  # handlers.Handler
    clock: Callable[[], dt.datetime] = handlers.utc_now
    grpc: GrpcServer | None = None
    applications: Any = None  # the faust topic the agent reads
    agent: Any = None
    sink: Sink | None = None
    progress: Any = None  # subsidy.platform.metrics.ConsumerProgress
    #: With shadow evaluation on: the running difference (subsidy/services/eligibility/shadow.py).
    shadow_tally: Any = None
    in_flight: InFlight | None = None  # the running agent's
    #: The process (python -m subsidy.services.eligibility) exits hard this long after
    #: a crash if faust has not stopped by then; None in tests, which run the
    #: app inside pytest's own process.
    exit_after_crash_s: float | None = None
    _gave_up: bool = field(default=False, repr=False)
    _crash: Any = field(default=None, repr=False)
    _acknowledging: Any = field(default=None, repr=False)
    _producer: Any = field(default=None, repr=False)
    _last_probe: float = field(default=float("-inf"), repr=False)
    #: faust finished its first rebalance: the consumer has joined the group
    #: and has its partitions (see ``consumer_running``).
    _joined: bool = field(default=False, repr=False)
    _lag_keys: set = field(default_factory=set, repr=False)

    # -------------------------------------------------------------- flow
    def install_agent(self) -> Any:
        """The agent, over ``self.applications``, registered with the app,
        and the receiver of the app's first ``on_rebalance_complete``."""
        self.agent = self.app.agent(self.applications, name="decide", concurrency=AGENT_CONCURRENCY)(self.decide)
        self.app.on_rebalance_complete.connect(self._rebalance_completed)
        return self.agent

    async def _rebalance_completed(self, sender: Any, **kwargs: Any) -> None:
        self._joined = True

    async def decide(self, stream: faust.StreamT) -> None:
        """The agent: reads, hands over, and leaves acknowledging to
        ``InFlight.acknowledge`` (see the module docstring)."""
        events = stream.noack()
        in_flight = self.in_flight = InFlight(self.settings.max_in_flight)
        # Not awaited here: it ends by itself once `close` was called and
        # everything handed over is acknowledged, or at the first failure.
        # Held, because the event loop keeps only a weak reference to a task.
        self._acknowledging = asyncio.ensure_future(
            in_flight.acknowledge(functools.partial(self.delivered, events), self.failed)
        )
        try:
            async for event in events.events():
                outcome, delivery = await self.submit(event.message)
                await in_flight.add(event, outcome, delivery)
        except Exception as exc:
            # A produce given up on was reported by `failed`; anything else is
            # a bug here. Either way the app stops: faust's supervisor would
            # restart the agent, and records read after the unacknowledged
            # ones could then be acknowledged and committed past them.
            self._give_up("the agent failed", exc)
            await self._crash
            raise
        finally:
            in_flight.close()

    async def submit(self, message: Any) -> tuple[Outcome, Awaitable[Any]]:
        """One consumed record (a faust Message): decide or dead-letter it and
        hand the result to the producer. Returns the outcome and the awaitable
        of the broker's acknowledgement; counting, logging and acknowledging
        the record wait for that (``delivered``)."""
        self.metrics.consumed.labels(message.topic).inc()
        self.metrics.kafka_consumed.labels(message.topic, CONSUMER).inc()
        try:
            outcome: Outcome = self.handler(message)
        except Exception as exc:  # noqa: BLE001 - the handler is pure: what failed once fails again, so never retry
            outcome = self.dead_letter(message, exc)
        sink = self.sink or self._kafka_sink
        shadow = outcome.shadow if isinstance(outcome, Decided) else None
        topic = outcome.topic
        try:
            delivery = await sink(outcome.topic, outcome.key, outcome.value, outcome.headers)
            if shadow is not None:
                # The shadow decision to its own topic only, after the adopted
                # one; the record is acknowledged once the broker has both.
                topic = shadow.topic
                shadow_delivery = await sink(shadow.topic, shadow.key, shadow.value, shadow.headers)
                delivery = asyncio.gather(delivery, shadow_delivery)
        except Exception as exc:
            with logs.trace(outcome.trace_id):
                self._give_up(f"producing to {topic} failed", exc)
            await self._crash
            raise
        return outcome, delivery

    def dead_letter(self, message: Any, exc: Exception) -> DeadLettered:
        """The dead letter of a record the handler rejected (or failed on)."""
        if isinstance(exc, Rejected):
            error, unexpected, application_id = exc.error, exc.unexpected, exc.application_id
            cause = exc.__cause__ if unexpected else None
        elif isinstance(exc, dead_letters.RecordRejected):
            error, unexpected, application_id, cause = str(exc), False, None, None
        else:
            error = f"handling failed unexpectedly: {type(exc).__name__}: {exc}"
            unexpected, application_id, cause = True, None, exc
        trace_id = cloudevents.trace_id_of(dead_letters.header_list(message.headers)) or cloudevents.new_trace_id()
        letter = dead_letters.encode(
            message,
            error,
            dlq_topic=topics.APPLICATIONS_DLQ.name,
            consumer=CONSUMER,
            source=handlers.SOURCE,
            trace_id=trace_id,
            now=self.clock(),
        )
        return DeadLettered(
            topic=letter.topic,
            key=letter.key,
            value=letter.value,
            headers=letter.headers,
            trace_id=trace_id,
            source=(message.topic, message.partition, message.offset),
            error=error,
            unexpected=unexpected,
            application_id=application_id,
            exception=cause,
        )

    async def delivered(self, stream: Any, sent: Sent) -> None:
        """The broker has the output of ``sent`` and of everything read before
        it: count and log it, and acknowledge its record to faust
        (``Stream.ack``: the event's reference count drops, its offset
        becomes committable, faust's sensors are told)."""
        outcome = sent.outcome
        with logs.trace(outcome.trace_id):
            self.metrics.produced.labels(outcome.topic).inc()
            self.metrics.kafka_produced.labels(outcome.topic, PRODUCER).inc()
            self._record(outcome)
        if self.progress is not None:
            self.progress.advanced()
        await stream.ack(sent.event)

    def failed(self, sent: Sent, exc: BaseException) -> None:
        """The producer gave up on the output of ``sent``: crash rather than
        move past it, so its offset is never committed and it is processed
        again after the restart."""
        with logs.trace(sent.outcome.trace_id):
            self._give_up(f"producing to {sent.outcome.topic} failed", exc)

    def _give_up(self, what: str, exc: BaseException) -> None:
        if self._gave_up:
            return
        self._gave_up = True
        log.critical("%s; stopping", what, exc_info=(type(exc), exc, exc.__traceback__))
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

    async def publish_redecisions(self, decisions: Sequence[Decision]) -> list[Decision]:
        """The re-decisions of an adoption on subsidy.decisions.v1
        (handlers.redecided: stamped for review, derived ids), returned once
        the broker has acknowledged every one (acks=all). Raises when one
        cannot be produced: the caller says so, and publishing them again is
        harmless (the same ids)."""
        sink = self.sink or self._kafka_sink
        workflow = getattr(self.handler, "workflow", None)
        records = [handlers.redecided(d, now=self.clock(), workflow=workflow) for d in decisions]
        deliveries = []
        for record in records:
            deliveries.append(await sink(record.topic, record.key, record.value, record.headers))
        await asyncio.gather(*deliveries)
        for record in records:
            d = record.decision
            self.metrics.redecisions.labels(d.clause, d.outcome).inc()
            with logs.trace(record.trace_id):
                log.info(
                    "re-decision published",
                    extra=logs.fields(
                        application_id=d.application_id,
                        decision_id=d.decision_id,
                        supersedes_decision_id=d.supersedes_decision_id,
                        policy_version=d.policy_version,
                        outcome=d.outcome,
                        max_award_fen=d.max_award_fen,
                        review_required=d.review_required,
                    ),
                )
        return [record.decision for record in records]

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

    def _record_shadow(self, outcome: Decided) -> None:
        d = outcome.decision
        if outcome.shadow_error is not None:
            self.metrics.shadow_failures.labels(d.clause).inc()
            log.error(
                "the shadow version failed on application %s: %s",
                d.application_id,
                outcome.shadow_error,
                extra=dict(trace_id=outcome.trace_id, **logs.fields(application_id=d.application_id)),
            )
            return
        shadow = outcome.shadow
        if shadow is None:
            return
        self.metrics.produced.labels(shadow.topic).inc()
        self.metrics.kafka_produced.labels(shadow.topic, PRODUCER).inc()
        tally = self.shadow_tally
        agreed = tally.record(d, shadow.decision) if tally is not None else agree(d, shadow.decision)
        self.metrics.shadow_decisions.labels(d.clause, "agree" if agreed else "differ").inc()
        if not agreed:
            log.info(
                "shadow version decides application %s differently: %s %s -> %s %s",
                d.application_id,
                d.outcome,
                d.max_award_fen,
                shadow.decision.outcome,
                shadow.decision.max_award_fen,
                extra=dict(
                    trace_id=outcome.trace_id,
                    **logs.fields(
                        application_id=d.application_id,
                        clause=d.clause,
                        shadow_decision_id=shadow.decision.decision_id,
                    ),
                ),
            )

    def _record(self, outcome: Outcome) -> None:
        if isinstance(outcome, Decided):
            d = outcome.decision
            self.metrics.decisions.labels(d.clause, d.outcome).inc()
            self._record_shadow(outcome)
            log.info(
                "decided application %s clause %s outcome %s",
                d.application_id,
                d.clause,
                d.outcome,
                extra=dict(
                    trace_id=outcome.trace_id,
                    **logs.fields(
                        application_id=d.application_id,
                        decision_id=d.decision_id,
                        credit_code=d.credit_code,
                        clause=d.clause,
                        outcome=d.outcome,
                        max_award_fen=d.max_award_fen,
                    ),
                ),
            )
            return
        source_topic, partition, offset = outcome.source
        self.metrics.dead_letters.labels(source_topic, CONSUMER).inc()
        where = f"{source_topic}/{partition}@{offset}"
        fields = dict(
            trace_id=outcome.trace_id,
            **logs.fields(
                source_topic=source_topic,
                source_partition=partition,
                source_offset=offset,
                dead_letter_topic=outcome.topic,
                application_id=outcome.application_id,
                error=outcome.error,
            ),
        )
        if outcome.unexpected:
            exc = outcome.exception
            log.error(
                "dead-lettered %s after an unexpected failure: %s",
                where,
                outcome.error,
                exc_info=(type(exc), exc, exc.__traceback__) if exc else None,
                extra=fields,
            )
        else:
            log.warning("dead-lettered %s: %s", where, outcome.error, extra=fields)

    # ------------------------------------------------------------ health
    def consumer_running(self) -> bool:
        """Started, not stopping, and in the group. faust's services say
        "started" as soon as they begin starting, seconds before the
        consumer has subscribed and joined; SERVING then would invite a stop
        into the middle of the start (the join then runs during the
        shutdown, and the rebalance reaches a stopping app)."""
        app = self.app
        if not self._joined or not app.started or app.should_stop:
            return False
        consumer = app.consumer
        return consumer.started and not consumer.should_stop

    def not_ready_reason(self) -> str | None:
        if self.policy is None:
            return "no policy loaded"
        if not self.consumer_running():
            return "faust consumer not running" if self._joined else "faust consumer has not joined the group yet"
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
            done = consumer._committed_offset.get(tp)
            if done is None:
                read = consumer._read_offset.get(tp)
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
