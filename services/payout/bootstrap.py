"""The composition root: builds the store, the consumers, the relay, the
scheduler and the gRPC server from Settings, and shuts them down in order.
Nothing happens at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

from grpc_health.v1 import health

from subsidy.db import Database
from services.payout import consumers
from services.payout.config import Settings
from services.payout.model import Clock, clock_from_setting
from services.payout.relay import OutboxRelay
from services.payout.scheduler import Scheduler
from services.payout.server import NOT_SERVING, SERVICE_NAME, SERVING, PayoutServicer, build_server
from services.payout.store import SqlStore

log = logging.getLogger("services.payout")


def create_schema(store: SqlStore, wait_s: float = 30.0) -> None:
    """Create the tables, waiting up to ``wait_s`` for the database to answer.
    Two replicas starting together may race on CREATE … IF NOT EXISTS in
    PostgreSQL (a unique violation in the catalogue): that is retried too."""
    deadline = time.monotonic() + wait_s
    delay = 0.25
    while True:
        try:
            store.create_schema()
            return
        except Exception as exc:  # noqa: BLE001
            if time.monotonic() >= deadline:
                raise
            log.warning("database not ready, retrying", extra={"fields": {"error": str(exc)[:300]}})
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


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
            session_timeout_ms=settings.session_timeout_ms)
        self.payments = consumers.payments_consumer(
            self.store, settings.kafka_bootstrap, settings.payments_group, self.relay.wake,
            session_timeout_ms=settings.session_timeout_ms)
        self.scheduler = Scheduler(self.store, self.clock, settings.scheduler_interval_s, self.relay.wake)
        self.health = health.aio.HealthServicer()
        self.servicer = PayoutServicer(self.store, self.clock, on_written=self.relay.wake)
        self.server: Any = None
        self.port = 0
        self._health_task: asyncio.Task | None = None
        self._metrics: Any = None

    async def start(self) -> None:
        await asyncio.to_thread(create_schema, self.store)
        for service in ("", SERVICE_NAME):
            await self.health.set(service, NOT_SERVING)
        self.server, self.port = build_server(self.servicer, self.health, self.settings.grpc_address)
        await self.server.start()
        self.relay.start()
        self.decisions.start()
        self.payments.start()
        self.scheduler.start()
        self._start_metrics()
        self._health_task = asyncio.create_task(self._watch_health(), name="payout-health")
        log.info("payout listening", extra={"fields": {
            "grpc_port": self.port, "address": self.settings.grpc_address, "database": self.db.dialect,
            "kafka": self.settings.kafka_bootstrap, "group": self.settings.decisions_group,
            "today": self.clock.today().isoformat()}})

    def _start_metrics(self) -> None:
        address = self.settings.metrics_address
        if not address or address.lower() == "off":
            return
        from prometheus_client import start_http_server

        host, _, port = address.rpartition(":")
        try:
            self._metrics = start_http_server(int(port), host or "127.0.0.1")
        except OSError as exc:
            log.warning("metrics endpoint not started", extra={"fields": {"address": address, "error": str(exc)}})

    def serving(self) -> bool:
        return self.decisions.running and self.payments.running and self.store.ping()

    async def _watch_health(self) -> None:
        """SERVING while the database answers and both consumers run."""
        current = None
        while True:
            ok = await asyncio.to_thread(self.serving)
            status = SERVING if ok else NOT_SERVING
            if status != current:
                for service in ("", SERVICE_NAME):
                    await self.health.set(service, status)
                log.info("health", extra={"fields": {"status": "SERVING" if ok else "NOT_SERVING"}})
                current = status
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
        if self._metrics is not None:
            server, _thread = self._metrics
            server.shutdown()
            server.server_close()
        self.db.close()
        log.info("payout stopped")


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    app = PayoutApp(settings)
    await app.start()
    try:
        await stop.wait()
    finally:
        await app.stop()


def main() -> int:
    from subsidy import logs

    settings = Settings.from_env()
    logs.setup("payout", settings.log_level)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    try:
        asyncio.run(serve(settings))
    except Exception as exc:  # noqa: BLE001 - a clear line, not a traceback
        log.error("payout failed to start or stopped on an error", exc_info=exc)
        return 1
    return 0
