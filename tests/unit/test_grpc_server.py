"""subsidy/platform/grpc/server.py, the one builder of the services' gRPC
servers: every interceptor is on the server it builds (a real one, on a
loopback port), and InterceptOncePerMethod builds a method's handler once
while what the interceptors wrap around it still runs on every call."""

from __future__ import annotations

import asyncio
import types

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from subsidy.platform.grpc.server import SERVING, InterceptOncePerMethod, build_server
from subsidy.platform.metrics import GRPC_HANDLED
from subsidy.platform.security import GrpcSecurity, SecurityConfig


class Recording(grpc.aio.ServerInterceptor):
    def __init__(self, name: str, log: list):
        self.name, self.log = name, log

    async def intercept_service(self, continuation, details):
        self.log.append(f"build {self.name} {details.method}")
        handler = await continuation(details)
        if handler is None:
            return None
        inner = handler.unary_unary

        async def unary_unary(request, context):
            self.log.append(f"call {self.name}")
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary)


def test_handlers_are_built_once_per_method_and_the_wrappers_run_on_every_call_in_order():
    log: list = []

    async def servicer(request, context):
        log.append("servicer")
        return request

    registered = {"/s/M": grpc.unary_unary_rpc_method_handler(servicer)}

    async def continuation(details):
        return registered.get(details.method)

    intercept = InterceptOncePerMethod([Recording("outer", log), Recording("inner", log)])

    async def call(method):
        handler = await intercept.intercept_service(continuation, types.SimpleNamespace(method=method))
        return None if handler is None else await handler.unary_unary("req", None)

    async def scenario():
        assert await call("/s/M") == "req"
        assert await call("/s/M") == "req"
        assert await call("/s/Unknown") is None
        assert await call("/s/Unknown") is None

    asyncio.run(scenario())
    assert log == [
        "build outer /s/M",
        "build inner /s/M",
        "call outer",
        "call inner",
        "servicer",
        "call outer",
        "call inner",
        "servicer",
        # an unknown method is looked up again each time, never remembered
        "build outer /s/Unknown",
        "build inner /s/Unknown",
        "build outer /s/Unknown",
        "build inner /s/Unknown",
    ]


def test_the_built_server_answers_health_and_has_the_decoding_and_metrics_interceptors():
    security = GrpcSecurity(SecurityConfig.from_env("unit", {}))  # plaintext, authentication off

    async def scenario():
        health_servicer = health.aio.HealthServicer()
        await health_servicer.set("", SERVING)
        server, port = build_server(
            "unit", "127.0.0.1:0", health_servicer, max_receive_bytes=1 << 10, max_send_bytes=1 << 10, security=security
        )
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                check = health_pb2_grpc.HealthStub(channel).Check
                answer = await check(health_pb2.HealthCheckRequest(service=""))
                garbage = channel.unary_unary(
                    "/grpc.health.v1.Health/Check", request_serializer=lambda b: b, response_deserializer=lambda b: b
                )
                try:
                    await garbage(b"\xff\xff\xff")
                    refused = None
                except grpc.aio.AioRpcError as exc:
                    refused = exc.code()
        finally:
            await server.stop(0)
        return answer.status, refused

    counted = GRPC_HANDLED.labels("grpc.health.v1.Health", "Check", "OK")
    before = counted._value.get()
    status, refused = asyncio.run(scenario())
    assert status == SERVING
    assert counted._value.get() == before + 1, "GrpcMetricsInterceptor counted the call"
    assert refused == grpc.StatusCode.INVALID_ARGUMENT, "MalformedRequests refused the undecodable request"
