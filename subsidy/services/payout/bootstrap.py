"""The composition root: builds the store, the consumers, the relay, the
scheduler and the gRPC server from Settings, and shuts them down in order.
Nothing happens at import time."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from typing import Any

from grpc_health.v1 import health

from subsidy.platform import metrics as shared
from subsidy.platform import process as process
from subsidy.platform import migrations
from subsidy.platform.db import Database
from subsidy.services.payout.adapters import kafka as consumers
from subsidy.services.payout import metrics
from subsidy.services.payout.config import Settings
from subsidy.services.payout.model import STATUSES, Clock, clock_from_setting
from subsidy.services.payout.adapters.relay import OutboxRelay
from subsidy.services.payout.adapters.scheduler import Scheduler
from subsidy.services.payout.adapters.grpc import (
    NOT_SERVING,
    SERVICE_NAME,
    SERVING,
    PayoutServicer,
    build_server,
)
from subsidy.services.payout.adapters.migrations import HISTORY
from subsidy.services.payout.adapters.store import SqlStore

log = logging.getLogger("subsidy.services.payout")

#: A DUE tranche unpaid this many days after its due date counts as overdue.
OVERDUE_DAYS = 30


class PayoutApp:
    """One running payout service. ``await app.start()`` … ``await app.stop()``."""

    def __init__(self, settings: Settings, clock: Clock | None = None):
        self.settings = settings
        self.clock = clock or clock_from_setting(settings.today)
        self.db = Database(settings.database_url, store="payout", pool_size=6)
        self.store = SqlStore(self.db)
        self.relay = OutboxRelay(self.store, settings.kafka_bootstrap)
        self.decisions = consumers.decisions_consumer(
            self.store, settings.kafka_bootstrap, settings.decisions_group, self.relay.wake,
            session_timeout_ms=settings.session_timeout_ms, stall_s=settings.stall_s)
        self.payments = consumers.payments_consumer(
            self.store, settings.kafka_bootstrap, settings.payments_group, self.relay.wake,
            session_timeout_ms=settings.session_timeout_ms, stall_s=settings.stall_s)
        self.scheduler = Scheduler(self.store, self.clock, settings.scheduler_interval_s, self.relay.wake)
        self.health = health.aio.HealthServicer()
        self.servicer = PayoutServicer(self.store, self.clock, on_written=self.relay.wake)
        self.server: Any = None
        self.port = 0
        self._health_task: asyncio.Task | None = None
        self._metrics: Any = None

    async def start(self) -> None:
        # The tables are the migrations' (`subsidy migrate`, run before a rollout):
        # refuse a schema older than this code needs, before anything else starts.
        await asyncio.to_thread(migrations.require, self.db, HISTORY, log)
        for service in ("", SERVICE_NAME):
            await self.health.set(service, NOT_SERVING)
        self.server, self.port = build_server(self.servicer, self.health, self.settings.grpc_address)
        await self.server.start()
        self.relay.start()
        self.decisions.start()
        self.payments.start()
        self.scheduler.start()
        self._metrics = shared.start_endpoint(self.settings.metrics_address, log)
        self._health_task = asyncio.create_task(self._watch_health(), name="payout-health")
        log.info("payout listening", extra={"fields": {
            "grpc_port": self.port, "address": self.settings.grpc_address, "database": self.db.dialect,
            "kafka": self.settings.kafka_bootstrap, "group": self.settings.decisions_group,
            "today": self.clock.today().isoformat()}})

    def not_ready_reason(self) -> str | None:
        """Why payout is not ready, or None: the database answers, both
        consumers run and make progress (subsidy.platform.metrics.stall_reason), the
        relay's Kafka producer runs and is not failing. Blocking: run in a thread."""
        for consumer in (self.decisions, self.payments):
            if not consumer.running:
                return f"{consumer.name}: not running"
        if not self.store.ping():
            return "database unreachable"
        if not self.relay.healthy(self.settings.stall_s):
            return "outbox relay: Kafka producer not running or publishing failing"
        for consumer in (self.decisions, self.payments):
            reason = consumer.progress.stall_reason()
            if reason:
                return f"{consumer.name}: {reason}"
        return None

    def serving(self) -> bool:
        return self.not_ready_reason() is None

    def refresh_gauges(self) -> None:
        """Outbox depth and age; tranches by status and overdue (DUE for more
        than 30 days by the service's clock), from the database."""
        count, oldest = self.store.outbox_stats()
        shared.OUTBOX_DEPTH.labels("payout").set(count)
        shared.OUTBOX_OLDEST_AGE.labels("payout").set(shared.age_seconds(oldest))
        overdue_before = (self.clock.today() - dt.timedelta(days=OVERDUE_DAYS)).isoformat()
        by_status, overdue = self.store.tranche_stats(overdue_before)
        for status in STATUSES:
            metrics.TRANCHES.labels(status).set(by_status.get(status, 0))
        metrics.TRANCHES_OVERDUE.set(overdue)

    async def _watch_health(self) -> None:
        """SERVING while ``not_ready_reason`` finds nothing; the gauges are
        refreshed from the database on the way."""
        current = None
        last_refresh = float("-inf")
        while True:
            reason = await asyncio.to_thread(self.not_ready_reason)
            status = SERVING if reason is None else NOT_SERVING
            if status != current:
                for service in ("", SERVICE_NAME):
                    await self.health.set(service, status)
                log.info("health", extra={"fields": {"status": "SERVING" if reason is None else "NOT_SERVING",
                                                     "reason": reason}})
                current = status
            if time.monotonic() - last_refresh >= self.settings.metrics_refresh_s:
                last_refresh = time.monotonic()
                try:
                    await asyncio.to_thread(self.refresh_gauges)
                except Exception as exc:  # noqa: BLE001 - the database is down: health says so
                    log.debug("metrics refresh failed", extra={"fields": {"error": str(exc)[:200]}})
            await asyncio.sleep(self.settings.health_interval_s)

    async def stop(self) -> None:
        log.info("payout shutting down", extra={"fields": {"grace_s": self.settings.grace_s}})
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        await self.health.enter_graceful_shutdown()
        if self.server is not None:
            await self.server.stop(self.settings.grace_s)
        await asyncio.gather(
            asyncio.to_thread(self.decisions.stop, 5.0),
            asyncio.to_thread(self.payments.stop, 5.0),
            asyncio.to_thread(self.scheduler.stop, 5.0),
        )
        # Last: whatever the consumers wrote before stopping still gets a chance to go out.
        await asyncio.to_thread(self.relay.stop, 3.0)
        shared.stop_endpoint(self._metrics)
        self.db.close()
        log.info("payout stopped")


def main() -> int:
    settings = Settings.from_env()
    return process.main("payout", settings, lambda: PayoutApp(settings))
