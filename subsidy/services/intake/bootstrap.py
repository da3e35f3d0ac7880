"""The composition root: builds the adapters from Settings, wires them into
the core, runs the gRPC server, the outbox relay and the status projections
on the shared service skeleton (subsidy/platform/process.py: ServiceApp), and
shuts everything down in order. Nothing happens at import time.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from subsidy.core.policy import load_policy
from subsidy.core.proposals import load_proposals
from subsidy.core.workflow.settings import load_workflow
from subsidy.platform import metrics as shared
from subsidy.platform import process as process
from subsidy.platform.clock import clock_from_env
from subsidy.platform.db import Database
from subsidy.platform.topic_registry import registry_from_source
from subsidy.services.intake import handlers, metrics, model, proposals
from subsidy.services.intake.adapters.directory import FileDirectory
from subsidy.services.intake.adapters.expiry import ProposalExpiry
from subsidy.services.intake.adapters.grpc import SERVICE_NAME, IntakeServicer, ProposalServicer, build_server
from subsidy.services.intake.adapters.kafka import decision_projection, firm_facts_consumer, payout_projection
from subsidy.services.intake.adapters.migrations import HISTORY
from subsidy.services.intake.adapters.relay import OutboxRelay
from subsidy.services.intake.adapters.store import SqlStore
from subsidy.services.intake.config import Settings

log = logging.getLogger("subsidy.services.intake")


def build_registry(settings: Settings) -> Any:
    """SUBSIDY_REGISTRY_SOURCE chooses (file, http, topic); unset, as before:
    HTTP when SUBSIDY_REGISTRY_URL is set, else the file."""
    return registry_from_source(
        settings.registry_source,
        url=settings.registry_url,
        file=settings.registry_file,
        bootstrap=settings.kafka_bootstrap,
        timeout_s=settings.registry_timeout_s,
        attempts=settings.registry_attempts,
    )


class IntakeApp(process.ServiceApp):
    """One running intake service. ``await app.start()`` … ``await app.stop()``."""

    name = "intake"
    health_names = ("", SERVICE_NAME)

    def __init__(self, settings: Settings):
        db = Database(settings.database_url, store="intake")
        super().__init__(settings, db, HISTORY, log, gauges=self.refresh_gauges, refresh_s=settings.metrics_refresh_s)
        self.store = SqlStore(self.db)
        self.deps = handlers.Deps(
            store=self.store,
            registry=build_registry(settings),
            directory=FileDirectory(settings.directory_dir),
        )
        self.relay = OutboxRelay(self.store, settings.kafka_bootstrap)
        self.projection = decision_projection(
            self.deps, settings.kafka_bootstrap, group_id=settings.projection_group, stall_s=settings.stall_s
        )
        self.payout_projection = payout_projection(self.deps, settings.kafka_bootstrap, stall_s=settings.stall_s)
        self.servicer = IntakeServicer(self.deps, on_accepted=self.relay.wake)
        # 免申即享 (docs/proposals.md): the firm facts of subsidy.firms.v1 make proposals.
        self.proposal_deps = proposals.ProposalDeps(
            intake=self.deps,
            store=self.store,
            policy=load_policy(),
            rules=load_proposals(),
            workflow=load_workflow(),
            clock=clock_from_env(os.environ, fixed_today_variable="SUBSIDY_INTAKE_TODAY"),
        )
        self.proposal_servicer = ProposalServicer(self.proposal_deps, self.servicer, on_written=self.relay.wake)
        self.firms_consumer = (
            firm_facts_consumer(
                self.proposal_deps, settings.kafka_bootstrap, group_id=settings.firms_group, stall_s=settings.stall_s
            )
            if settings.proposals
            else None
        )
        self.expiry = ProposalExpiry(
            self.proposal_deps, settings.proposal_expiry_interval_s, on_expired=self.relay.wake
        )

    def build_server(self) -> tuple[Any, int]:
        return build_server(self.servicer, self.health, self.settings.grpc_address, proposals=self.proposal_servicer)

    def _consumers(self) -> list[Any]:
        return [c for c in (self.projection, self.payout_projection, self.firms_consumer) if c is not None]

    async def start_work(self) -> None:
        self.relay.start()
        for consumer in self._consumers():
            consumer.start()
        self.expiry.start()

    def started_fields(self) -> dict[str, Any]:
        return {
            "grpc_port": self.port,
            "address": self.settings.grpc_address,
            "database": self.db.dialect,
            "kafka": self.settings.kafka_bootstrap,
            "registry": type(self.deps.registry).__name__,
            "proposals": self.settings.proposals,
        }

    def not_ready_reason(self) -> str | None:
        """Why intake is not ready, or None: the database answers, the relay's
        Kafka producer runs and is not failing, and both projections make
        progress (subsidy.platform.metrics.stall_reason). Blocking: run in a thread."""
        if not self.store.ping():
            return "database unreachable"
        return self.relay.not_ready_reason(self.settings.stall_s) or process.stalled(*self._consumers())

    def readiness(self) -> process.Readiness:
        """Two answers:

        - ``""`` (the whole service): SERVING while ``not_ready_reason`` finds
          nothing — database, Kafka producer and both projections;
        - ``subsidy.v1.IntakeService`` (what the readiness probe asks): SERVING
          while submissions can be accepted, i.e. the database answers. The
          outbox exists so that intake keeps accepting while Kafka is down;
          taking intake out of service then would defeat it. Kafka trouble
          shows in the overall status, the outbox-backlog alert and the lag."""
        reason = self.not_ready_reason()
        accepting = reason is None or (reason != "database unreachable" and self.store.ping())
        return process.Readiness(
            reason, {"": reason is None, SERVICE_NAME: accepting}, {"accepting_submissions": accepting}
        )

    def refresh_gauges(self) -> None:
        count, oldest = self.store.outbox_stats()
        shared.OUTBOX_DEPTH.labels("intake").set(count)
        shared.OUTBOX_OLDEST_AGE.labels("intake").set(shared.age_seconds(oldest))
        counts = self.store.proposal_counts()
        for state in model.PROPOSAL_STATES:
            metrics.PROPOSALS_BY_STATE.labels(state).set(counts.get(state, 0))

    async def stop_work(self) -> None:
        """Stop accepting, let in-flight RPCs finish within the grace period,
        then stop the relay and the projections."""
        await self.stop_server(self.settings.grace_s)
        registry_stop = getattr(self.deps.registry, "stop", None)
        if registry_stop is not None:
            await asyncio.to_thread(registry_stop, 3.0)
        await asyncio.gather(
            asyncio.to_thread(self.relay.stop, 3.0),
            asyncio.to_thread(self.expiry.stop, 3.0),
            *(asyncio.to_thread(c.stop, 3.0) for c in self._consumers()),
        )


def main() -> int:
    settings = Settings.from_env()
    return process.main("intake", settings, lambda: IntakeApp(settings))
