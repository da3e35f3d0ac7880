"""The outbox relay: publishes payout_outbox rows to Kafka in id order
(kafka-python, enable_idempotence=True, acks='all') and marks a row published
only after the broker acknowledged it. Own thread.

With several replicas on one PostgreSQL database, one relay at a time holds
the turn (a transaction-scoped advisory lock per batch), so rows go out in id
order — and one firm's rows are in the order its transactions committed,
because every write for a firm holds the firm's row lock. While Kafka is down
the ledger keeps working (rows pile up) and the relay retries with backoff.
Delivery is at least once: a crash between the acknowledgement and the mark
re-sends a row under the same derived event id.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from subsidy import logs, topics
from subsidy import metrics as shared
from services.payout import metrics
from services.payout.store import OutboxRow, SqlStore
from subsidy import kafka_security

log = logging.getLogger("services.payout.relay")


class OutboxRelay:
    def __init__(
        self,
        store: SqlStore,
        bootstrap: str,
        *,
        batch_size: int = 100,
        poll_interval: float = 0.5,
        max_backoff: float = 10.0,
        delivery_timeout_ms: int = 30000,
        ensure_topics: Callable[[str], Any] = topics.ensure_all,
        producer_factory: Callable[[], Any] | None = None,
    ):
        self.store = store
        self.bootstrap = bootstrap
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.delivery_timeout_ms = delivery_timeout_ms
        self._ensure_topics = ensure_topics
        self._producer_factory = producer_factory or self._new_producer
        self._producer: Any = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.topics_ready = threading.Event()
        self.producer_ready = threading.Event()
        #: monotonic time publishing started failing (None: the last attempt worked).
        self.failing_since: float | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="payout-outbox-relay", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Rows were just written: publish now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("outbox relay did not stop within %.0fs; leaving it (daemon thread)", timeout)

    @property
    def running(self) -> bool:
        return self.producer_ready.is_set() and not self._stop.is_set()

    def healthy(self, stall_s: float, now: float | None = None) -> bool:
        """The producer runs and publishing has not been failing for ``stall_s``."""
        now = time.monotonic() if now is None else now
        return self.running and (self.failing_since is None or now - self.failing_since < stall_s)

    def _new_producer(self) -> Any:
        from kafka import KafkaProducer

        return KafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id="subsidy-payout-relay",
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            max_block_ms=5000,
            request_timeout_ms=10000,
            delivery_timeout_ms=self.delivery_timeout_ms,
            retry_backoff_ms=200,
            reconnect_backoff_max_ms=2000,
            bootstrap_timeout_ms=5000, **kafka_security.client_config()
        )

    def _run(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            try:
                if not self.topics_ready.is_set():
                    self._ensure_topics(self.bootstrap)
                    self.topics_ready.set()
                if self._producer is None:
                    self._producer = self._producer_factory()
                    self.producer_ready.set()
                    log.info("outbox relay producer running", extra=logs.fields(bootstrap=self.bootstrap))
                published = self.publish_once()
                backoff = 0.0
                self.failing_since = None
                if not published:
                    self._wake.wait(self.poll_interval)
                    self._wake.clear()
            except Exception as exc:  # noqa: BLE001 - Kafka or the db is down: retry, never crash
                metrics.OUTBOX_FAILURES.inc()
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                backoff = min(self.max_backoff, backoff * 2 if backoff else 0.25)
                log.warning("outbox relay: publishing failed, retrying", extra=logs.fields(
                    error=f"{type(exc).__name__}: {exc}"[:300], retry_in_s=backoff))
                self._stop.wait(backoff)
        if self._producer is not None:
            try:
                self._producer.close(timeout=2)
            except Exception:  # noqa: BLE001
                log.warning("outbox relay: closing the producer failed", exc_info=True)
        self.producer_ready.clear()

    def _wait(self, future: Any) -> BaseException | None | bool:
        """None acknowledged, an exception failed, False still pending at stop."""
        while not future.is_done:
            if self._stop.is_set():
                return False
            try:
                future.get(timeout=0.2)
            except Exception:  # noqa: BLE001 - a wait timeout, or the failure read below
                pass
        return future.exception

    def _publish(self, rows: list[OutboxRow]) -> tuple[list[int], BaseException | None]:
        sent: list[tuple[int, Any]] = []
        error: BaseException | None = None
        by_id = {row.id: row for row in rows}
        for row in rows:
            try:
                future = self._producer.send(row.topic, key=row.key, value=row.value, headers=row.headers)
            except Exception as exc:  # noqa: BLE001 - e.g. metadata not available within max_block_ms
                error = exc
                break
            sent.append((row.id, future))
        acked: list[int] = []
        for row_id, future in sent:
            outcome = self._wait(future)
            if outcome is None:
                # Only a prefix counts: a row after a failed one waits, so the
                # order of the outbox is the order on Kafka.
                if error is None:
                    acked.append(row_id)
                    row = by_id[row_id]
                    shared.KAFKA_PRODUCED.labels(row.topic, "payout-relay").inc()
                    shared.OUTBOX_PUBLISH_DELAY.labels("payout").observe(shared.age_seconds(row.created_at))
            elif error is None:
                error = outcome if outcome is not False else RuntimeError("stopping")
        return acked, error

    def publish_once(self) -> int:
        """One batch; the number acknowledged (0: nothing to do or another
        replica's turn). Raises when a send failed, after marking the rest."""
        published = self.store.relay_batch(self._publish, self.batch_size)
        if published:
            metrics.OUTBOX_PUBLISHED.inc(published)
            log.info("outbox published", extra=logs.fields(events=published))
        return published or 0
