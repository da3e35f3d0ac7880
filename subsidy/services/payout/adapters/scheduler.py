"""The scheduler: a periodic thread that marks SCHEDULED tranches whose due
date has arrived (by the injected Clock) as DUE, with TrancheDue events, in
one transaction (handlers.raise_tranches_due). Idempotent: a tranche already
DUE is not marked again, so replicas may all run it."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from subsidy.platform import logs
from subsidy.platform.clock import Clock
from subsidy.platform.worker import WorkerThread
from subsidy.services.payout import handlers, metrics
from subsidy.services.payout.adapters.store import SqlStore
from subsidy.services.payout.model import utcnow

log = logging.getLogger("subsidy.services.payout.adapters.scheduler")


class Scheduler(WorkerThread):
    """start, wake (e.g. the clock was moved: run now rather than at the next
    tick) and stop: subsidy/platform/worker.py."""

    def __init__(
        self,
        store: SqlStore,
        clock: Clock,
        interval_s: float = 60.0,
        on_written: Callable[[], None] = lambda: None,
        now: Callable[[], dt.datetime] = utcnow,
    ):
        super().__init__("payout-scheduler", log)
        self.store = store
        self.clock = clock
        self.now = now
        self.interval_s = interval_s
        self.on_written = on_written

    def run_once(self) -> int:
        today = self.clock.today()
        marked = handlers.raise_tranches_due(self.store, today, self.now())
        if marked:
            metrics.TRANSITIONS.labels("DUE").inc(len(marked))
            log.info(
                "tranches due",
                extra=logs.fields(
                    today=today.isoformat(), tranches=len(marked), tranche_ids=[t.tranche_id for t in marked[:20]]
                ),
            )
            self.on_written()
        return len(marked)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001 - the db is down: try again next tick
                log.warning("scheduler run failed", extra=logs.fields(error=f"{type(exc).__name__}: {exc}"[:300]))
            self._wake.wait(self.interval_s)
            self._wake.clear()
