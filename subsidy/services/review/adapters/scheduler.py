"""The scheduler: a periodic thread that closes notice periods by the
injected Clock (handlers.close_notice_periods: NOTICED lines whose period
ended become PAYABLE, with LinePayable on subsidy.notices.v1). Idempotent, so
replicas may all run it. ``wake()`` runs it at once (e.g. after the dev clock
moved, or a test advanced its FixedClock)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from subsidy.platform import logs
from subsidy.platform.clock import Clock
from subsidy.platform.worker import WorkerThread
from subsidy.services.review import handlers, metrics
from subsidy.services.review.adapters.store import SqlStore

log = logging.getLogger("subsidy.services.review.adapters.scheduler")


class Scheduler(WorkerThread):
    def __init__(self, store: SqlStore, clock: Clock, interval_s: float, on_written: Callable[[], None] = lambda: None):
        super().__init__("review-scheduler", log)
        self.store = store
        self.clock = clock
        self.interval_s = interval_s
        self.on_written = on_written

    def run_once(self) -> int:
        today = self.clock.today()
        done = handlers.close_notice_periods(self.store, today, self.clock.now())
        if done:
            metrics.LINES_PAYABLE.inc(len(done))
            log.info(
                "notice lines payable",
                extra=logs.fields(
                    today=today.isoformat(), lines=len(done), decision_ids=[x.decision_id for x in done[:20]]
                ),
            )
            self.on_written()
        return len(done)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001 - the db is down: try again next tick
                log.warning("scheduler run failed", extra=logs.fields(error=f"{type(exc).__name__}: {exc}"[:300]))
            self._wake.wait(self.interval_s)
            self._wake.clear()
