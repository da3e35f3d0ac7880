"""The outbox relay: publishes the outbox rows to Kafka, in id order, and
marks a row published only after Kafka acknowledged it (acks=all,
idempotent producer). Runs in its own thread with kafka-python.

While Kafka is down, intake keeps accepting (rows pile up in the outbox) and
the relay retries with exponential backoff, logging each failure; when the
broker is back it catches up. Delivery is at least once: a crash between the
acknowledgement and the mark re-publishes a row, and every consumer skips an
application id it has already seen.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any, Callable

from subsidy import metrics as shared
from subsidy import topics
from services.intake import metrics
from services.intake.model import rfc3339
from services.intake.store import SqlStore
from subsidy import kafka_security

log = logging.getLogger("services.intake.relay")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


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

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="intake-outbox-relay", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """A row was just written: publish now rather than at the next poll."""
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

    # -- the loop ------------------------------------------------------------

    def _new_producer(self) -> Any:
        from kafka import KafkaProducer

        return KafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id="subsidy-intake-relay",
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
                    log.info("kafka topics ready", extra={"fields": {"bootstrap": self.bootstrap}})
                if self._producer is None:
                    self._producer = self._producer_factory()
                    self.producer_ready.set()
                    log.info("outbox relay producer running", extra={"fields": {"bootstrap": self.bootstrap}})
                published = self.publish_once()
                backoff = 0.0
                self.failing_since = None
                if published == 0:
                    self._wake.wait(self.poll_interval)
                    self._wake.clear()
            except Exception as exc:  # noqa: BLE001 - Kafka or the db is down: retry, never crash
                metrics.OUTBOX_FAILURES.inc()
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                backoff = min(self.max_backoff, backoff * 2 if backoff else 0.25)
                pending = None
                try:
                    pending = self.store.pending_count()
                except Exception:  # noqa: BLE001
                    pass
                log.warning(
                    "outbox relay: publishing failed, retrying",
                    extra={"fields": {"error": f"{type(exc).__name__}: {exc}"[:300], "retry_in_s": backoff,
                                      "pending": pending}},
                )
                self._stop.wait(backoff)
        if self._producer is not None:
            try:
                self._producer.close(timeout=2)
            except Exception:  # noqa: BLE001
                log.warning("outbox relay: closing the producer failed", exc_info=True)
        self.producer_ready.clear()

    def _wait(self, future: Any) -> BaseException | None | bool:
        """The send's outcome: None acknowledged, an exception failed, False
        still pending when asked to stop."""
        while not future.is_done:
            if self._stop.is_set():
                return False
            try:
                future.get(timeout=0.2)
            except Exception:  # noqa: BLE001 - a wait timeout, or the failure read below
                pass
        return future.exception

    def publish_once(self) -> int:
        """Publish one batch of pending rows; return how many were acknowledged.
        Raises when a send failed (after marking those that succeeded)."""
        rows = self.store.pending(self.batch_size)
        if not rows:
            return 0
        sent: list[tuple[int, Any]] = []
        error: BaseException | None = None
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
                acked.append(row_id)
            elif outcome is not False and error is None:
                error = outcome
        now = _now()
        self.store.mark_published(acked, rfc3339(now))
        metrics.OUTBOX_PUBLISHED.inc(len(acked))
        by_id = {row.id: row for row in rows}
        for row_id in acked:
            row = by_id[row_id]
            shared.KAFKA_PRODUCED.labels(row.topic, "intake-relay").inc()
            shared.OUTBOX_PUBLISH_DELAY.labels("intake").observe(shared.age_seconds(row.created_at, now))
        if acked:
            log.info("outbox published", extra={"fields": {"events": len(acked), "last_outbox_id": acked[-1]}})
        if error is not None:
            raise error
        return len(acked)
