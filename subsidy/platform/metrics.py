"""The metrics every service shares, defined once so names and labels are
identical everywhere (docs/metrics.md is the catalogue), plus the pieces that
feed them:

- ``GrpcMetricsInterceptor``: a grpc.aio server interceptor counting every
  RPC by service, method and status code and timing the unary ones;
- ``ConsumerProgress`` and ``stall_reason``: when a Kafka consumer last
  polled, last advanced, last reached the broker, and whether that counts as
  stalled (a pure function of timestamps, so health is testable in
  milliseconds);
- ``refresh_kafka_lag``: consumer lag of a kafka-python consumer from the
  broker's end offsets minus the consumer's positions;
- ``serve_http``: the /metrics endpoint of a service.

Label values never carry personal data: topics, consumer and producer names,
partitions, gRPC method names, clauses, outcomes, statuses and channels only
(never credit codes, application ids, names or contacts).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from subsidy.platform.grpc.wrap import wrap_handler

log = logging.getLogger("subsidy.platform.metrics")

_GRPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_DELAY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


def metric(
    kind: type,
    name: str,
    documentation: str,
    labels: Iterable[str] = (),
    registry: CollectorRegistry | None = None,
    **kwargs: Any,
) -> Any:
    """Create a metric, or return the one already registered under that name
    (two services' modules in one process, a test building a service twice)."""
    registry = REGISTRY if registry is None else registry
    try:
        return kind(name, documentation, tuple(labels), registry=registry, **kwargs)
    except ValueError:
        names = registry._names_to_collectors
        existing = names.get(name) or names.get(f"{name}_total")
        if existing is None:
            raise
        return existing


# -- gRPC ------------------------------------------------------------------------------------
GRPC_HANDLED = metric(
    Counter,
    "subsidy_grpc_server_handled",
    "RPCs completed on the server, by gRPC service, method and status code (health and reflection included).",
    ("grpc_service", "grpc_method", "grpc_code"),
)
GRPC_SECONDS = metric(
    Histogram,
    "subsidy_grpc_server_handling_seconds",
    "Time from receiving an RPC to its status, by gRPC service and method (health checks and reflection not included).",
    ("grpc_service", "grpc_method"),
    buckets=_GRPC_BUCKETS,
)

# -- Kafka -------------------------------------------------------------------------------------
KAFKA_CONSUMED = metric(
    Counter,
    "subsidy_kafka_messages_consumed",
    "Kafka records handed to a consumer's handler, by topic and consumer.",
    ("topic", "consumer"),
)
KAFKA_PRODUCED = metric(
    Counter,
    "subsidy_kafka_messages_produced",
    "Kafka records produced and acknowledged by the broker, by topic and producer.",
    ("topic", "producer"),
)
KAFKA_LAG = metric(
    Gauge,
    "subsidy_kafka_consumer_lag",
    "Records in a partition not yet processed by the group: end offset minus the consumer's position "
    "(committed offset for faust), refreshed every few seconds.",
    ("topic", "partition", "group"),
)
DEAD_LETTERS = metric(
    Counter,
    "subsidy_dead_letters",
    "Messages a consumer could not process, sent to the dead-letter topic, by source topic and consumer.",
    ("topic", "consumer"),
)
CONSUMER_UNEXPECTED_ERRORS = metric(
    Counter,
    "subsidy_consumer_unexpected_errors",
    "Handler failures that were neither a rejection nor a known transient error (a bug or an unforeseen "
    "record): each is retried, then the record is dead-lettered.",
    ("consumer", "error"),
)
KAFKA_CONSUMER_HUNG_CALLS = metric(
    Counter,
    "subsidy_kafka_consumer_hung_calls",
    "kafka-python calls (poll, commit, lag) that had not returned after a minute; the stack is logged.",
    ("consumer", "call"),
)
KAFKA_CONSUMER_RESTARTS = metric(
    Counter,
    "subsidy_kafka_consumer_restarts",
    "Kafka consumers closed and created anew because the member was stuck (reason: unassigned, starved).",
    ("consumer", "reason"),
)
LAST_PROGRESS = metric(
    Gauge,
    "subsidy_consumer_last_progress_timestamp_seconds",
    "Unix time a consumer last made progress: processed a record, or polled with nothing to do.",
    ("consumer",),
)

# -- outbox ------------------------------------------------------------------------------------------
OUTBOX_DEPTH = metric(Gauge, "subsidy_outbox_depth", "Outbox rows not yet published to Kafka, by store.", ("store",))
OUTBOX_OLDEST_AGE = metric(
    Gauge,
    "subsidy_outbox_oldest_pending_age_seconds",
    "Age of the oldest unpublished outbox row (0 when none is pending), by store.",
    ("store",),
)
OUTBOX_PARKED = metric(
    Counter,
    "subsidy_outbox_parked_total",
    "Outbox rows the broker rejected permanently (too large, invalid), parked and skipped, by store and reason.",
    ("store", "reason"),
)
OUTBOX_PUBLISH_DELAY = metric(
    Histogram,
    "subsidy_outbox_publish_delay_seconds",
    "Time from an outbox row's creation to the broker's acknowledgement of it, by store.",
    ("store",),
    buckets=_DELAY_BUCKETS,
)

# -- database ------------------------------------------------------------------------------------------
DB_TRANSACTION_SECONDS = metric(
    Histogram,
    "subsidy_db_transaction_duration_seconds",
    "Time spent in one database transaction, commit included, by store and outcome (commit, rollback).",
    ("store", "outcome"),
)


# ============================================================================ gRPC interceptor

_UNTIMED_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)


def split_method(full_method: str) -> tuple[str, str]:
    """'/subsidy.v1.IntakeService/SubmitApplication' -> ('subsidy.v1.IntakeService', 'SubmitApplication')."""
    _, _, rest = full_method.partition("/")
    service, _, method = rest.partition("/")
    return service or "unknown", method or "unknown"


def _code_name(context: Any, failed: BaseException | None) -> str:
    code = None
    try:
        code = context.code()
    except Exception:  # noqa: BLE001 - older grpcio: no code() on the aio context
        code = None
    if code is None:
        if failed is None:
            return "OK"
        if isinstance(failed, Exception) and type(failed).__name__ == "AbortError":
            return "UNKNOWN"
        return "CANCELLED" if isinstance(failed, BaseException) and not isinstance(failed, Exception) else "UNKNOWN"
    if hasattr(code, "name"):
        return code.name
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status.name
    return "UNKNOWN"


class GrpcMetricsInterceptor(grpc.aio.ServerInterceptor):
    """grpc.aio server interceptor: ``grpc.aio.server(interceptors=[GrpcMetricsInterceptor()])``.

    Unknown methods (no handler) are not counted, so a caller cannot create
    label values at will."""

    async def intercept_service(self, continuation: Callable, handler_call_details: Any) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        service, method = split_method(handler_call_details.method)
        timed = service not in _UNTIMED_SERVICES
        handled = GRPC_HANDLED
        seconds = GRPC_SECONDS.labels(service, method) if timed else None

        def done(context: Any, started: float, failed: BaseException | None) -> None:
            handled.labels(service, method, _code_name(context, failed)).inc()
            if seconds is not None:
                seconds.observe(time.perf_counter() - started)

        @contextlib.asynccontextmanager
        async def counted(request: Any, context: Any) -> Any:
            started = time.perf_counter()
            try:
                yield
            except BaseException as exc:
                done(context, started, exc)
                raise
            done(context, started, None)

        return wrap_handler(handler, counted)


# ========================================================================= consumer progress


def stall_reason(
    now: float,
    *,
    started: float,
    last_poll: float | None,
    last_advance: float | None,
    last_broker_contact: float | None,
    lag: int,
    stall_s: float,
) -> str | None:
    """Why a consumer counts as stalled at ``now``, or None when it is making
    progress. All times are seconds on one clock (monotonic in the services).

    - it must have polled within ``stall_s`` (a loop blocked in a handler, or
      stuck retrying, stops polling);
    - it must have reached the broker within ``stall_s`` (kafka-python's poll
      returns nothing, quietly, while the broker is down);
    - when there is lag, it must have advanced (processed a record) within
      ``stall_s``: polling in a retry loop without moving is not progress.

    A consumer gets ``stall_s`` from ``started`` before any of this counts.
    """
    if now - started < stall_s:
        return None
    if last_poll is None or now - last_poll > stall_s:
        return f"not polled within {stall_s:.0f}s"
    if last_broker_contact is None or now - last_broker_contact > stall_s:
        return f"no answer from the Kafka broker within {stall_s:.0f}s"
    if lag > 0 and (last_advance is None or now - last_advance > stall_s):
        return f"lag of {lag:d} records and no progress within {stall_s:.0f}s"
    return None


class ConsumerProgress:
    """What one consumer loop reports about itself (thread-safe enough: plain
    float assignments), and the gauge ``subsidy_consumer_last_progress_timestamp_seconds``."""

    def __init__(
        self,
        consumer: str,
        stall_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ):
        self.consumer = consumer
        self.stall_s = stall_s
        self.clock = clock
        self.wall = wall
        self.started = clock()
        self.last_poll: float | None = None
        self.last_advance: float | None = None
        self.last_broker_contact: float | None = None
        self.lag = 0
        self._gauge = LAST_PROGRESS.labels(consumer)

    def restart(self) -> None:
        self.started = self.clock()

    def polled(self, records: int = 0) -> None:
        self.last_poll = self.clock()
        if records == 0 and self.lag == 0:
            # Nothing to do counts as being up to date.
            self._gauge.set(self.wall())

    def advanced(self) -> None:
        self.last_advance = self.clock()
        self._gauge.set(self.wall())

    def broker_answered(self, lag: int | None = None) -> None:
        self.last_broker_contact = self.clock()
        if lag is not None:
            self.lag = lag

    def stall_reason(self, now: float | None = None) -> str | None:
        return stall_reason(
            self.clock() if now is None else now,
            started=self.started,
            last_poll=self.last_poll,
            last_advance=self.last_advance,
            last_broker_contact=self.last_broker_contact,
            lag=self.lag,
            stall_s=self.stall_s,
        )

    @property
    def healthy(self) -> bool:
        return self.stall_reason() is None


class Hold:
    """A test hook: while held, a consumer loop stops polling (as if it hung)."""

    def __init__(self) -> None:
        self._held = threading.Event()

    def hold(self) -> None:
        self._held.set()

    def release(self) -> None:
        self._held.clear()

    def wait_while_held(self, stop: threading.Event) -> None:
        while self._held.is_set() and not stop.is_set():
            stop.wait(0.05)


def refresh_kafka_lag(consumer: Any, group: str, progress: ConsumerProgress, known: set, timeout_ms: int = 2000) -> int:
    """Set ``subsidy_kafka_consumer_lag`` for a kafka-python consumer's
    assigned partitions (end offset minus position) and tell ``progress``
    the broker answered. Runs in the consumer's own thread (KafkaConsumer is
    not thread-safe). Raises when the broker does not answer — and when the
    consumer has no partitions assigned: no offset requests are made then
    (not while a rebalance is settling), and a member that stays without
    partitions is not making progress, which health then reports."""
    assigned = set(consumer.assignment())
    if not assigned:
        raise RuntimeError("no partitions assigned")
    ends = consumer.end_offsets(list(assigned), timeout_ms=timeout_ms)
    total = 0
    current = set()
    for tp in assigned:
        end = ends.get(tp)
        if end is None:
            continue
        try:
            position = consumer.position(tp, timeout_ms=timeout_ms)
        except Exception:  # noqa: BLE001 - no position yet (just assigned)
            position = None
        if position is None:
            continue
        lag = max(0, int(end) - int(position))
        total += lag
        key = (tp.topic, str(tp.partition), group)
        KAFKA_LAG.labels(*key).set(lag)
        current.add(key)
    for key in known - current:
        with contextlib.suppress(KeyError):
            KAFKA_LAG.remove(*key)
    known.clear()
    known.update(current)
    progress.broker_answered(total)
    return total


def clear_lag(known: set) -> None:
    for key in known:
        with contextlib.suppress(KeyError):
            KAFKA_LAG.remove(*key)
    known.clear()


# ================================================================================= helpers


def age_seconds(rfc3339: str | None, now: dt.datetime | None = None) -> float:
    """Seconds since an RFC 3339 UTC timestamp as the stores write it (0 for None)."""
    if not rfc3339:
        return 0.0
    moment = dt.datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    now = now or dt.datetime.now(dt.UTC)
    return max(0.0, (now - moment).total_seconds())


def serve_http(address: str, registry: CollectorRegistry | None = None) -> Any:
    """Start the /metrics endpoint on ``host:port`` (None when empty or 'off').
    ``_created`` series are turned off: they double every counter's series
    and no dashboard uses them."""
    if not address or address.lower() == "off":
        return None
    from prometheus_client import disable_created_metrics, start_http_server

    disable_created_metrics()
    host, _, port = address.rpartition(":")
    return start_http_server(int(port), host or "127.0.0.1", registry=registry or REGISTRY)


def start_endpoint(address: str, log: logging.Logger) -> Any:
    """``serve_http``, or None with a warning when the address cannot be
    bound: a service without its /metrics still does its work."""
    try:
        return serve_http(address)
    except OSError as exc:
        log.warning("metrics endpoint not started", extra={"fields": {"address": address, "error": str(exc)}})
        return None


def stop_endpoint(endpoint: Any) -> None:
    """Stop what ``start_endpoint`` started (nothing for None)."""
    if endpoint is not None:
        server, _thread = endpoint
        server.shutdown()
        server.server_close()
