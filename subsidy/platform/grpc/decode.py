"""Requests that are not the protobuf they claim to be get INVALID_ARGUMENT.

grpc decodes a request with the handler's deserializer before any code of
ours runs; a DecodeError there escapes into grpc itself, which answers
UNKNOWN "Unexpected DecodeError" and logs a traceback per request. This
interceptor, placed FIRST (outermost, so the other interceptors and the
servicer still receive decoded messages), takes the decoding over for unary
calls and refuses undecodable bytes cleanly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc

from subsidy.platform import metrics

log = logging.getLogger("subsidy.grpc")


class MalformedRequests(grpc.aio.ServerInterceptor):
    async def intercept_service(self, continuation: Callable, handler_call_details: Any) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or not handler.unary_unary or handler.request_deserializer is None:
            return handler
        decode, inner = handler.request_deserializer, handler.unary_unary
        service, method = metrics.split_method(handler_call_details.method)

        async def unary_unary(raw: bytes, context: Any) -> Any:
            try:
                request = decode(raw)
            except Exception as exc:  # noqa: BLE001 - DecodeError, or anything a deserializer raises
                metrics.GRPC_HANDLED.labels(service, method, "INVALID_ARGUMENT").inc()
                log.info("undecodable request refused", extra={"fields": {"grpc_method": method, "bytes": len(raw)}})
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"the request is not a valid {service}/{method} message: {type(exc).__name__}",
                )
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, request_deserializer=None, response_serializer=handler.response_serializer
        )
