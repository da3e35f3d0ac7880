"""The composition root: the store, one consumer per DLQ topic, the outbox
relay and the gRPC server, on the shared service skeleton
(subsidy/platform/process.py: ServiceApp). Nothing happens at import time.

The clock (subsidy/platform/clock.py ``clock_from_env``): the dev stack's
DevClock when SUBSIDY_DEV_CLOCK_FILE is set (refused unless
SUBSIDY_DEV_MODE=1), else the real time. It stamps when a letter was
received and when it was handled."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from subsidy.platform import metrics as shared
from subsidy.platform import process
from subsidy.platform import topics as platform_topics
from subsidy.platform.clock import Clock, clock_from_env
from subsidy.platform.db import Database
from subsidy.services.operations import metrics
from subsidy.services.operations.adapters.grpc import SERVICE_NAME, OperationsServicer, build_server
from subsidy.services.operations.adapters.kafka import dlq_consumers
from subsidy.services.operations.adapters.migrations import HISTORY
from subsidy.services.operations.adapters.relay import OutboxRelay
from subsidy.services.operations.adapters.store import SqlStore
from subsidy.services.operations.config import Settings
from subsidy.services.operations.model import DLQ_TOPICS

log = logging.getLogger("subsidy.services.operations")


def ensure_topics(bootstrap: str) -> None:
    """The DLQ topics before the consumers subscribe (as notify does); a
    failure is logged and the consumers and the relay retry on their own."""
    try:
        platform_topics.ensure_all(bootstrap, timeout=10)
    except Exception as exc:  # noqa: BLE001 - the consumers retry on their own
        log.warning("could not ensure the topics", extra={"fields": {"error": str(exc)[:300]}})


class OperationsApp(process.ServiceApp):
    """One running operations service. ``await app.start()`` … ``await app.stop()``."""

    name = "operations"
    health_names = ("", SERVICE_NAME)

    def __init__(self, settings: Settings, clock: Clock | None = None):
        db = Database(settings.database_url, store="operations")
        super().__init__(settings, db, HISTORY, log, gauges=self.refresh_gauges, refresh_s=settings.metrics_refresh_s)
        self.clock = clock or clock_from_env(os.environ)
        self.store = SqlStore(self.db)
        self.relay = OutboxRelay(self.store, settings.kafka_bootstrap)
        self.consumers = dlq_consumers(
            self.store,
            self.clock,
            settings.kafka_bootstrap,
            settings.group_prefix,
            session_timeout_ms=settings.session_timeout_ms,
            stall_s=settings.stall_s,
        )
        self.servicer = OperationsServicer(self.store, self.clock, self.relay.wake)

    def build_server(self) -> tuple[Any, int]:
        return build_server(self.servicer, self.health, self.settings.grpc_address)

    async def start_work(self) -> None:
        await asyncio.to_thread(ensure_topics, self.settings.kafka_bootstrap)
        self.relay.start()
        for consumer in self.consumers:
            consumer.start()

    def started_fields(self) -> dict[str, Any]:
        return {
            "grpc_port": self.port,
            "address": self.settings.grpc_address,
            "database": self.db.dialect,
            "kafka": self.settings.kafka_bootstrap,
            "topics": list(DLQ_TOPICS),
        }

    def not_ready_reason(self) -> str | None:
        for consumer in self.consumers:
            if not consumer.running:
                return f"{consumer.name}: not running"
        if not self.store.ping():
            return "database unreachable"
        return self.relay.not_ready_reason(self.settings.stall_s) or process.stalled(*self.consumers)

    def refresh_gauges(self) -> None:
        count, oldest = self.store.outbox_stats()
        shared.OUTBOX_DEPTH.labels("operations").set(count)
        shared.OUTBOX_OLDEST_AGE.labels("operations").set(shared.age_seconds(oldest))
        metrics.refresh_letters(self.store.counts(), self.store.oldest_pending(), self.clock.now())

    async def stop_work(self) -> None:
        await self.stop_server(self.settings.grace_s)
        await asyncio.gather(*(asyncio.to_thread(c.stop, 5.0) for c in self.consumers))
        await asyncio.to_thread(self.relay.stop, 3.0)


def main() -> int:
    settings = Settings.from_env()
    return process.main("operations", settings, lambda: OperationsApp(settings))
