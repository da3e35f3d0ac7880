"""The Kafka consumer loop of every kafka-python consumer in the services
(intake's two projections, payout's decisions and payments, notify): one
thread per consumer, one copy of the delicate parts.

Per poll:

1. handle each record (the service's ``handler``, inside the record's trace);
   a handler that raises one of ``rejects`` has the record sent to the
   dead-letter topic as a ``subsidy.v1.DeadLetter`` (built by
   subsidy/platform/dead_letters.py, the one encoding eligibility's faust
   agent uses too), counted and logged, and the partition moves on;
2. commit the batch's offsets in **one** commit, after every record of it was
   handled. At least once: a crash before the commit replays the batch, which
   the handlers make harmless (inbox, event ids, the notification log). A
   commit that fails is retried before the next poll. Before a rebalance
   takes partitions away it is tried in the listener; kafka-python 3.0
   refuses a blocking commit there (the listener runs on its I/O thread), so
   what it could not commit is committed after the join for the partitions
   that came back, whose positions kafka-python keeps;
3. on any other failure (database or DLQ down, a commit refused by a
   rebalance), commit what was handled, seek every partition still ours back
   to its first unhandled record, and retry with backoff: nothing polled is
   skipped.

Batch scope (optional, ``batch_scope``, with an optional ``batch_prelude``
that sees every record of the poll first): step 1 runs inside one context
manager per poll, e.g. one database transaction for the whole batch (one
fsync instead of one per record). Its records count as handled only once the
scope has exited without an exception; a scope that fails (an error inside,
a commit refused) leaves none of its offsets to commit, and every partition
still ours is rewound to the batch's first record: the whole batch is redone
(the handlers' idempotence makes that harmless). Dead letters of records
rejected inside the scope are sent after it exited successfully, so a batch
that fails and is redone does not dead-letter its records twice; they are
sent before the offsets are committed (a DLQ that is down fails the poll, and
the batch is redone: at least once). A stop asked for in the middle of a
batch ends it at the record being handled, and what was handled is kept.

Failures the handler did not foresee (issue 17: a poison message never
stalls a partition). A handler's exception is one of three kinds:

- one of ``rejects`` (``RecordRejected``): the record is dead-lettered at once;
- transient (``TRANSIENT`` plus the consumer's own ``transient`` types: the
  database, the broker, the network, the registry): retried with backoff for
  as long as it lasts, nothing skipped; health shows the outage;
- anything else is a bug or a record nobody foresaw. It is retried
  ``max_attempts`` times (a race between replicas passes on a retry), then
  the record is dead-lettered with the error ("unexpected error in N
  attempts: ...") so the partition moves on; counted in
  ``subsidy_consumer_unexpected_errors_total`` and logged with the traceback.

Adaptive batching (issue 18, ADR 0022). kafka-python 3 spends about
1.2-1.6 ms of CPU on every fetch round, records or not (a request built for
every partition, hand-offs between the caller and its I/O thread, the
response parsed). With the fetch defaults a fetch returns as soon as one
record is there, so a trickle of records costs a fetch round per producer
batch: one loop alone used 19% of a core at 150 records/s
(bench/kafka_consumer.py), more than most handlers spend on the records.
The loop therefore polls at most every ``min_poll_interval_s`` (20 ms)
while records keep coming in polls that do not fill ``max_poll_records``:
the records of those 20 ms come in one or two fetches and are handled in
one batch (one transaction, one commit). A poll that fills ``max_poll_records`` is
followed at once (a backlog drains at full speed), and an idle loop waits
in the broker's long poll as before, so an idle consumer costs nothing
more. The price is at most 20 ms per hop while records flow.

Self-healing. A kafka-python member can stop receiving records without
raising anything: left without partitions after a rebalance, or with lag
that polls no longer return. When either lasts past its limit the loop closes
the consumer and creates a new one (counted in
``subsidy_kafka_consumer_restarts_total``, logged at WARNING); the group then
reassigns from the committed offsets. Assignments and revocations are logged,
so the history of a member is in the service's log.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager as ContextManager
from typing import Any

from subsidy.contracts import cloudevents
from subsidy.platform import dead_letters, kafka_clients, logs
from subsidy.platform import metrics as shared

# Handlers raise it from here; it lives with the shared dead-letter encoding.
from subsidy.platform.dead_letters import RecordRejected
from subsidy.platform.security import kafka as kafka_security

log = logging.getLogger("subsidy.platform.consumer")


#: Shorter than kafka-python's 45 s: after a kill -9 the group waits this long
#: for the dead member before handing its partitions to the next one.
DEFAULT_SESSION_TIMEOUT_MS = 15_000
#: kafka-python's consumer default is 305 s: a SyncGroup or OffsetCommit
#: whose answer never comes would hold the member that long. 30 s is ample
#: on any network the services run on (JoinGroup gets its own, longer limit).
DEFAULT_REQUEST_TIMEOUT_MS = 30_000
#: While records flow in polls that do not fill ``max_poll_records``, the
#: loop polls at most this often: the module doc, "Adaptive batching".
MIN_POLL_INTERVAL_S = 0.02
#: A consumer call (poll, commit, offsets) that has not returned after this
#: long is reported with the thread's stack: kafka-python bounds all of them
#: by far shorter timeouts, so one that hangs is a client bug to diagnose.
HUNG_CALL_S = 60.0


def _transient_errors() -> tuple[type[BaseException], ...]:
    """The failures of what surrounds a handler, which pass by themselves."""
    import sqlite3

    from kafka.errors import KafkaError

    from subsidy.platform.db import DatabaseUnavailable
    from subsidy.platform.registry import RegistryUnavailable

    found: list[type[BaseException]] = [
        OSError,  # ConnectionError, TimeoutError, socket errors
        KafkaError,
        DatabaseUnavailable,
        RegistryUnavailable,
        sqlite3.OperationalError,  # "database is locked"
    ]
    try:
        import psycopg
    except ImportError:  # pragma: no cover - PostgreSQL support not installed
        pass
    else:
        found += [psycopg.OperationalError, psycopg.InterfaceError]
    return tuple(found)


TRANSIENT: tuple[type[BaseException], ...] = _transient_errors()


class _Stopping(Exception):
    pass


class KafkaRecordLoop:
    """A kafka-python consumer in its own thread; see the module docstring."""

    def __init__(
        self,
        name: str,
        handler: Callable[[Any], str],
        bootstrap: str,
        *,
        topics: Iterable[str],
        group_id: str,
        dlq_topic: str,
        source: str,
        rejects: tuple[type[BaseException], ...] = (RecordRejected,),
        transient: tuple[type[BaseException], ...] = (),
        max_attempts: int = 5,
        client_id: str | None = None,
        consumer_config: Mapping[str, Any] | None = None,
        max_poll_records: int = 100,
        commit_timeout_ms: int = 10_000,
        commit_interval_s: float = 1.0,
        min_poll_interval_s: float = MIN_POLL_INTERVAL_S,
        max_backoff: float = 10.0,
        stall_s: float = 60.0,
        rejoin_after_s: float | None = None,
        consumer_factory: Callable[[], Any] | None = None,
        producer_factory: Callable[[], Any] | None = None,
        batch_scope: Callable[[], ContextManager[Any]] | None = None,
        batch_prelude: Callable[[list[Any]], None] | None = None,
        clock: Callable[[], dt.datetime] | None = None,
    ):
        self.name = name
        #: The dead letters' ``failed_at`` and ``ce_time`` (injected, so tests can pin them).
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.handler = handler
        self.batch_scope = batch_scope
        #: Inside the batch scope, before any record of the poll: e.g. lock
        #: every firm of the batch in one global order (payout), so two
        #: members' batches cannot deadlock over firms taken in poll order.
        self.batch_prelude = batch_prelude
        #: Inside a batch scope: (record, error, trace id) of the records rejected, sent once it exited.
        self._rejected: list[tuple[Any, str, str | None]] | None = None
        self.bootstrap = bootstrap
        self.topics = tuple(topics)
        self.group_id = group_id
        self.dlq_topic = dlq_topic
        self.source = source
        self.rejects = rejects
        self.transient = TRANSIENT + tuple(transient)
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.max_attempts = max_attempts
        #: (topic, partition, offset) -> (failed attempts, last error) of records
        #: whose handler raised an unexpected error; cleared when one succeeds.
        self._attempts: dict[tuple[str, int, int], tuple[int, str]] = {}
        #: The record whose handler raised an unexpected error just now.
        self._failed_record: tuple[str, int, int] | None = None
        self.client_id = client_id or name
        self.consumer_config = dict(consumer_config or {})
        self.max_poll_records = max_poll_records
        self.commit_timeout_ms = commit_timeout_ms
        #: Offsets are committed at most this often (0: after every poll).
        #: A commit is a synchronous round trip and a write to
        #: __consumer_offsets; under load a poll brings a handful of records,
        #: so committing each poll's costs the broker more than the records
        #: do. Safe because every handler is idempotent: a member killed
        #: between commits redoes at most this much, and a rebalance, a stop
        #: and an idle poll commit what is pending.
        self.commit_interval_s = commit_interval_s
        self._committed_at = 0.0
        self.min_poll_interval_s = min_poll_interval_s
        #: progress.clock() time before which the next poll waits (0: poll at once).
        self._next_poll_at = 0.0
        self.max_backoff = max_backoff
        # Health: when it last polled, advanced, reached the broker (subsidy/platform/metrics.py).
        self.progress = shared.ConsumerProgress(name, stall_s)
        self.lag_interval_s = min(5.0, stall_s / 3)
        # A rebalance normally settles within a session timeout or two; a
        # member without partitions for longer than this is stuck, not waiting.
        self.consumer_config.setdefault("session_timeout_ms", DEFAULT_SESSION_TIMEOUT_MS)
        self.consumer_config.setdefault("request_timeout_ms", DEFAULT_REQUEST_TIMEOUT_MS)
        session_s = self.consumer_config["session_timeout_ms"] / 1000
        self.rejoin_after_s = rejoin_after_s if rejoin_after_s is not None else max(stall_s / 2, 3 * session_s)
        # A member that has not had a single partition since it was created
        # is not waiting for a rebalance to settle: its first join takes well
        # under a session timeout. Two are the limit (once seen in CI: a
        # first SyncGroup answered never; the test waited 33 s, in vain).
        self.first_assignment_within_s = min(self.rejoin_after_s, 2 * session_s)
        #: Test hook: hold() stops the loop polling, as if it hung.
        self.hold = shared.Hold()
        self._consumer_factory = consumer_factory or self._new_consumer
        self._producer_factory = producer_factory or self._new_producer
        self._consumer: Any = None
        self._producer: Any = None
        self._created_at = 0.0
        self._unassigned_since: float | None = None
        self._assigned_once = False
        #: The partitions the rebalance listener announced as ours (None: not
        #: tracked, a consumer built without the loop's listener). kafka-python
        #: 3.0.12 was seen to complete a second join within a second of the
        #: first and hold its partitions without ever announcing them: no
        #: position, no fetch, lag 0, health SERVING, nothing consumed
        #: (tests/e2e/test_whole_pipeline.py, once in two runs on 2 cores).
        self._announced: set | None = None
        self._last_records_at = 0.0
        self._last_lag_refresh = float("-inf")
        self._lag_keys: set = set()
        #: Offsets after records handled but not yet committed, per partition.
        self._uncommitted: dict[Any, int] = {}
        #: Those of partitions revoked before they could be committed: committed
        #: after the join if the partitions come back (partitions_announced).
        self._revoked_uncommitted: dict[Any, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.consuming = threading.Event()
        #: (name, since) of the consumer call the loop is inside, for the watchdog.
        self._in_call: tuple[str, float] | None = None
        self.hung_call_s = HUNG_CALL_S
        self._watchdog: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"consumer-{self.name}", daemon=True)
        self._thread.start()
        self._watchdog = threading.Thread(target=self._watch, name=f"consumer-{self.name}-watchdog", daemon=True)
        self._watchdog.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning(
                    "consumer did not stop in time; leaving it (daemon thread)",
                    extra=logs.fields(consumer=self.name, timeout_s=timeout),
                )

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep for a handler's retry; True when the service is stopping."""
        return self._stop.wait(seconds)

    @property
    def running(self) -> bool:
        return self.consuming.is_set() and not self._stop.is_set() and bool(self._thread and self._thread.is_alive())

    # -- clients -------------------------------------------------------------------------

    def _new_consumer(self) -> Any:
        from kafka import KafkaConsumer

        config = dict(
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            client_id=self.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.max_poll_records,
            bootstrap_timeout_ms=5000,
            reconnect_backoff_max_ms=2000,
        )
        config.update(self.consumer_config)
        consumer = KafkaConsumer(**config, **kafka_security.client_config())
        # The topics' metadata before joining: a member elected group leader
        # without it assigns no partitions ("No partition metadata for
        # topic"), rejoins when the metadata arrives, and that second
        # SyncGroup was seen never to complete, leaving the member idle.
        for topic in self.topics:
            consumer.partitions_for_topic(topic)
        consumer.subscribe(list(self.topics), listener=_LoggingRebalanceListener(self))
        self._announced = set()
        return consumer

    def _new_producer(self) -> Any:
        from kafka import KafkaProducer

        return KafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=f"{self.client_id}-dlq",
            enable_idempotence=True,
            acks="all",
            max_block_ms=5000,
            bootstrap_timeout_ms=5000,
            **kafka_clients.producer_tuning(),
            **kafka_security.client_config(),
        )

    def _open(self) -> None:
        self._announced = None
        self._consumer = self._consumer_factory()
        now = self.progress.clock()
        self._created_at = now
        self._last_records_at = now
        self._unassigned_since = None
        self._assigned_once = False
        self.consuming.set()
        log.info("consuming", extra=logs.fields(consumer=self.name, topics=list(self.topics), group=self.group_id))

    def _close_consumer(self) -> None:
        consumer, self._consumer = self._consumer, None
        self._uncommitted.clear()  # the group's next owner resumes from the committed offsets
        if consumer is not None:
            try:
                consumer.close(autocommit=False)
            except Exception:
                log.warning("closing a Kafka consumer failed", exc_info=True, extra=logs.fields(consumer=self.name))

    # -- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            try:
                if self._consumer is None:
                    self._open()
                self.hold.wait_while_held(self._stop)
                self._poll_once()
                backoff = 0.0
                self._refresh_lag()
                self._restart_if_stuck()
            except _Stopping:
                break
            except Exception as exc:  # noqa: BLE001 - db, DLQ or a rebalance: retry, never crash
                if self._stop.is_set():
                    break  # a handler's wait interrupted by the stop
                self._count_unexpected(exc)
                backoff = min(self.max_backoff, backoff * 2 if backoff else 0.25)
                log.warning(
                    "consumer failed, retrying",
                    extra=logs.fields(
                        consumer=self.name, error=f"{type(exc).__name__}: {exc}"[:300], retry_in_s=backoff
                    ),
                )
                if self._consumer is not None:
                    self._refresh_lag()
                self._stop.wait(backoff)
        self.consuming.clear()
        shared.clear_lag(self._lag_keys)
        if self._uncommitted and self._consumer is not None:
            self._commit_handled(quietly=True)
        self._close_consumer()
        if self._producer is not None:
            try:
                self._producer.close(timeout=2)
            except Exception:
                log.warning(
                    "closing the dead-letter producer failed", exc_info=True, extra=logs.fields(consumer=self.name)
                )

    def _commit_due(self) -> bool:
        return self.progress.clock() - self._committed_at >= self.commit_interval_s

    def _poll_once(self) -> None:
        if self._uncommitted and self._commit_due():
            # A commit that failed earlier, or one the interval held back:
            # before anything new, and on an idle poll too (lag returns to 0).
            self._commit_handled()
        pause = self._next_poll_at - self.progress.clock()
        if pause > 0 and self._stop.wait(pause):
            return
        started = self.progress.clock()
        with self._calling("poll"):
            batches = self._consumer.poll(timeout_ms=300, max_records=self.max_poll_records)
        count = sum(len(records) for records in batches.values())
        # A partial poll: more records are trickling in, so gather them for
        # the rest of the interval rather than fetch each on its own.
        self._next_poll_at = started + self.min_poll_interval_s if 0 < count < self.max_poll_records else 0.0
        self.progress.polled(count)
        if not count:
            return
        self._last_records_at = self.progress.clock()
        handled: dict[Any, int] = {}  # partition -> offset after its last handled record
        scoped = self.batch_scope is not None
        stopping = False
        try:
            self._rejected = [] if scoped else None
            with self.batch_scope() if scoped else contextlib.nullcontext():
                if self.batch_prelude is not None:
                    self.batch_prelude([record for records in batches.values() for record in records])
                for tp, records in batches.items():
                    for record in records:
                        if self._stop.is_set():
                            stopping = True
                            break
                        shared.KAFKA_CONSUMED.labels(record.topic, self.name).inc()
                        self.handle(record)
                        handled[tp] = record.offset + 1
                        if not scoped:
                            self._uncommitted[tp] = handled[tp]
                            self.progress.advanced()
                    if stopping:
                        break
            if scoped:
                rejected, self._rejected = self._rejected, None
                for record, error, trace_id in rejected:
                    with logs.trace(trace_id):
                        self.dead_letter(record, error, trace_id)
                # Only now: the scope committed, so these records count as handled.
                self._uncommitted.update(handled)
                if handled:
                    self.progress.advanced()
        except BaseException:
            self._rejected = None
            if scoped:
                handled = {}  # nothing of a failed scope was kept: the whole batch is redone
            self._commit_handled(quietly=True)
            self._rewind(batches, handled)
            raise
        if stopping:
            self._commit_handled(quietly=True)
            self._rewind(batches, handled)
            raise _Stopping()
        if self._commit_due():
            self._commit_handled()

    def _commit_handled(self, quietly: bool = False) -> bool:
        """Commit the offsets after the records handled so far. One that fails
        stays pending and is retried before the next poll, so a partition's
        committed offset catches up even when no record follows (lag returns
        to 0). A rebalance makes it void: the partitions' next owner (perhaps
        this member) resumes from the last committed offset and redoes the
        rest, harmlessly."""
        from kafka import OffsetAndMetadata
        from kafka.errors import CommitFailedError

        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in self._uncommitted.items()}
        try:
            with self._calling("commit"):
                self._consumer.commit(offsets, timeout_ms=self.commit_timeout_ms)
        except CommitFailedError:
            self._uncommitted.clear()
            if not quietly:
                raise
        except Exception as exc:
            if not quietly:
                raise
            log.info(
                "offset commit failed; retried before the next poll",
                extra=logs.fields(consumer=self.name, error=str(exc)[:200]),
            )
        else:
            self._uncommitted.clear()
            self._committed_at = self.progress.clock()
            return True
        return False

    def partitions_announced(self, assigned: Any) -> None:
        """The listener's word that a join completed and these partitions are ours.

        Offsets handled on partitions revoked before the join, but not
        committed then, are committed now if the partitions came back to
        this member (by the next poll): kafka-python keeps the position of a
        partition it holds again, so nothing would read those records again
        and the group's committed offset would stay behind (lag stuck above
        0 until a new record comes; the soak's seed 101 waited 4 minutes on
        one). A partition that went to another member is left to it: it
        resumes from the committed offset and redoes the rest, harmlessly."""
        if self._announced is not None:
            self._announced = set(assigned)
        held = set(assigned)
        for tp, offset in self._revoked_uncommitted.items():
            if tp in held:
                self._uncommitted[tp] = max(offset, self._uncommitted.get(tp, offset))
        self._revoked_uncommitted.clear()

    def partitions_revoked(self, revoked: Any) -> None:
        """Before a rebalance takes partitions away: commit what was handled on them.

        kafka-python 3.0 calls the listener on its I/O thread, where a
        blocking commit is refused ("Cannot block on net.run() from the IO
        thread itself"); what could not be committed here is kept for
        ``partitions_announced``."""
        if self._announced is not None:
            self._announced -= set(revoked)
        pending = {tp: self._uncommitted[tp] for tp in revoked if tp in self._uncommitted}
        if pending and not self._commit_handled(quietly=True):
            self._revoked_uncommitted.update(pending)
        for tp in revoked:
            self._uncommitted.pop(tp, None)

    def _rewind(self, batches: dict, handled: dict) -> None:
        """Seek every partition still ours back to its first unhandled record
        (a partition taken away by a rebalance is left to its new owner)."""
        try:
            assigned = self._consumer.assignment()
        except Exception:  # noqa: BLE001
            assigned = set()
        for tp, records in batches.items():
            if not records or tp not in assigned:
                continue
            first_unhandled = handled.get(tp, records[0].offset)
            if first_unhandled > records[-1].offset:
                continue
            try:
                self._consumer.seek(tp, first_unhandled)
            except Exception:  # noqa: BLE001
                log.warning("rewind failed", extra=logs.fields(consumer=self.name, partition=tp.partition))

    def _refresh_lag(self) -> None:
        """Every few seconds: lag per assigned partition, and proof the broker answers."""
        now = self.progress.clock()
        if now - self._last_lag_refresh < self.lag_interval_s:
            return
        self._last_lag_refresh = now
        try:
            with self._calling("lag"):
                shared.refresh_kafka_lag(self._consumer, self.group_id, self.progress, self._lag_keys)
        except Exception as exc:  # noqa: BLE001 - the broker is down: health shows it
            log.debug("lag refresh failed", extra=logs.fields(consumer=self.name, error=str(exc)[:200]))

    def _restart_if_stuck(self) -> None:
        reason = self.stuck_reason(self.progress.clock())
        if reason is None:
            return
        shared.KAFKA_CONSUMER_RESTARTS.labels(self.name, reason.split(":")[0]).inc()
        log.warning(
            "consumer stuck; closing it and joining the group again",
            extra=logs.fields(consumer=self.name, group=self.group_id, reason=reason),
        )
        shared.clear_lag(self._lag_keys)
        self._close_consumer()

    def stuck_reason(self, now: float) -> str | None:
        """Why the member should be replaced at ``now``, or None."""
        try:
            held = set(self._consumer.assignment())
        except Exception:  # noqa: BLE001
            held = set()
        unannounced = bool(held) and self._announced is not None and not held <= self._announced
        if held and not unannounced:
            self._unassigned_since = None
            self._assigned_once = True
        elif self._unassigned_since is None:
            self._unassigned_since = now
        else:
            limit = self.rejoin_after_s if self._assigned_once else self.first_assignment_within_s
            if now - self._unassigned_since > limit:
                if unannounced:
                    waited = now - self._unassigned_since
                    return f"unannounced: {len(held)} partitions held but never announced for {waited:.0f}s"
                return "unassigned: no partitions for %.0fs" % (now - self._unassigned_since)
        stall_s = self.progress.stall_s
        if (
            self.progress.lag > 0
            and now - self._last_records_at > stall_s
            and self.progress.last_broker_contact is not None
            and now - self.progress.last_broker_contact < stall_s
        ):
            return f"starved: lag {self.progress.lag:d} but no records polled for {now - self._last_records_at:.0f}s"
        return None

    # -- one record ----------------------------------------------------------------------

    def handle(self, record: Any) -> str:
        """Handle one record, or dead-letter it when the handler rejects it."""
        trace_id = cloudevents.trace_id_of(record.headers)
        key = (record.topic, record.partition, record.offset)
        with logs.trace(trace_id):
            failed = self._attempts.get(key)
            if failed is not None and failed[0] >= self.max_attempts:
                # Poison: what failed max_attempts times for no known reason
                # will fail again. Dead-letter it; the partition moves on.
                self._reject(record, f"unexpected error in {failed[0]} attempts: {failed[1]}", trace_id)
                del self._attempts[key]
                return "dead_letter"
            try:
                outcome = self.handler(record)
            except self.rejects as exc:
                self._reject(record, str(exc), trace_id)
                return "dead_letter"
            except self.transient:
                raise
            except Exception:
                self._failed_record = key
                raise
            self._attempts.pop(key, None)
            return outcome

    def _reject(self, record: Any, error: str, trace_id: str | None) -> None:
        if self._rejected is not None:  # inside a batch scope: sent once it exited
            self._rejected.append((record, error, trace_id))
        else:
            self.dead_letter(record, error, trace_id)

    def _count_unexpected(self, exc: BaseException) -> None:
        """After a failed poll: one more attempt for the record whose handler
        raised something nobody foresaw (see the module docstring)."""
        key, self._failed_record = self._failed_record, None
        if key is None:
            return
        attempts = self._attempts.get(key, (0, ""))[0] + 1
        error = f"{type(exc).__name__}: {exc}"[:1000]
        if len(self._attempts) > 10_000:  # records other members now own
            self._attempts.clear()
        self._attempts[key] = (attempts, error)
        shared.CONSUMER_UNEXPECTED_ERRORS.labels(self.name, type(exc).__name__).inc()
        log.error(
            "handler failed unexpectedly; the record is retried, then dead-lettered",
            exc_info=exc,
            extra=logs.fields(
                consumer=self.name,
                topic=key[0],
                partition=key[1],
                offset=key[2],
                attempt=attempts,
                max_attempts=self.max_attempts,
            ),
        )

    # -- the watchdog ----------------------------------------------------------

    @contextlib.contextmanager
    def _calling(self, name: str) -> Any:
        self._in_call = (name, self.progress.clock())
        try:
            yield
        finally:
            self._in_call = None

    def hung_call(self, now: float) -> tuple[str, float] | None:
        """(call, seconds) when the loop has been inside one consumer call for too long."""
        in_call = self._in_call
        if in_call is None or now - in_call[1] < self.hung_call_s:
            return None
        return in_call[0], now - in_call[1]

    def _watch(self) -> None:
        """Report a consumer call that never returns, with where it waits: the
        loop cannot, being the one stuck. Health turns NOT_SERVING by itself
        (no poll within the stall limit); this says why, once per hang."""
        reported: tuple[str, float] | None = None
        while not self._stop.wait(min(5.0, self.hung_call_s / 4)):
            hung = self.hung_call(self.progress.clock())
            in_call = self._in_call
            if hung is None or in_call is None or in_call == reported:
                continue
            reported = in_call
            call, seconds = hung
            log.error(
                "a Kafka consumer call has not returned",
                extra=logs.fields(consumer=self.name, call=call, seconds=round(seconds), stack=self._thread_stack()),
            )
            shared.KAFKA_CONSUMER_HUNG_CALLS.labels(self.name, call).inc()

    def _thread_stack(self) -> str:
        import sys
        import traceback

        thread = self._thread
        frame = sys._current_frames().get(thread.ident) if thread is not None and thread.ident else None
        return "".join(traceback.format_stack(frame))[-4000:] if frame is not None else ""

    def dead_letter(self, record: Any, error: str, trace_id: str | None) -> None:
        letter = dead_letters.encode(
            record,
            error,
            dlq_topic=self.dlq_topic,
            consumer=self.name,
            source=self.source,
            trace_id=trace_id,
            now=self.clock(),
        )
        if self._producer is None:
            self._producer = self._producer_factory()
        self._producer.send(letter.topic, key=letter.key, value=letter.value, headers=letter.headers).get(timeout=30)
        shared.KAFKA_PRODUCED.labels(self.dlq_topic, f"{self.name}-dlq").inc()
        shared.DEAD_LETTERS.labels(record.topic, self.name).inc()
        log.warning(
            "message sent to the dead-letter topic",
            extra=logs.fields(
                consumer=self.name,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                dlq=self.dlq_topic,
                error=error[:300],
            ),
        )


def _partitions(tps: Iterable[Any]) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in tps)


def _rebalance_listener_base() -> type:
    from kafka import ConsumerRebalanceListener

    return ConsumerRebalanceListener


class _LoggingRebalanceListener(_rebalance_listener_base()):  # type: ignore[misc]
    """Called in the consumer's thread, inside poll()."""

    def __init__(self, loop: KafkaRecordLoop):
        self.loop = loop

    def on_partitions_revoked(self, revoked: Any) -> None:
        log.info("partitions revoked", extra=logs.fields(consumer=self.loop.name, partitions=_partitions(revoked)))
        self.loop.partitions_revoked(revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("partitions assigned", extra=logs.fields(consumer=self.loop.name, partitions=_partitions(assigned)))
        self.loop.partitions_announced(assigned)
