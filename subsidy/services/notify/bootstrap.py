"""The composition root: builds the adapters from Settings, wires them into
the core, runs the consumer and the gRPC health server on the shared service
skeleton (subsidy/platform/process.py: ServiceApp), and shuts down in order.
Nothing happens at import time."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from subsidy.core.policy import load_policy
from subsidy.platform import process as process
from subsidy.platform import topics as platform_topics
from subsidy.platform.db import Database
from subsidy.platform.grpc import server as grpc_server
from subsidy.services.notify import handlers
from subsidy.services.notify.adapters.channels import MailDirEmail, SmsGateway, SmtpEmail, Webhook, parse_keys
from subsidy.services.notify.adapters.contacts import build_registry
from subsidy.services.notify.adapters.kafka import notify_consumer
from subsidy.services.notify.adapters.migrations import HISTORY
from subsidy.services.notify.adapters.store import SqlNotificationLog
from subsidy.services.notify.config import Settings

log = logging.getLogger("subsidy.services.notify")

SERVICE_NAME = "subsidy.notify"  # health-checked name (notify has no RPC service of its own)


def build_channels(settings: Settings) -> list[Any]:
    channels: list[Any] = []
    if settings.smtp_url:
        channels.append(
            SmtpEmail(settings.smtp_url, settings.mail_from, settings.smtp_timeout_s, cafile=settings.smtp_cafile)
        )
    else:
        channels.append(MailDirEmail(settings.mail_dir, settings.mail_from))
    if settings.webhook_secret or settings.webhook_keys:
        channels.append(
            Webhook(
                settings.webhook_secret,
                settings.webhook_timeout_s,
                keys=parse_keys(settings.webhook_keys),
                active_key_id=settings.webhook_active_key_id,
                allow_http_loopback=settings.webhook_http_loopback_allowed,
            )
        )
    if settings.sms_gateway_url:
        channels.append(SmsGateway(settings.sms_gateway_url, settings.sms_timeout_s))
    return channels


def ensure_topics(bootstrap: str, stop: asyncio.Event | None = None) -> None:
    try:
        platform_topics.ensure_all(bootstrap, timeout=10)
    except Exception as exc:  # noqa: BLE001 - the consumer retries on its own
        log.warning("could not ensure the topics", extra={"fields": {"error": str(exc)[:300]}})


class NotifyApp(process.ServiceApp):
    """One running notify service. ``await app.start()`` … ``await app.stop()``."""

    name = "notify"
    health_names = ("", SERVICE_NAME)
    started = "running"

    def __init__(self, settings: Settings):
        super().__init__(settings, Database(settings.database_url, store="notify"), HISTORY, log)
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
        self.consumer = notify_consumer(
            self.deps, settings.kafka_bootstrap, group_id=settings.consumer_group, stall_s=settings.stall_s
        )

    def build_server(self) -> tuple[Any, int]:
        # Health only: tiny messages in both directions.
        return grpc_server.build_server(
            "notify", self.settings.grpc_address, self.health, max_receive_bytes=64 << 10, max_send_bytes=1 << 20
        )

    async def start_work(self) -> None:
        await asyncio.to_thread(ensure_topics, self.settings.kafka_bootstrap)
        self.consumer.start()

    def started_fields(self) -> dict[str, Any]:
        return {
            "grpc_port": self.port,
            "database": self.db.dialect,
            "kafka": self.settings.kafka_bootstrap,
            "channels": [c.name for c in self.channels],
            "email": "smtp" if self.settings.smtp_url else "mail_dir",
            "registry": type(self.deps.firms).__name__,
        }

    def not_ready_reason(self) -> str | None:
        """Why notify is not ready, or None: the consumer runs and makes
        progress, the database answers. Blocking: run in a thread."""
        if not self.consumer.running:
            return "consumer not running"
        if not self.store.ping():
            return "database unreachable"
        return self.consumer.progress.stall_reason()

    async def stop_work(self) -> None:
        # The consumer first: a record in the middle of its delivery retries
        # gets the grace period; the health-only server has nothing in flight.
        await asyncio.to_thread(self.consumer.stop, max(1.0, self.settings.grace_s))
        registry_stop = getattr(self.deps.firms, "stop", None)
        if registry_stop is not None:  # the topic registry's reader thread
            await asyncio.to_thread(registry_stop, 3.0)
        await self.stop_server(1.0)


def main() -> int:
    settings = Settings.from_env()
    return process.main("notify", settings, lambda: NotifyApp(settings))
