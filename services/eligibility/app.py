"""The eligibility service, wired: the one composition root.

``create_app(settings, policy=..., registry=...)`` builds, without starting
anything,

- a faust-streaming app (id ``subsidy-eligibility``) whose one agent reads
  ``subsidy.applications.v1`` as raw bytes, concurrency 1, and hands each
  record to ``Eligibility.handle``: ``processor.process`` (pure) says what to
  produce, ``handle`` logs, counts and produces it, waiting for the broker's
  acknowledgement before the next record;
- the gRPC server (``grpc_api.GrpcServer``), started and stopped with the
  faust worker in the same event loop;
- the Prometheus counters (``metrics.Metrics``).

``Eligibility.worker()`` returns the faust Worker that runs both;
``services/eligibility/__main__.py`` loads settings and policy, creates the
topics and runs it.

Delivery: at least once. Offsets are committed (every
``commit_interval_seconds``) only for records whose output the broker has
acknowledged; after a crash the uncommitted tail is processed again and lands
on the same derived ids (decision id = application id @ policy version, dead
letter id = consumer:topic/partition/offset). faust's ``exactly_once``
processing guarantee is deliberately not used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import faust
from prometheus_client import CollectorRegistry

from services.eligibility import processor
from services.eligibility.config import Settings
from services.eligibility.grpc_api import GrpcServer
from services.eligibility.metrics import CONSUMER, PRODUCER, Metrics
from subsidy import metrics as shared_metrics
from services.eligibility.processor import Decided, DeadLettered, Origin, Outcome
from subsidy import kafka_security, logs, topics
from subsidy.policy import Policy, load_policy

log = logging.getLogger("subsidy.eligibility")

#: (topic, key, value, headers) -> once the broker has the record.
Sink = Callable[[str, "bytes | None", bytes, list], Awaitable[None]]


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
        # TLS / SASL to the brokers, from the environment (subsidy/kafka_security.py).
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
    progress: Any = None  # subsidy.metrics.ConsumerProgress
    _stopping: bool = field(default=False, repr=False)
    _last_probe: float = field(default=float("-inf"), repr=False)
    _lag_keys: set = field(default_factory=set, repr=False)

    # -------------------------------------------------------------- flow
    async def handle(self, message: Any) -> Outcome:
        """One consumed record (a faust Message): decide or dead-letter it,
        produce the result, wait for the broker, then count and log it."""
        self.metrics.consumed.labels(message.topic).inc()
        self.metrics.kafka_consumed.labels(message.topic, CONSUMER).inc()
        outcome = processor.process(
            message.key,
            message.value,
            message.headers,
            policy=self.policy,
            origin=Origin(message.topic, message.partition, message.offset),
        )
        with logs.trace(outcome.trace_id):
            await self._produce(outcome)
            self._record(outcome)
        if self.progress is not None:
            self.progress.advanced()
        return outcome

    async def _produce(self, outcome: Outcome) -> None:
        sink = self.sink or self._kafka_sink
        try:
            await sink(outcome.topic, outcome.key, outcome.value, outcome.headers)
        except Exception as exc:
            # The record is not acknowledged: crash rather than move past it,
            # so its offset is never committed and it is processed again.
            log.critical("producing to %s failed; stopping", outcome.topic, exc_info=True)
            await self.app.crash(exc)
            raise
        self.metrics.produced.labels(outcome.topic).inc()
        self.metrics.kafka_produced.labels(outcome.topic, PRODUCER).inc()

    async def _kafka_sink(self, topic: str, key: bytes | None, value: bytes, headers: list) -> None:
        channel = self.decisions if topic == self.decisions.get_topic_name() else self.dead_letters
        delivered = await channel.send(key=key, value=value, headers=headers, force=True)
        await delivered  # the broker's acknowledgement (acks=all)

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
            override_logging=False,  # subsidy.logs JSON lines stay in place
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
        # Only moves bytes: everything else is Eligibility.handle / processor.process.
        async for event in stream.events():
            await service.handle(event.message)

    service.agent = app.agent(service.applications, name="decide", concurrency=1)(decide)
    service.grpc = GrpcServer(
        settings.grpc_address, policy, ready=service.ready, grace_seconds=settings.grpc_grace_seconds,
        probe=service.probe,
    )
    return service
