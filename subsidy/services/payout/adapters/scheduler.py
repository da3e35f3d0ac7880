"""The scheduler: a periodic thread that marks SCHEDULED tranches whose due
date has arrived (by the injected Clock) as DUE, with TrancheDue events —
or HELD when the firm fails the release gate — and releases or cancels held
tranches, in one transaction (handlers.advance_tranches). Idempotent: a
tranche already moved is not moved again, so replicas may all run it."""

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
        grace_days: handlers.GraceDays | None = None,
    ):
        super().__init__("payout-scheduler", log)
        self.grace_days = grace_days
        self.store = store
        self.clock = clock
        self.now = now
        self.interval_s = interval_s
        self.on_written = on_written

    def run_once(self) -> int:
        """One pass of handlers.advance_tranches; the number of tranches it moved."""
        today, at = self.clock.today(), self.now()
        done = handlers.advance_tranches(self.store, today, at, self.grace_days)
        day = today.isoformat()
        if done.due:
            metrics.TRANSITIONS.labels("DUE").inc(len(done.due))
            log.info(
                "tranches due",
                extra=logs.fields(today=day, tranches=len(done.due), tranche_ids=[t.tranche_id for t in done.due[:20]]),
            )
        if done.held:
            metrics.TRANSITIONS.labels("HELD").inc(len(done.held))
            log.warning(
                "tranches held: the firm no longer meets the scope",
                extra=logs.fields(
                    today=day,
                    tranches=len(done.held),
                    tranche_ids=[t.tranche_id for t in done.held[:20]],
                    reason=done.held[0].hold_reason[:200],
                ),
            )
        if done.released:
            metrics.RELEASED.inc(len(done.released))
            log.info(
                "held tranches released: facts restored within the grace",
                extra=logs.fields(today=day, tranche_ids=[t.tranche_id for t in done.released[:20]]),
            )
        if done.cancelled:
            metrics.TRANSITIONS.labels("CANCELLED").inc(len(done.cancelled))
            log.warning(
                "held tranches cancelled: the hold grace is over",
                extra=logs.fields(today=day, tranche_ids=[t.tranche_id for t in done.cancelled[:20]]),
            )
        moved = len(done.due) + len(done.held) + len(done.cancelled)
        # A completed pass (stamped with its start), moved or not: SubsidyPayoutSchedulerNotRunning watches it.
        metrics.SCHEDULER_LAST_RUN.set(at.timestamp())
        if moved:
            self.on_written()
        return moved

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001 - the db is down: try again next tick
                log.warning("scheduler run failed", extra=logs.fields(error=f"{type(exc).__name__}: {exc}"[:300]))
            self._wake.wait(self.interval_s)
            self._wake.clear()
