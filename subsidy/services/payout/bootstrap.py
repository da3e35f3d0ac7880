"""The composition root: builds the store, the consumers, the relay, the
scheduler and the gRPC server from Settings, runs them on the shared service
skeleton (subsidy/platform/process.py: ServiceApp), and shuts them down in
order. Nothing happens at import time."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

from subsidy.core.workflow.settings import load_workflow
from subsidy.platform import logs
from subsidy.platform import metrics as shared
from subsidy.platform import process as process
from subsidy.platform.clock import Clock
from subsidy.platform.db import Database
from subsidy.services.payout import metrics
from subsidy.services.payout.adapters import kafka as consumers
from subsidy.services.payout.adapters.grpc import SERVICE_NAME, PayoutServicer, build_server
from subsidy.services.payout.adapters.ledger_gauges import LedgerGaugeReader
from subsidy.services.payout.adapters.migrations import HISTORY
from subsidy.services.payout.adapters.relay import OutboxRelay
from subsidy.services.payout.adapters.scheduler import Scheduler
from subsidy.services.payout.adapters.store import SqlStore
from subsidy.services.payout.config import Settings
from subsidy.services.payout.model import STATUSES
from subsidy.services.payout.reconcile import Reconciliation

log = logging.getLogger("subsidy.services.payout")

#: A DUE tranche unpaid this many days after its due date counts as overdue.
OVERDUE_DAYS = 30


class PayoutApp(process.ServiceApp):
    """One running payout service. ``await app.start()`` … ``await app.stop()``."""

    name = "payout"
    health_names = ("", SERVICE_NAME)

    def __init__(self, settings: Settings, clock: Clock | None = None):
        db = Database(settings.database_url, store="payout", pool_size=6)
        super().__init__(settings, db, HISTORY, log, gauges=self.refresh_gauges, refresh_s=settings.metrics_refresh_s)
        self.clock = clock or settings.clock()
        self.store = SqlStore(self.db)
        self.ledger_gauges = LedgerGaugeReader(self.db)
        self._reconciled_at: float | None = None  # time.monotonic() of the last in-service reconciliation
        self.relay = OutboxRelay(self.store, settings.kafka_bootstrap)
        self.decisions = consumers.decisions_consumer(
            self.store,
            settings.kafka_bootstrap,
            settings.decisions_group,
            self.relay.wake,
            session_timeout_ms=settings.session_timeout_ms,
            stall_s=settings.stall_s,
        )
        self.payments = consumers.payments_consumer(
            self.store,
            settings.kafka_bootstrap,
            settings.payments_group,
            self.relay.wake,
            session_timeout_ms=settings.session_timeout_ms,
            stall_s=settings.stall_s,
        )
        self.notices = consumers.notices_consumer(
            self.store,
            settings.kafka_bootstrap,
            settings.notices_group,
            self.relay.wake,
            session_timeout_ms=settings.session_timeout_ms,
            stall_s=settings.stall_s,
        )
        # hold_grace_days of policy/workflow.yaml (SUBSIDY_POLICY_DIR), dated:
        # loaded at start, so a malformed file stops the service before it runs.
        workflow = load_workflow()
        self.grace_days = lambda day: workflow.on(day).hold_grace_days
        self.scheduler = Scheduler(
            self.store, self.clock, settings.scheduler_interval_s, self.relay.wake, grace_days=self.grace_days
        )
        self.firms = consumers.firms_consumer(
            self.store,
            settings.kafka_bootstrap,
            settings.firms_group,
            self.clock,
            self.grace_days,
            self._facts_written,
            session_timeout_ms=settings.session_timeout_ms,
            stall_s=settings.stall_s,
        )
        self.servicer = PayoutServicer(self.store, self.clock, on_written=self.relay.wake)

    def _facts_written(self) -> None:
        """Facts applied: publish what they held, and let the scheduler
        release what they restored (it runs at once, not at its next tick)."""
        self.relay.wake()
        self.scheduler.wake()

    def build_server(self) -> tuple[Any, int]:
        return build_server(self.servicer, self.health, self.settings.grpc_address)

    async def start_work(self) -> None:
        self.relay.start()
        self.decisions.start()
        self.payments.start()
        self.notices.start()
        self.firms.start()
        self.scheduler.start()

    def started_fields(self) -> dict[str, Any]:
        return {
            "grpc_port": self.port,
            "address": self.settings.grpc_address,
            "database": self.db.dialect,
            "kafka": self.settings.kafka_bootstrap,
            "group": self.settings.decisions_group,
            "notices_group": self.settings.notices_group,
            "firms_group": self.settings.firms_group,
            "today": self.clock.today().isoformat(),
        }

    def not_ready_reason(self) -> str | None:
        """Why payout is not ready, or None: the database answers, the four
        consumers run and make progress (subsidy.platform.metrics.stall_reason), the
        relay's Kafka producer runs and is not failing. Blocking: run in a thread."""
        for consumer in (self.decisions, self.payments, self.notices, self.firms):
            if not consumer.running:
                return f"{consumer.name}: not running"
        if not self.store.ping():
            return "database unreachable"
        return self.relay.not_ready_reason(self.settings.stall_s) or process.stalled(
            self.decisions, self.payments, self.notices, self.firms
        )

    def serving(self) -> bool:
        return self.not_ready_reason() is None

    def refresh_gauges(self) -> None:
        """Outbox depth and age; tranches by status and overdue (DUE for more
        than 30 days by the service's clock), SCHEDULED past due, HELD past
        their grace, open recoveries and the oldest one's age, from the
        database; the cap reconciliation every reconcile_interval_s."""
        count, oldest = self.store.outbox_stats()
        shared.OUTBOX_DEPTH.labels("payout").set(count)
        shared.OUTBOX_OLDEST_AGE.labels("payout").set(shared.age_seconds(oldest))
        overdue_before = (self.clock.today() - dt.timedelta(days=OVERDUE_DAYS)).isoformat()
        by_status, overdue = self.store.tranche_stats(overdue_before)
        for status in STATUSES:
            metrics.TRANCHES.labels(status).set(by_status.get(status, 0))
        metrics.TRANCHES_OVERDUE.set(overdue)
        gauges = self.ledger_gauges.read(self.clock.today())
        metrics.RECOVERIES_OPEN.set(gauges.recoveries_open)
        metrics.SCHEDULED_PAST_DUE.set(gauges.scheduled_past_due)
        metrics.HELD_PAST_GRACE.set(gauges.held_past_grace)
        metrics.RECOVERY_OLDEST_OPEN_AGE.set(gauges.oldest_open_recovery_days * 86400)
        interval = self.settings.reconcile_interval_s
        if interval > 0 and (self._reconciled_at is None or time.monotonic() - self._reconciled_at >= interval):
            self._reconciled_at = time.monotonic()
            publish_reconciliation(self.ledger_gauges.reconcile(), self.scheduler.now())

    async def stop_work(self) -> None:
        await self.stop_server(self.settings.grace_s)
        await asyncio.gather(
            asyncio.to_thread(self.decisions.stop, 5.0),
            asyncio.to_thread(self.payments.stop, 5.0),
            asyncio.to_thread(self.notices.stop, 5.0),
            asyncio.to_thread(self.firms.stop, 5.0),
            asyncio.to_thread(self.scheduler.stop, 5.0),
        )
        # Last: whatever the consumers wrote before stopping still gets a chance to go out.
        await asyncio.to_thread(self.relay.stop, 3.0)


def publish_reconciliation(result: Reconciliation, now: dt.datetime) -> None:
    """Set the reconciliation's gauges and log each mismatch (the firm and
    scope are in the log line, never in a label)."""
    for kind in ("usage", "over_cap"):
        metrics.CAP_MISMATCHES.labels(kind).set(result.count(kind))
    metrics.CAP_UNVERIFIABLE_FIRMS.set(len(result.unverifiable_firms))
    metrics.CAP_RECONCILED_FIRMS.set(result.firms)
    metrics.CAP_RECONCILE_LAST_RUN.set(now.timestamp())
    for m in result.mismatches[:50]:
        log.error("cap reconciliation: mismatch", extra=logs.fields(**m.as_dict()))
    log.info(
        "cap reconciliation",
        extra=logs.fields(
            firms=result.firms,
            scopes=result.scopes,
            mismatches=len(result.mismatches),
            unverifiable_firms=len(result.unverifiable_firms),
        ),
    )


def main() -> int:
    settings = Settings.from_env()
    return process.main("payout", settings, lambda: PayoutApp(settings))
