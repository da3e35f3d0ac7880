"""The real gRPC servers of intake, eligibility (PolicyService), payout and review,
built by the services' own code with a given GrpcSecurity, running in one
background event loop. No Kafka: these tests are about the edge."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from grpc_health.v1 import health, health_pb2

from subsidy.platform.security import GrpcSecurity, SecurityConfig

REPO = Path(__file__).resolve().parents[2]


class Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="grpc-test-loop")
        self.thread.start()

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def security_for(service: str, tmp: Path, **env: str) -> GrpcSecurity:
    return GrpcSecurity(SecurityConfig.from_env(service, {k: v for k, v in env.items() if v}))


class Servers:
    """intake, eligibility, payout: ``addresses[name]``; ``stop()``."""

    def __init__(self, loop: Loop, tmp: Path, securities: dict[str, GrpcSecurity]):
        self.loop = loop
        self.tmp = tmp
        self.securities = securities
        self.servers: dict[str, Any] = {}
        self.ports: dict[str, int] = {}
        self.intake_deps: Any = None
        self.payout_store: Any = None
        self.review_store: Any = None

    async def _start(self) -> None:
        from subsidy.core.policy import load_policy
        from subsidy.platform.clock import SystemClock
        from subsidy.platform.db import Database
        from subsidy.platform.registry import FileRegistry
        from subsidy.services.eligibility.adapters.grpc import GrpcServer
        from subsidy.services.intake import handlers
        from subsidy.services.intake.adapters.directory import FileDirectory
        from subsidy.services.intake.adapters.grpc import IntakeServicer
        from subsidy.services.intake.adapters.grpc import build_server as build_intake
        from subsidy.services.intake.adapters.store import SqlStore as IntakeStore
        from subsidy.services.payout.adapters.grpc import PayoutServicer
        from subsidy.services.payout.adapters.grpc import build_server as build_payout
        from subsidy.services.payout.adapters.store import SqlStore as PayoutStore

        if "intake" in self.securities:
            store = IntakeStore(Database(f"sqlite:///{self.tmp / 'intake.db'}", store="intake"))
            store.create_schema()
            self.intake_deps = handlers.Deps(
                store=store,
                registry=FileRegistry(REPO / "demo" / "registry.json"),
                directory=FileDirectory(REPO / "policy" / "directory"),
            )
            hs = health.aio.HealthServicer()
            await hs.set("", health_pb2.HealthCheckResponse.SERVING)
            from subsidy.core.policy import load_policy
            from subsidy.core.proposals import load_proposals
            from subsidy.core.workflow.settings import load_workflow
            from subsidy.services.intake.adapters.grpc import ProposalServicer
            from subsidy.services.intake.proposals import ProposalDeps

            intake_servicer = IntakeServicer(self.intake_deps)
            self.proposal_deps = ProposalDeps(
                intake=self.intake_deps,
                store=store,
                policy=load_policy(),
                rules=load_proposals(),
                workflow=load_workflow(),
                clock=SystemClock(),
            )
            server, port = build_intake(
                intake_servicer,
                hs,
                "127.0.0.1:0",
                security=self.securities["intake"],
                proposals=ProposalServicer(self.proposal_deps, intake_servicer),
            )
            await server.start()
            self.servers["intake"], self.ports["intake"] = server, port
        if "payout" in self.securities:
            self.payout_store = PayoutStore(Database(f"sqlite:///{self.tmp / 'payout.db'}", store="payout"))
            self.payout_store.create_schema()
            hs = health.aio.HealthServicer()
            await hs.set("", health_pb2.HealthCheckResponse.SERVING)
            server, port = build_payout(
                PayoutServicer(self.payout_store, SystemClock()), hs, "127.0.0.1:0", security=self.securities["payout"]
            )
            await server.start()
            self.servers["payout"], self.ports["payout"] = server, port
        if "review" in self.securities:
            from subsidy.core.workflow.settings import load_workflow
            from subsidy.services.review.adapters.grpc import ReviewServicer
            from subsidy.services.review.adapters.grpc import build_server as build_review
            from subsidy.services.review.adapters.store import SqlStore as ReviewStore

            self.review_store = ReviewStore(Database(f"sqlite:///{self.tmp / 'review.db'}", store="review"))
            self.review_store.create_schema()
            hs = health.aio.HealthServicer()
            await hs.set("", health_pb2.HealthCheckResponse.SERVING)
            server, port = build_review(
                ReviewServicer(self.review_store, load_workflow(), SystemClock()),
                hs,
                "127.0.0.1:0",
                security=self.securities["review"],
            )
            await server.start()
            self.servers["review"], self.ports["review"] = server, port
        if "operations" in self.securities:
            from subsidy.services.operations.adapters.grpc import OperationsServicer
            from subsidy.services.operations.adapters.grpc import build_server as build_operations
            from subsidy.services.operations.adapters.store import SqlStore as OperationsStore

            self.operations_store = OperationsStore(
                Database(f"sqlite:///{self.tmp / 'operations.db'}", store="operations")
            )
            self.operations_store.create_schema()
            hs = health.aio.HealthServicer()
            await hs.set("", health_pb2.HealthCheckResponse.SERVING)
            server, port = build_operations(
                OperationsServicer(self.operations_store, SystemClock()),
                hs,
                "127.0.0.1:0",
                security=self.securities["operations"],
            )
            await server.start()
            self.servers["operations"], self.ports["operations"] = server, port
        if "eligibility" in self.securities:
            grpc_server = GrpcServer(
                "127.0.0.1:0", load_policy(), ready=lambda: True, security=self.securities["eligibility"]
            )
            await grpc_server.on_start()
            self.servers["eligibility"], self.ports["eligibility"] = grpc_server.server, grpc_server.port

    def start(self) -> Servers:
        self.loop.run(self._start(), timeout=60)
        return self

    def address(self, name: str, host: str = "127.0.0.1") -> str:
        return f"{host}:{self.ports[name]}"

    def stop(self) -> None:
        async def _stop() -> None:
            for server in self.servers.values():
                await server.stop(0)

        self.loop.run(_stop())


def call(
    channel: Any, full_method: str, request: Any, response_type: Any, metadata: tuple = (), timeout: float = 10
) -> Any:
    method = channel.unary_unary(
        full_method, request_serializer=lambda m: m.SerializeToString(), response_deserializer=response_type.FromString
    )
    return method(request, metadata=metadata, timeout=timeout)
