"""The transactional outbox's relay, shared by intake and payout.

A service writes each event into its outbox table in the same transaction as
the change it announces; ``OutboxRelay`` (its own thread, kafka-python,
``enable_idempotence=True``, ``acks='all'``) publishes the unpublished rows in
id order and marks them published once the broker acknowledged them:

- one batch at a time: read up to ``batch_size`` rows, send them all
  (pipelined: the producer batches them into few requests), then wait for
  the acknowledgements together, and mark the acknowledged rows in one
  transaction;
- only a prefix of the batch counts: a row after a failed one is not marked
  and goes out again with the next batch, so the order of the outbox is the
  order on Kafka;
- while Kafka (or the database) is down the service keeps writing (rows pile
  up) and the relay retries with exponential backoff, logging each failure;
- delivery is at least once: a crash between the acknowledgement and the
  mark re-publishes rows, and every consumer skips an event it has seen;
- a row the broker refuses for good (kafka-python's MessageSizeTooLargeError —
  also raised by ``send`` for a record over the producer's
  ``max_request_size`` —, RecordListTooLargeError, InvalidRecordError) would
  otherwise be retried forever with every later row behind it: it is
  **parked** instead (``parked_at``, ``parked_reason``, in the transaction
  that marks the prefix before it), counted in
  ``subsidy_outbox_parked_total{store,reason}``, logged at ERROR, and the rows
  after it go on. A parked row is neither pending nor published;
- no wait is unbounded: a send neither acknowledged nor failed within the
  producer's delivery timeout (plus a margin) counts as failed, and after any
  Kafka failure the producer is closed and a new one made. kafka-python's
  idempotent producer was seen, after a hard broker restart, to leave a
  batch's futures pending for good (fault seed 1: intake accepted
  applications that were never published); a new producer, with a new
  producer id, delivers them.

The table access is the store's: ``relay_batch(publish, limit)``. The table
itself is the service's too, created by its migrations (the outbox is in the
baseline revision of intake and of payout: subsidy.platform.migrations).
``OutboxTable`` is that access for a table of the usual shape, with the
PostgreSQL turn-taking of several replicas (a transaction-scoped advisory
lock per batch, so only one relay publishes at a time and rows go out in id
order).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from subsidy.core.dates import rfc3339
from subsidy.platform import kafka_clients, logs
from subsidy.platform import metrics as shared
from subsidy.platform import topics as platform_topics
from subsidy.platform.db import Database, Transaction
from subsidy.platform.security import kafka as kafka_security
from subsidy.platform.worker import WorkerThread

#: What a relay's ``publish`` answers: the acknowledged ids (a prefix of the
#: rows, in order) and the error that stopped the batch, if any.
Published = tuple[list[int], "BaseException | None"]


#: Beyond the producer's delivery timeout, how long a send may stay undecided
#: before the relay counts the producer as stuck.
ACK_MARGIN_S = 15.0


class ProducerStuck(RuntimeError):
    """A send neither acknowledged nor failed long after its delivery timeout."""


#: kafka-python errors that no retry can cure for this record.
PERMANENT_RECORD_ERRORS = ("MessageSizeTooLargeError", "RecordTooLargeError", "RecordListTooLargeError")


def is_permanent_record_error(exc: BaseException) -> bool:
    """The broker (or the producer's own size check) refuses this record for good."""
    from kafka.errors import InvalidRecordError

    return isinstance(exc, InvalidRecordError) or any(
        cls.__name__ in PERMANENT_RECORD_ERRORS for cls in type(exc).__mro__
    )


class RecordRejected(Exception):
    """Publishing stopped at row ``row_id``, which Kafka refuses for good: the
    table parks it (with ``reason``) instead of raising."""

    def __init__(self, row_id: int, cause: BaseException):
        self.row_id = row_id
        self.cause = cause
        self.reason = f"{type(cause).__name__}: {cause}"[:500]
        super().__init__(f"outbox row {row_id} rejected permanently: {self.reason}")


def _is_kafka_failure(exc: BaseException) -> bool:
    from kafka.errors import KafkaError

    return isinstance(exc, (KafkaError, ProducerStuck))


class OutboxStore(Protocol):
    def relay_batch(self, publish: Callable[[list[Any]], Published], limit: int = 100) -> int | None:
        """Publish one batch of pending rows in id order with ``publish`` and
        mark the acknowledged ones; the number marked, or None when another
        replica's relay holds the turn. Raises the publish error after marking."""

    def pending_count(self) -> int: ...


def encode_headers(headers: Iterable[tuple[str, bytes]]) -> str:
    # CloudEvents header values are ASCII text; JSON keeps the table readable.
    return json.dumps([[k, v.decode("utf-8")] for k, v in headers], ensure_ascii=False)


def enqueue(tx: Transaction, table: str, messages: Iterable[OutboxMessage], at: str) -> None:
    """Write ``messages`` into a service's outbox ``table`` (the columns of
    OutboxTable plus a unique ``event_id``) inside the caller's transaction, so
    they commit or roll back with the state they report; an event id already
    there is kept once (a replayed input derives the same ids)."""
    if not table.isidentifier():
        raise ValueError(f"not a table name: {table!r}")
    for m in messages:
        tx.execute(
            f"INSERT INTO {table} (event_id, topic, key, value, headers, created_at) "  # nosec B608 - identifier checked
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
            (m.event_id, m.topic, m.key, m.value, encode_headers(m.headers), at),
        )


def decode_headers(text: str) -> list[tuple[str, bytes]]:
    return [(k, v.encode("utf-8")) for k, v in json.loads(text)]


def rfc3339_now() -> str:
    return rfc3339(dt.datetime.now(dt.UTC))


@dataclasses.dataclass(frozen=True)
class OutboxMessage:
    """An event as a service writes it into its outbox table, in the
    transaction of the change it announces; the relay publishes it."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    #: The derived id the table is unique on (payout's ``payout_outbox.event_id``:
    #: a repeated write enqueues nothing). Intake's outbox has no such column:
    #: the application row written with it is what is unique there.
    event_id: str = ""


@dataclasses.dataclass(frozen=True)
class OutboxRow:
    id: int
    topic: str
    key: bytes
    value: bytes
    headers: list
    created_at: str


class OutboxTable:
    """The relay's access to an outbox table with the columns (id, topic, key,
    value, headers, created_at, published_at).

    ``write`` runs a unit of work in a committed transaction (default: one
    transaction of its own; intake passes its group commit so that the marks
    share the commits of the submissions). On PostgreSQL a batch is read,
    published and marked in ONE transaction holding the advisory lock
    ``lock_key``: several replicas take turns and rows go out in id order."""

    def __init__(
        self,
        db: Database,
        table: str,
        lock_key: int,
        write: Callable[[Callable[[Transaction], Any]], Any] | None = None,
    ):
        if not table.isidentifier():
            raise ValueError(f"not a table name: {table!r}")
        self.db = db
        self.table = table
        self.lock_key = lock_key
        self._write = write or self._own_transaction

    def _own_transaction(self, work: Callable[[Transaction], Any]) -> Any:
        with self.db.transaction() as tx:
            return work(tx)

    def _pending(self, tx: Transaction, limit: int) -> list[OutboxRow]:
        return [
            OutboxRow(int(r[0]), r[1], bytes(r[2]), bytes(r[3]), decode_headers(r[4]), r[5])
            for r in tx.all(
                f"SELECT id, topic, key, value, headers, created_at FROM {self.table} "  # nosec B608 - identifier checked
                "WHERE published_at IS NULL AND parked_at IS NULL ORDER BY id LIMIT ?",
                (limit,),
            )
        ]

    def _mark(self, tx: Transaction, ids: Sequence[int], at: str) -> None:
        if ids:
            marks = ", ".join("?" for _ in ids)
            tx.execute(
                f"UPDATE {self.table} SET published_at = ? "  # nosec B608 - identifier checked
                f"WHERE published_at IS NULL AND id IN ({marks})",
                [at, *ids],
            )

    def _park(self, tx: Transaction, rejected: RecordRejected, at: str) -> None:
        tx.execute(
            f"UPDATE {self.table} SET parked_at = ?, parked_reason = ? "  # nosec B608 - identifier checked
            "WHERE id = ? AND published_at IS NULL AND parked_at IS NULL",
            (at, rejected.reason, rejected.row_id),
        )

    def _settle(self, tx: Transaction, acked: Sequence[int], error: BaseException | None, at: str) -> None:
        self._mark(tx, acked, at)
        if isinstance(error, RecordRejected):
            self._park(tx, error, at)

    def pending(self, limit: int = 100) -> list[OutboxRow]:
        with self.db.transaction() as tx:
            return self._pending(tx, limit)

    def mark_published(self, ids: Sequence[int], at: str) -> None:
        if ids:
            self._write(lambda tx: self._mark(tx, ids, at))

    def relay_batch(self, publish: Callable[[list[OutboxRow]], Published], limit: int = 100) -> int | None:
        at = rfc3339_now()
        if self.db.dialect == "postgresql":
            with self.db.transaction() as tx:
                if not tx.one("SELECT pg_try_advisory_xact_lock(?)", (self.lock_key,))[0]:
                    return None
                rows = self._pending(tx, limit)
                if not rows:
                    return 0
                acked, error = publish(rows)
                self._settle(tx, acked, error, at)
        else:
            # SQLite: one writer at a time anyway; do not hold its lock while Kafka answers.
            rows = self.pending(limit)
            if not rows:
                return 0
            acked, error = publish(rows)
            if acked or isinstance(error, RecordRejected):
                self._write(lambda tx: self._settle(tx, acked, error, at))
        if error is not None and not isinstance(error, RecordRejected):
            raise error
        return len(acked)

    def pending_count(self) -> int:
        with self.db.transaction() as tx:
            return int(tx.one(f"SELECT COUNT(*) FROM {self.table} WHERE published_at IS NULL AND parked_at IS NULL")[0])  # nosec B608

    def stats(self) -> tuple[int, str | None]:
        """(unpublished rows, created_at of the oldest of them or None) — for the metrics."""
        with self.db.transaction() as tx:
            count, oldest = tx.one(
                f"SELECT COUNT(*), MIN(created_at) FROM {self.table} "  # nosec B608 - identifier checked
                "WHERE published_at IS NULL AND parked_at IS NULL"
            )
        return int(count), oldest


class OutboxRelay(WorkerThread):
    """Publishes ``store``'s outbox (see the module doc), on its own thread. ``service`` names it
    in metrics (``<service>-relay`` producer label), the thread and the Kafka
    client id; ``published`` and ``failures`` are the service's counters."""

    def __init__(
        self,
        store: OutboxStore,
        bootstrap: str,
        *,
        service: str,
        published: Any,
        failures: Any,
        log: logging.Logger | None = None,
        batch_size: int = 500,
        poll_interval: float = 0.5,
        max_backoff: float = 10.0,
        delivery_timeout_ms: int = 30000,
        ensure_topics: Callable[[str], Any] = platform_topics.ensure_all,
        producer_factory: Callable[[], Any] | None = None,
    ):
        self.store = store
        self.bootstrap = bootstrap
        self.service = service
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.delivery_timeout_ms = delivery_timeout_ms
        super().__init__(f"{service}-outbox-relay", log or logging.getLogger(f"subsidy.services.{service}.relay"))
        self._published = published
        self._failures = failures
        self._producer_label = f"{service}-relay"
        self._ensure_topics = ensure_topics
        self._producer_factory = producer_factory or self._new_producer
        self._producer: Any = None
        self._rejected: RecordRejected | None = None
        self._replace_producer = False
        self.topics_ready = threading.Event()
        self.producer_ready = threading.Event()
        #: monotonic time publishing started failing (None: the last attempt worked).
        self.failing_since: float | None = None

    # -- lifecycle (start, wake: rows were just written, stop: WorkerThread) ---

    @property
    def running(self) -> bool:
        return self.producer_ready.is_set() and not self._stop.is_set()

    def healthy(self, stall_s: float, now: float | None = None) -> bool:
        """The producer runs and publishing has not been failing for ``stall_s``."""
        now = time.monotonic() if now is None else now
        return self.running and (self.failing_since is None or now - self.failing_since < stall_s)

    def not_ready_reason(self, stall_s: float) -> str | None:
        """What a service's health says of its relay when it is not ``healthy``."""
        if self.healthy(stall_s):
            return None
        return "outbox relay: Kafka producer not running or publishing failing"

    # -- the loop ------------------------------------------------------------

    def _new_producer(self) -> Any:
        from kafka import KafkaProducer

        return KafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=f"subsidy-{self.service}-relay",
            enable_idempotence=True,
            acks="all",
            max_block_ms=5000,
            request_timeout_ms=10000,
            delivery_timeout_ms=self.delivery_timeout_ms,
            retry_backoff_ms=200,
            reconnect_backoff_max_ms=2000,
            bootstrap_timeout_ms=5000,
            **kafka_clients.producer_tuning(),
            **kafka_security.client_config(),
        )

    def _run(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            try:
                if not self.topics_ready.is_set():
                    self._ensure_topics(self.bootstrap)
                    self.topics_ready.set()
                    self.log.info("kafka topics ready", extra=logs.fields(bootstrap=self.bootstrap))
                if self._producer is None:
                    self._producer = self._producer_factory()
                    self.producer_ready.set()
                    self.log.info("outbox relay producer running", extra=logs.fields(bootstrap=self.bootstrap))
                published = self.publish_once()
                backoff = 0.0
                self.failing_since = None
                if not published:
                    self._wake.wait(self.poll_interval)
                    self._wake.clear()
            except Exception as exc:  # noqa: BLE001 - Kafka or the db is down: retry, never crash
                self._failures.inc()
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                backoff = min(self.max_backoff, backoff * 2 if backoff else 0.25)
                pending = None
                with contextlib.suppress(Exception):  # the database may be what is down
                    pending = self.store.pending_count()
                replace_producer = self._producer is not None and _is_kafka_failure(exc)
                self.log.warning(
                    "outbox relay: publishing failed, retrying",
                    extra=logs.fields(
                        error=f"{type(exc).__name__}: {exc}"[:300],
                        retry_in_s=backoff,
                        pending=pending,
                        new_producer=replace_producer,
                    ),
                )
                if replace_producer:
                    self._close_producer()
                self._stop.wait(backoff)
        self._close_producer(timeout=2)
        self.producer_ready.clear()

    def _close_producer(self, timeout: float = 0) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=timeout)
            except Exception:
                self.log.warning("outbox relay: closing the producer failed", exc_info=True)

    def _wait(self, future: Any, deadline: float) -> BaseException | None | bool:
        """None acknowledged, an exception failed, False still pending at stop."""
        while not future.is_done:
            if self._stop.is_set():
                return False
            if time.monotonic() > deadline:
                return ProducerStuck(
                    f"no acknowledgement and no error {self.delivery_timeout_ms / 1000 + ACK_MARGIN_S:.0f}s"
                    " after sending"
                )
            with contextlib.suppress(Exception):  # a wait timeout, or the failure read below
                future.get(timeout=0.2)
        return future.exception

    def publish(self, rows: list[OutboxRow]) -> Published:
        """Send every row, then wait for the acknowledgements together: the
        acknowledged prefix, and the error that ended it (if any)."""
        futures: list[Any] = []
        error: BaseException | None = None
        for row in rows:
            try:
                futures.append(self._producer.send(row.topic, key=row.key, value=row.value, headers=row.headers))
            except Exception as exc:  # noqa: BLE001 - e.g. metadata not available within max_block_ms
                error = RecordRejected(row.id, exc) if is_permanent_record_error(exc) else exc
                break
        self._rejected = error if isinstance(error, RecordRejected) else None
        acked: list[int] = []
        # Every send was handed to the producer by now: each is acknowledged
        # or failed within its delivery timeout, unless the producer is stuck.
        deadline = time.monotonic() + self.delivery_timeout_ms / 1000 + ACK_MARGIN_S
        for row, future in zip(rows, futures):
            outcome = self._wait(future, deadline)
            if outcome is not None:
                if outcome is not False and is_permanent_record_error(outcome):
                    outcome = RecordRejected(row.id, outcome)
                    # the producer's sequence state is not to be trusted after a rejected batch
                    self._replace_producer = True
                error = error or (outcome if outcome is not False else RuntimeError("relay stopping"))
                break  # only a prefix counts: the rest goes out again, in order
            acked.append(row.id)
        self._count(rows[: len(acked)])
        if isinstance(error, RecordRejected):
            self._rejected = error
        return acked, error

    def _count(self, rows: Sequence[OutboxRow]) -> None:
        if not rows:
            return
        now = dt.datetime.now(dt.UTC)
        delay = shared.OUTBOX_PUBLISH_DELAY.labels(self.service)
        for row in rows:
            delay.observe(shared.age_seconds(row.created_at, now))
        for topic, count in collections.Counter(row.topic for row in rows).items():
            shared.KAFKA_PRODUCED.labels(topic, self._producer_label).inc(count)

    def publish_once(self) -> int:
        """One batch; the number acknowledged, plus one for a parked row (0:
        nothing to do, or another replica's turn). Raises when a send failed
        (not for good), after marking the rest."""
        self._rejected = None
        published = self.store.relay_batch(self.publish, self.batch_size)
        if published:
            self._published.inc(published)
            self.log.info("outbox published", extra=logs.fields(events=published))
        rejected, self._rejected = self._rejected, None
        if rejected is not None:  # parked by now (committed with the marks)
            shared.OUTBOX_PARKED.labels(self.service, type(rejected.cause).__name__).inc()
            self.log.error(
                "outbox relay: Kafka refuses the row for good; parked, the rows after it go on",
                extra=logs.fields(outbox_id=rejected.row_id, error=rejected.reason[:300]),
            )
            if self._replace_producer:
                self._replace_producer = False
                self._close_producer()
            return (published or 0) + 1  # progress: no poll wait before the next batch
        return published or 0
