"""subsidy.services.intake.adapters.grpc.InterceptOncePerMethod: the interceptors build a
method's handler once; what they wrap around it still runs on every call."""

from __future__ import annotations

import asyncio
import types

import grpc

from subsidy.services.intake.adapters.grpc import InterceptOncePerMethod


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
        "build outer /s/M", "build inner /s/M", "call outer", "call inner", "servicer",
        "call outer", "call inner", "servicer",
        # an unknown method is looked up again each time, never remembered
        "build outer /s/Unknown", "build inner /s/Unknown",
        "build outer /s/Unknown", "build inner /s/Unknown",
    ]
