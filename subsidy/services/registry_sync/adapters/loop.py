"""The sync loop on its own thread: ``handlers.run_once`` every
``poll_interval_s``; a failed round (the platform down, a broken answer,
the database down) is logged, counted and retried after a wait that doubles
up to ``max_backoff_s`` — the platform down for hours costs a log line per
round and a growing ``subsidy_registry_sync_lag_seconds``, nothing else:
the cursor stays where it was, so nothing is lost."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from subsidy.platform.db import DatabaseUnavailable
from subsidy.platform.worker import WorkerThread
from subsidy.services.registry_sync import handlers, metrics
from subsidy.services.registry_sync.ports import FeedBroken, FeedUnavailable

log = logging.getLogger("subsidy.services.registry_sync.loop")


def record(outcome: handlers.Outcome) -> None:
    for name in ("applied", "skipped", "held", "released"):
        n = getattr(outcome, name)
        if n:
            metrics.CHANGES.labels(name).inc(n)
    for reason, n in outcome.rejected.items():
        metrics.REJECTED.labels(reason).inc(n)
        metrics.DEAD_LETTERS.labels("data-platform:/changes", "registry-sync").inc(n)
    if outcome.published:
        metrics.PUBLISHED_FACTS.inc(outcome.published)
    if outcome.resynced:
        metrics.RESYNCS.inc()
    metrics.LAG_CHANGES.set(max(0, outcome.high_water - outcome.last_sequence))


class SyncLoop(WorkerThread):
    def __init__(
        self,
        deps: handlers.Deps,
        *,
        poll_interval_s: float,
        max_backoff_s: float,
        held_count: Callable[[], int] | None = None,
        wall: Callable[[], float] = time.time,
    ):
        super().__init__("registry-sync-loop", log)
        self.deps = deps
        self.poll_interval_s = poll_interval_s
        self.max_backoff_s = max_backoff_s
        self._held_count = held_count
        self._wall = wall
        self.rounds = 0
        self.failures_in_a_row = 0
        self.last_success: float | None = None
        self.last_error: str | None = None

    def round(self) -> handlers.Outcome | None:
        """One round; None when it failed (logged and counted)."""
        try:
            outcome = handlers.run_once(self.deps)
        except FeedBroken as exc:
            self._failed("broken", exc)
            return None
        except FeedUnavailable as exc:
            self._failed("unavailable", exc)
            return None
        except DatabaseUnavailable as exc:
            self._failed("database", exc)
            return None
        self.rounds += 1
        self.failures_in_a_row = 0
        self.last_error = None
        record(outcome)
        if outcome.caught_up:
            self.last_success = self._wall()
            metrics.LAST_SUCCESS.set(self.last_success)
        self.refresh()
        if outcome.applied or outcome.rejected_total or outcome.held or outcome.resynced:
            log.info(
                "feed synced",
                extra={
                    "fields": {
                        "applied": outcome.applied,
                        "published": outcome.published,
                        "held": outcome.held,
                        "rejected": outcome.rejected_total,
                        "skipped": outcome.skipped,
                        "resynced": outcome.resynced,
                        "lag_changes": outcome.high_water - outcome.last_sequence,
                    }
                },
            )
        return outcome

    def refresh(self) -> None:
        if self.last_success is not None:
            metrics.LAG_SECONDS.set(max(0.0, self._wall() - self.last_success))
        if self._held_count is not None:
            with contextlib.suppress(Exception):  # the database is down: the round says so
                metrics.HELD.set(self._held_count())

    def _failed(self, kind: str, exc: BaseException) -> None:
        self.failures_in_a_row += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        metrics.FEED_FAILURES.labels(kind).inc()
        self.refresh()
        log.warning(
            "sync round failed",
            extra={"fields": {"kind": kind, "error": self.last_error, "failures_in_a_row": self.failures_in_a_row}},
        )

    def next_wait(self) -> float:
        """After a failed round: the poll interval doubled per failure in a row, up to the cap."""
        if not self.failures_in_a_row:
            return self.poll_interval_s
        return min(self.max_backoff_s, self.poll_interval_s * 2 ** min(self.failures_in_a_row, 16))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.round()
            except Exception as exc:  # a bug must not kill the loop: logged, counted, retried
                self._failed("unexpected", exc)
                log.exception("sync round failed unexpectedly")
            if self.failures_in_a_row:
                self._stop.wait(self.next_wait())
            else:
                self._wake.wait(self.poll_interval_s)
                self._wake.clear()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
