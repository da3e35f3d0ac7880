"""The one builder of a service's grpc.aio server (intake, payout, notify and
eligibility's PolicyService all use it): every interceptor, health checking,
reflection, TLS, in one place, so no service can forget one.

Interceptors, outermost first, each applied once per method
(``InterceptOncePerMethod``):

1. ``MalformedRequests`` (subsidy/platform/grpc/decode.py): undecodable
   request bytes get INVALID_ARGUMENT, not grpc's UNKNOWN and a traceback;
2. ``GrpcMetricsInterceptor`` (subsidy/platform/metrics.py): every RPC counted
   by service, method and code, and timed;
3. the security interceptors (subsidy/platform/security): authentication and
   the access policy, when ``SUBSIDY_AUTH_MODE`` is not off.

Then the service's servicers, the standard health service
(``grpc.health.v1.Health``, which the Kubernetes probes ask), reflection
for the service's names when the security configuration allows it, and the
port, with TLS when configured (``GrpcSecurity.add_port`` logs the posture).

Secure by default: ``check_exposure`` refuses an address beyond loopback
without TLS or authentication unless ``SUBSIDY_DEV_MODE=1``.

With ``SUBSIDY_HEALTH_ADDRESS`` (or ``SUBSIDY_<SERVICE>_HEALTH_ADDRESS``) a
second, PLAINTEXT server listens there and serves ``grpc.health.v1.Health``
only: kubelet's gRPC probes cannot speak TLS. It answers the same statuses as
the main port, plus ``LIVENESS`` ("subsidy.liveness"), SERVING for as long as
the process's event loop answers: the liveness probe asks that name, so a
Kafka or database outage (which turns the readiness names NOT_SERVING) does
not restart pods. The two servers start and stop together (``Servers``).

The caller owns the health servicer and its statuses: intake, payout and
notify set them from their health watch (subsidy/platform/process.py),
eligibility from faust's readiness (its ``GrpcServer``, a mode.Service in the
faust worker's loop). The caller also starts the server and stops it with its
grace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from subsidy.platform.grpc.decode import MalformedRequests
from subsidy.platform.metrics import GrpcMetricsInterceptor
from subsidy.platform.security import GrpcSecurity
from subsidy.platform.security.config import check_exposure

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

#: The health name the liveness probe asks: SERVING while the process answers at all.
LIVENESS = "subsidy.liveness"

#: ``add_XServicer_to_server`` from the generated ``*_pb2_grpc`` module, and the servicer.
Servicer = tuple[Callable[[Any, Any], None], Any]


class InterceptOncePerMethod(grpc.aio.ServerInterceptor):
    """Applies ``interceptors`` (outermost first) once per method and reuses
    the handler they build for every later call of that method.

    grpc.aio runs each interceptor's ``intercept_service`` on every call, and
    ours build a fresh wrapped handler each time (closures, a method
    handler), which the same method always gets again: the result depends
    on the method name and the registered handler only. All per-call work —
    decoding (MalformedRequests), counting and timing
    (GrpcMetricsInterceptor), authentication and the access policy
    (AuthInterceptor) — happens inside the handler they return, so it still
    runs on every call. Only for interceptors of that kind: one that decides
    per call in ``intercept_service`` (e.g. from the metadata) must not be
    wrapped. Unknown methods are not remembered (a caller cannot grow the
    cache)."""

    def __init__(self, interceptors: list[grpc.aio.ServerInterceptor]):
        self._interceptors = tuple(interceptors)
        self._handlers: dict[str, Any] = {}

    async def intercept_service(self, continuation: Callable, handler_call_details: Any) -> Any:
        handler = self._handlers.get(handler_call_details.method)
        if handler is None:
            handler = await self._apply(0, continuation, handler_call_details)
            if handler is not None:
                self._handlers[handler_call_details.method] = handler
        return handler

    async def _apply(self, index: int, continuation: Callable, details: Any) -> Any:
        if index == len(self._interceptors):
            return await continuation(details)
        return await self._interceptors[index].intercept_service(
            lambda d: self._apply(index + 1, continuation, d), details
        )


class ProbeHealth(health_pb2_grpc.HealthServicer):
    """The health-only port's servicer: ``LIVENESS`` is always SERVING; any
    other name is answered by the service's own health servicer."""

    def __init__(self, health_servicer: health.aio.HealthServicer):
        self._health = health_servicer

    async def Check(self, request: Any, context: Any) -> Any:
        if request.service == LIVENESS:
            return health_pb2.HealthCheckResponse(status=SERVING)
        return await self._health.Check(request, context)

    async def Watch(self, request: Any, context: Any) -> Any:
        if request.service == LIVENESS:
            yield health_pb2.HealthCheckResponse(status=SERVING)
            return
        async for response in self._health.Watch(request, context):
            yield response


class Servers:
    """The main server and the health-only one, started and stopped together
    (what a caller of ``build_server`` does with a ``grpc.aio.Server``)."""

    def __init__(self, main: grpc.aio.Server, probes: grpc.aio.Server, probe_port: int):
        self.main = main
        self.probes = probes
        self.probe_port = probe_port

    async def start(self) -> None:
        await self.main.start()
        await self.probes.start()

    async def stop(self, grace: float | None) -> None:
        await self.main.stop(grace)
        await self.probes.stop(None)

    async def wait_for_termination(self, timeout: float | None = None) -> bool:
        return await self.main.wait_for_termination(timeout)


def build_health_server(address: str, health_servicer: health.aio.HealthServicer) -> tuple[grpc.aio.Server, int]:
    """A plaintext server on ``address`` answering grpc.health.v1 only (``ProbeHealth``)."""
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 4096)])
    health_pb2_grpc.add_HealthServicer_to_server(ProbeHealth(health_servicer), server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"cannot listen on {address}")
    return server, port


def build_server(
    service: str,
    address: str,
    health_servicer: health.aio.HealthServicer,
    *,
    servicers: Iterable[Servicer] = (),
    service_names: Iterable[str] = (),
    max_receive_bytes: int,
    max_send_bytes: int,
    security: GrpcSecurity | None = None,
) -> tuple[grpc.aio.Server, int]:
    """The server of ``service`` (its name in the security settings:
    ``SUBSIDY_<SERVICE>_TLS_…``) on ``address``, not started; returns it and
    the bound port. ``service_names`` are the full names of the servicers'
    services, offered by reflection beside health and reflection itself.
    ``security`` defaults to the one the environment configures. With a
    health address configured, the server returned is a ``Servers`` (the
    main server and the health-only one)."""
    security = security or GrpcSecurity.from_env(service)
    check_exposure(security.config, address)
    server = grpc.aio.server(
        interceptors=[
            InterceptOncePerMethod([MalformedRequests(), GrpcMetricsInterceptor(), *security.interceptors()])
        ],
        options=[
            ("grpc.max_receive_message_length", max_receive_bytes),
            ("grpc.max_send_message_length", max_send_bytes),
        ],
    )
    for add, servicer in servicers:
        add(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    security.enable_reflection(server, (*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME))
    port = security.add_port(server, address)
    if port == 0:
        raise RuntimeError(f"cannot listen on {address}")
    if security.config.health_address:
        probes, probe_port = build_health_server(security.config.health_address, health_servicer)
        return Servers(server, probes, probe_port), port
    return server, port
