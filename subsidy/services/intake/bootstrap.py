"""The composition root: builds the adapters from Settings, wires them into
the core, runs the gRPC server, the outbox relay and the status projection,
and shuts everything down in order. Nothing happens at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from grpc_health.v1 import health

from subsidy.platform import metrics as shared
from subsidy.platform import process as process
from subsidy.platform import migrations
from subsidy.platform.db import Database
from subsidy.services.intake import handlers
from subsidy.services.intake.config import Settings
from subsidy.services.intake.adapters.directory import FileDirectory
from subsidy.services.intake.adapters.kafka import decision_projection, payout_projection
from subsidy.platform.registry import FileRegistry, HttpRegistry
from subsidy.services.intake.adapters.relay import OutboxRelay
from subsidy.services.intake.adapters.grpc import (
    NOT_SERVING,
    SERVICE_NAME,
    SERVING,
    IntakeServicer,
    build_server,
)
from subsidy.services.intake.adapters.migrations import HISTORY
from subsidy.services.intake.adapters.store import SqlStore

log = logging.getLogger("subsidy.services.intake")


def build_registry(settings: Settings) -> Any:
    if settings.registry_url:
        return HttpRegistry(
            settings.registry_url, timeout=settings.registry_timeout_s, attempts=settings.registry_attempts
        )
    return FileRegistry(settings.registry_file)


class IntakeApp:
    """One running intake service. ``await app.start()`` … ``await app.stop()``."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.db = Database(settings.database_url, store="intake")
        self.store = SqlStore(self.db)
        self.deps = handlers.Deps(
            store=self.store,
            registry=build_registry(settings),
            directory=FileDirectory(settings.directory_dir),
        )
        self.relay = OutboxRelay(self.store, settings.kafka_bootstrap)
        self.projection = decision_projection(self.deps, settings.kafka_bootstrap, group_id=settings.projection_group,
                                              stall_s=settings.stall_s)
        self.payout_projection = payout_projection(self.deps, settings.kafka_bootstrap, stall_s=settings.stall_s)
        self.health = health.aio.HealthServicer()
        self.servicer = IntakeServicer(self.deps, on_accepted=self.relay.wake)
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
        self.projection.start()
        self.payout_projection.start()
        self._metrics = shared.start_endpoint(self.settings.metrics_address, log)
        self._health_task = asyncio.create_task(self._watch_health(), name="intake-health")
        log.info(
            "intake listening",
            extra={"fields": {"grpc_port": self.port, "address": self.settings.grpc_address,
                              "database": self.db.dialect, "kafka": self.settings.kafka_bootstrap,
                              "registry": "http" if self.settings.registry_url else "file"}},
        )

    def not_ready_reason(self) -> str | None:
        """Why intake is not ready, or None: the database answers, the relay's
        Kafka producer runs and is not failing, and both projections make
        progress (subsidy.platform.metrics.stall_reason). Blocking: run in a thread."""
        if not self.store.ping():
            return "database unreachable"
        if not self.relay.healthy(self.settings.stall_s):
            return "outbox relay: Kafka producer not running or publishing failing"
        for consumer in (self.projection, self.payout_projection):
            reason = consumer.progress.stall_reason()
            if reason:
                return f"{consumer.name}: {reason}"
        return None

    def refresh_gauges(self) -> None:
        count, oldest = self.store.outbox_stats()
        shared.OUTBOX_DEPTH.labels("intake").set(count)
        shared.OUTBOX_OLDEST_AGE.labels("intake").set(shared.age_seconds(oldest))

    async def _watch_health(self) -> None:
        """Two answers, refreshed every interval (the outbox gauges on the way):

        - ``""`` (the whole service): SERVING while ``not_ready_reason`` finds
          nothing — database, Kafka producer and both projections;
        - ``subsidy.v1.IntakeService`` (what the readiness probe asks): SERVING
          while submissions can be accepted, i.e. the database answers. The
          outbox exists so that intake keeps accepting while Kafka is down;
          taking intake out of service then would defeat it. Kafka trouble
          shows in the overall status, the outbox-backlog alert and the lag."""
        current: tuple | None = None
        last_refresh = float("-inf")
        while True:
            reason = await asyncio.to_thread(self.not_ready_reason)
            accepting = reason is None or (reason != "database unreachable" and await asyncio.to_thread(self.store.ping))
            status = (SERVING if reason is None else NOT_SERVING, SERVING if accepting else NOT_SERVING)
            if status != current:
                await self.health.set("", status[0])
                await self.health.set(SERVICE_NAME, status[1])
                log.info("health", extra={"fields": {"status": "SERVING" if reason is None else "NOT_SERVING",
                                                     "accepting_submissions": accepting, "reason": reason}})
                current = status
            if time.monotonic() - last_refresh >= self.settings.metrics_refresh_s:
                last_refresh = time.monotonic()
                try:
                    await asyncio.to_thread(self.refresh_gauges)
                except Exception as exc:  # noqa: BLE001 - the database is down: health says so
                    log.debug("metrics refresh failed", extra={"fields": {"error": str(exc)[:200]}})
            await asyncio.sleep(self.settings.health_interval_s)

    async def stop(self) -> None:
        """Stop accepting, let in-flight RPCs finish within the grace period,
        then stop the relay and the projection and close the database."""
        log.info("intake shutting down", extra={"fields": {"grace_s": self.settings.grace_s}})
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        await self.health.enter_graceful_shutdown()
        if self.server is not None:
            await self.server.stop(self.settings.grace_s)
        await asyncio.gather(
            asyncio.to_thread(self.relay.stop, 3.0),
            asyncio.to_thread(self.projection.stop, 3.0),
            asyncio.to_thread(self.payout_projection.stop, 3.0),
        )
        shared.stop_endpoint(self._metrics)
        self.db.close()
        log.info("intake stopped")


def main() -> int:
    settings = Settings.from_env()
    return process.main("intake", settings, lambda: IntakeApp(settings))
