"""The composition root: builds the store, the three consumers, the relay,
the scheduler and the gRPC server from Settings, runs them on the shared
service skeleton (subsidy/platform/process.py: ServiceApp), and shuts them
down in order. Nothing happens at import time.

The clock (subsidy/platform/clock.py ``clock_from_env``): the dev stack's
DevClock when SUBSIDY_DEV_CLOCK_FILE is set (refused unless
SUBSIDY_DEV_MODE=1), else a fixed day from SUBSIDY_REVIEW_TODAY, else the
real time. Tests inject a FixedClock."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from subsidy.core.workflow import calendar
from subsidy.core.workflow import review as review_rules
from subsidy.core.workflow.settings import WorkflowSettings, load_workflow
from subsidy.platform import metrics as shared
from subsidy.platform import process
from subsidy.platform.clock import Clock, clock_from_env
from subsidy.platform.db import Database
from subsidy.services.review import metrics
from subsidy.services.review.adapters import document
from subsidy.services.review.adapters import kafka as consumers
from subsidy.services.review.adapters.grpc import SERVICE_NAME, ReviewServicer, build_server
from subsidy.services.review.adapters.migrations import HISTORY
from subsidy.services.review.adapters.relay import OutboxRelay
from subsidy.services.review.adapters.scheduler import Scheduler
from subsidy.services.review.adapters.store import SqlStore
from subsidy.services.review.config import Settings

log = logging.getLogger("subsidy.services.review")


class ReviewApp(process.ServiceApp):
    """One running review service. ``await app.start()`` … ``await app.stop()``."""

    name = "review"
    health_names = ("", SERVICE_NAME)

    def __init__(self, settings: Settings, clock: Clock | None = None, workflow: WorkflowSettings | None = None):
        db = Database(settings.database_url, store="review", pool_size=6)
        super().__init__(settings, db, HISTORY, log, gauges=self.refresh_gauges, refresh_s=settings.metrics_refresh_s)
        self.clock = clock or clock_from_env(os.environ, fixed_today_variable="SUBSIDY_REVIEW_TODAY")
        self.workflow = workflow or load_workflow(Path(settings.workflow_file) if settings.workflow_file else None)
        self.font = settings.notice_font
        # fontTools logs every table it subsets at INFO (a dozen lines per PDF): only its warnings.
        logging.getLogger("fontTools").setLevel(logging.WARNING)
        document.find_font(self.font)  # no notice PDF without a CJK font: refuse at start, naming the fix
        self.store = SqlStore(self.db)
        self.relay = OutboxRelay(self.store, settings.kafka_bootstrap)
        common: dict[str, Any] = {"session_timeout_ms": settings.session_timeout_ms, "stall_s": settings.stall_s}
        self.decisions = consumers.decisions_consumer(
            self.store,
            self.workflow,
            self.clock,
            settings.kafka_bootstrap,
            settings.decisions_group,
            self.relay.wake,
            **common,
        )
        self.payouts = consumers.payouts_consumer(
            self.store, self.clock, settings.kafka_bootstrap, settings.payouts_group, **common
        )
        self.applications = consumers.applications_consumer(
            self.store, self.clock, settings.kafka_bootstrap, settings.applications_group, **common
        )
        self.scheduler = Scheduler(self.store, self.clock, settings.scheduler_interval_s, self.relay.wake)
        self.servicer = ReviewServicer(self.store, self.workflow, self.clock, self.relay.wake, self.font)

    @property
    def consumers(self) -> tuple[Any, ...]:
        return (self.decisions, self.payouts, self.applications)

    def build_server(self) -> tuple[Any, int]:
        return build_server(self.servicer, self.health, self.settings.grpc_address)

    async def start_work(self) -> None:
        self.relay.start()
        for consumer in self.consumers:
            consumer.start()
        self.scheduler.start()

    def started_fields(self) -> dict[str, Any]:
        return {
            "grpc_port": self.port,
            "address": self.settings.grpc_address,
            "database": self.db.dialect,
            "kafka": self.settings.kafka_bootstrap,
            "group": self.settings.decisions_group,
            "today": self.clock.today().isoformat(),
            "clock": type(self.clock).__name__,
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
        shared.OUTBOX_DEPTH.labels("review").set(count)
        shared.OUTBOX_OLDEST_AGE.labels("review").set(shared.age_seconds(oldest))
        today = self.clock.today()
        by_status, overdue = self.store.item_stats(today)
        for status in review_rules.STATES:
            metrics.ITEMS.labels(status).set(by_status.get(status, 0))
        metrics.ITEMS_OVERDUE.set(overdue)
        metrics.CALENDAR_REMAINING.set((calendar.last_known_day(today) - today).days * 86_400)

    async def stop_work(self) -> None:
        await self.stop_server(self.settings.grace_s)
        await asyncio.gather(
            *(asyncio.to_thread(c.stop, 5.0) for c in self.consumers),
            asyncio.to_thread(self.scheduler.stop, 5.0),
        )
        await asyncio.to_thread(self.relay.stop, 3.0)


def main() -> int:
    settings = Settings.from_env()
    return process.main("review", settings, lambda: ReviewApp(settings))
