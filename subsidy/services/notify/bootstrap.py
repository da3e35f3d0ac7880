"""The composition root: builds the adapters from Settings, wires them into
the core, runs the consumer and the gRPC health server, and shuts down in
order. Nothing happens at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from grpc_health.v1 import health

from subsidy.platform import process as process
from subsidy.platform.grpc import server as grpc_server
from subsidy.platform.grpc.server import NOT_SERVING, SERVING
from subsidy.platform import topics as platform_topics
from subsidy.platform import metrics as shared
from subsidy.platform import migrations
from subsidy.platform.db import Database
from subsidy.core.policy import load_policy
from subsidy.services.notify import handlers
from subsidy.services.notify.adapters.channels import MailDirEmail, SmsGateway, SmtpEmail, Webhook, parse_keys
from subsidy.services.notify.config import Settings
from subsidy.services.notify.adapters.kafka import notify_consumer
from subsidy.services.notify.adapters.contacts import build_registry
from subsidy.services.notify.adapters.migrations import HISTORY
from subsidy.services.notify.adapters.store import SqlNotificationLog

log = logging.getLogger("subsidy.services.notify")

SERVICE_NAME = "subsidy.notify"  # health-checked name (notify has no RPC service of its own)


def build_channels(settings: Settings) -> list[Any]:
    channels: list[Any] = []
    if settings.smtp_url:
        channels.append(SmtpEmail(settings.smtp_url, settings.mail_from, settings.smtp_timeout_s,
                                  cafile=settings.smtp_cafile))
    else:
        channels.append(MailDirEmail(settings.mail_dir, settings.mail_from))
    if settings.webhook_secret or settings.webhook_keys:
        channels.append(Webhook(settings.webhook_secret, settings.webhook_timeout_s,
                                keys=parse_keys(settings.webhook_keys), active_key_id=settings.webhook_active_key_id))
    if settings.sms_gateway_url:
        channels.append(SmsGateway(settings.sms_gateway_url, settings.sms_timeout_s))
    return channels


def ensure_topics(bootstrap: str, stop: asyncio.Event | None = None) -> None:
    try:
        platform_topics.ensure_all(bootstrap, timeout=10)
    except Exception as exc:  # noqa: BLE001 - the consumer retries on its own
        log.warning("could not ensure the topics", extra={"fields": {"error": str(exc)[:300]}})


class NotifyApp:
    """One running notify service. ``await app.start()`` … ``await app.stop()``."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.db = Database(settings.database_url, store="notify")
        self.store = SqlNotificationLog(self.db)
        policy = load_policy()
        self.channels = build_channels(settings)
        self.deps = handlers.Deps(
            firms=build_registry(settings),
            log=self.store,
            channels=self.channels,
            titles={clause: c.title for clause, c in policy.clauses.items()},
            attempts=settings.attempts,
            backoff_s=settings.retry_backoff_s,
            max_backoff_s=settings.retry_max_backoff_s,
        )
        self.consumer = notify_consumer(self.deps, settings.kafka_bootstrap, group_id=settings.consumer_group,
                                        stall_s=settings.stall_s)
        self.health = health.aio.HealthServicer()
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
        # Health only: tiny messages in both directions.
        self.server, self.port = grpc_server.build_server(
            "notify", self.settings.grpc_address, self.health, max_receive_bytes=64 << 10, max_send_bytes=1 << 20)
        await self.server.start()
        await asyncio.to_thread(ensure_topics, self.settings.kafka_bootstrap)
        self.consumer.start()
        self._metrics = shared.start_endpoint(self.settings.metrics_address, log)
        self._health_task = asyncio.create_task(self._watch_health(), name="notify-health")
        log.info(
            "notify running",
            extra={"fields": {"grpc_port": self.port, "database": self.db.dialect,
                              "kafka": self.settings.kafka_bootstrap,
                              "channels": [c.name for c in self.channels],
                              "email": "smtp" if self.settings.smtp_url else "mail_dir",
                              "registry": "http" if self.settings.registry_url else "file"}},
        )

    def not_ready_reason(self) -> str | None:
        """Why notify is not ready, or None: the consumer runs and makes
        progress, the database answers. Blocking: run in a thread."""
        if not self.consumer.running:
            return "consumer not running"
        if not self.store.ping():
            return "database unreachable"
        return self.consumer.progress.stall_reason()

    async def _watch_health(self) -> None:
        """SERVING while ``not_ready_reason`` finds nothing."""
        current = None
        while True:
            reason = await asyncio.to_thread(self.not_ready_reason)
            status = SERVING if reason is None else NOT_SERVING
            if status != current:
                for service in ("", SERVICE_NAME):
                    await self.health.set(service, status)
                log.info("health", extra={"fields": {"status": "SERVING" if reason is None else "NOT_SERVING",
                                                     "reason": reason}})
                current = status
            await asyncio.sleep(self.settings.health_interval_s)

    async def stop(self) -> None:
        log.info("notify shutting down", extra={"fields": {"grace_s": self.settings.grace_s}})
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        await self.health.enter_graceful_shutdown()
        await asyncio.to_thread(self.consumer.stop, max(1.0, self.settings.grace_s))
        if self.server is not None:
            await self.server.stop(1.0)
        shared.stop_endpoint(self._metrics)
        self.db.close()
        log.info("notify stopped")


def main() -> int:
    settings = Settings.from_env()
    return process.main("notify", settings, lambda: NotifyApp(settings))
