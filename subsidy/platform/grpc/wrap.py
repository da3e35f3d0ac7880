"""Wrapping a grpc.aio method handler of any of the four kinds, for server
interceptors that do something around every call (count and time it,
authenticate and authorize it): one place for the four handler shapes
instead of four copies in each interceptor."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager as AsyncContextManager
from typing import Any

import grpc

#: ``around(request, context)``: entered before the call, exited after it (the
#: last response sent, or the error raised). ``request`` is None for methods
#: with streaming requests: there is no single request to look into.
Around = Callable[[Any, Any], AsyncContextManager[Any]]


def wrap_handler(handler: Any, around: Around) -> Any:
    """``handler`` with each call run inside ``around``; any other object as it is."""
    serializers = dict(
        request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
    )
    if handler.unary_unary:
        inner = handler.unary_unary

        async def unary_unary(request: Any, context: Any) -> Any:
            async with around(request, context):
                return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, **serializers)
    if handler.unary_stream:
        inner_us = handler.unary_stream

        async def unary_stream(request: Any, context: Any) -> Any:
            async with around(request, context):
                async for response in responses(inner_us(request, context)):
                    yield response

        return grpc.unary_stream_rpc_method_handler(unary_stream, **serializers)
    if handler.stream_unary:
        inner_su = handler.stream_unary

        async def stream_unary(requests: Any, context: Any) -> Any:
            async with around(None, context):
                return await inner_su(requests, context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, **serializers)
    if handler.stream_stream:
        inner_ss = handler.stream_stream

        async def stream_stream(requests: Any, context: Any) -> Any:
            async with around(None, context):
                async for response in responses(inner_ss(requests, context)):
                    yield response

        return grpc.stream_stream_rpc_method_handler(stream_stream, **serializers)
    return handler


async def responses(result: Any) -> Any:
    """A streaming handler is an async generator, or a coroutine that writes
    with context.write and returns None."""
    if hasattr(result, "__aiter__"):
        async for item in result:
            yield item
    else:
        value = await result
        if value is not None:
            yield value
