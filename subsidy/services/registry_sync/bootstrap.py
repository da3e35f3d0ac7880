"""The composition root: the feed, the store, the sync loop, the outbox relay
and a health-only gRPC server (the shared builder, as notify) on the shared
service skeleton (subsidy/platform/process.py: ServiceApp). Nothing runs at import."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from subsidy.platform import process as process
from subsidy.platform import topics as platform_topics
from subsidy.platform.clock import clock_from_env
from subsidy.platform.db import Database
from subsidy.platform.grpc import server as grpc_server
from subsidy.services.registry_sync import handlers
from subsidy.services.registry_sync.adapters.feed import HttpFeed
from subsidy.services.registry_sync.adapters.loop import SyncLoop
from subsidy.services.registry_sync.adapters.migrations import HISTORY
from subsidy.services.registry_sync.adapters.relay import OutboxRelay
from subsidy.services.registry_sync.adapters.store import SqlStore
from subsidy.services.registry_sync.config import Settings

log = logging.getLogger("subsidy.services.registry_sync")

SERVICE_NAME = "subsidy.registry_sync"  # health-checked name (no RPC service of its own)


class RegistrySyncApp(process.ServiceApp):
    name = "registry_sync"
    health_names = ("", SERVICE_NAME)
    started = "running"

    def __init__(self, settings: Settings, clock: Any = None):
        super().__init__(settings, Database(settings.database_url, store="registry_sync"), HISTORY, log)
        self.store = SqlStore(self.db)
        self.clock = clock or clock_from_env(os.environ, fixed_today_variable="SUBSIDY_REGISTRY_SYNC_TODAY")
        self.feed = HttpFeed(
            settings.feed_url,
            settings.feed_token,
            timeout=settings.feed_timeout_s,
            attempts=settings.feed_attempts,
            backoff=settings.feed_backoff_s,
            max_backoff=settings.feed_max_backoff_s,
        )
        self.deps = handlers.Deps(self.feed, self.store, self.clock, page_size=settings.page_size)
        self.loop = SyncLoop(
            self.deps,
            poll_interval_s=settings.poll_interval_s,
            max_backoff_s=settings.failure_max_backoff_s,
            held_count=self.store.held_count,
        )
        self.relay = OutboxRelay(self.store, settings.kafka_bootstrap)

    def build_server(self) -> tuple[Any, int]:
        return grpc_server.build_server(
            "registry_sync",
            self.settings.grpc_address,
            self.health,
            max_receive_bytes=64 << 10,
            max_send_bytes=1 << 20,
        )

    async def start_work(self) -> None:
        self.relay.start()
        self.loop.start()

    def started_fields(self) -> dict[str, Any]:
        return {
            "grpc_port": self.port,
            "database": self.db.dialect,
            "kafka": self.settings.kafka_bootstrap,
            "feed": self.feed.base_url,
            "page_size": self.settings.page_size,
        }

    def not_ready_reason(self) -> str | None:
        """The loop and the relay run, the database answers. The platform being
        down is not a readiness matter (a restart cannot cure it): it shows in
        subsidy_registry_sync_lag_seconds and its alert."""
        if not self.loop.alive:
            return "sync loop not running"
        if not self.store.ping():
            return "database unreachable"
        return self.relay.not_ready_reason(self.settings.stall_s)

    async def stop_work(self) -> None:
        await asyncio.to_thread(self.loop.stop, max(1.0, self.settings.grace_s))
        await asyncio.to_thread(self.relay.stop, max(1.0, self.settings.grace_s))
        await self.stop_server(1.0)


def ensure_topics(bootstrap: str) -> None:  # pragma: no cover - the relay ensures them too
    platform_topics.ensure_all(bootstrap, timeout=10)


def main() -> int:
    settings = Settings.from_env()
    return process.main("registry_sync", settings, lambda: RegistrySyncApp(settings))
