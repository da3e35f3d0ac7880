"""The gRPC edge: subsidy.v1.OperationsService on grpc.aio, built with every
interceptor, health checking and reflection by subsidy/platform/grpc/server.py.
Each RPC runs its use case (handlers.py) in a worker thread and maps errors:

    InvalidArgument       INVALID_ARGUMENT (google.rpc.BadRequest names the field)
    NotFound              NOT_FOUND
    FailedPrecondition    FAILED_PRECONDITION (a letter already handled, one that cannot be replayed)
    PermissionDenied      PERMISSION_DENIED (not an OPERATOR, no subject)
    DatabaseUnavailable   UNAVAILABLE
    anything else         INTERNAL (logged with its traceback)

Who acts is the authenticated caller (subsidy.platform.security.identity):
the token's subject and role. With authentication off (dev and tests only)
the caller names itself in ``x-subsidy-subject`` and ``x-subsidy-role``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health

from subsidy.core.dates import rfc3339
from subsidy.platform import logs
from subsidy.platform.clock import Clock
from subsidy.platform.db import DatabaseUnavailable
from subsidy.platform.grpc import server as grpc_server
from subsidy.platform.grpc import status as rich_status
from subsidy.platform.security import GrpcSecurity
from subsidy.platform.security.identity import current
from subsidy.services.operations import handlers, metrics
from subsidy.services.operations.model import (
    Actor,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    attempts_of,
    text_of,
)
from subsidy.services.operations.ports import Store
from subsidy.v1 import operations_pb2, operations_pb2_grpc

log = logging.getLogger("subsidy.services.operations.adapters.grpc")

SERVICE_NAME = operations_pb2.DESCRIPTOR.services_by_name["OperationsService"].full_name
MAX_RECEIVE_BYTES = 64 << 10
MAX_SEND_BYTES = 64 << 20  # a page of letters, each up to the DLQ's 512 KiB


def letter_to_proto(v: handlers.LetterView) -> Any:
    s, e, d = v.stored, v.envelope, v.decoded
    return operations_pb2.DeadLetterView(
        letter_id=s.letter_id,
        dlq_topic=s.dlq_topic,
        source_topic=e.source_topic,
        source_partition=e.source_partition,
        source_offset=e.source_offset,
        key=text_of(e.key),
        reason=e.reason or e.envelope_error,
        consumer=e.consumer,
        attempts=attempts_of(e.reason),
        failed_at=e.failed_at,
        event_id=next((text_of(val) for k, val in s.headers if k == "ce_id"), ""),
        truncated=e.truncated,
        original_value_size=e.original_value_size,
        original_value_sha256=e.original_value_sha256,
        value_type=d.value_type,
        value_json=d.value_json,
        decode_error=d.error,
        value_preview=d.preview,
        value_size=len(e.value),
        header_names=[k for k, _ in e.headers],
        state=s.state,
        handled_by=s.handled_by,
        handled_at=s.handled_at,
        handled_reason=s.handled_reason,
        received_at=s.received_at,
        replayable=s.state == "PENDING" and not v.not_replayable,
        not_replayable_reason=v.not_replayable,
    )


def actor_of(context: Any) -> Actor:
    principal = current()
    if principal is not None:
        return Actor(principal.subject, principal.role)
    metadata = dict(context.invocation_metadata() or ())
    return Actor(
        str(metadata.get("x-subsidy-subject", "")).strip(), str(metadata.get("x-subsidy-role", "")).strip().upper()
    )


class OperationsServicer(operations_pb2_grpc.OperationsServiceServicer):
    def __init__(self, store: Store, clock: Clock, on_written: Callable[[], None] = lambda: None):
        self.store = store
        self.clock = clock
        self.on_written = on_written

    async def _fail(self, context: Any, rpc: str, exc: BaseException) -> None:
        trailers: tuple = ()
        if isinstance(exc, InvalidArgument):
            code = grpc.StatusCode.INVALID_ARGUMENT
            trailers = (
                (
                    rich_status.DETAILS_KEY,
                    rich_status.bad_request_details(code.value[0], str(exc), [(exc.field, str(exc))]),
                ),
            )
        elif isinstance(exc, NotFound):
            code = grpc.StatusCode.NOT_FOUND
        elif isinstance(exc, FailedPrecondition):
            code = grpc.StatusCode.FAILED_PRECONDITION
        elif isinstance(exc, PermissionDenied):
            code = grpc.StatusCode.PERMISSION_DENIED
        elif isinstance(exc, DatabaseUnavailable):
            code = grpc.StatusCode.UNAVAILABLE
        else:
            log.error(f"{rpc} failed", exc_info=exc)
            metrics.REFUSED.labels(rpc, "INTERNAL").inc()
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the operations logs")
            return
        metrics.REFUSED.labels(rpc, code.name).inc()
        log.info(f"{rpc} refused", extra=logs.fields(code=code.name, reason=str(exc)[:300]))
        await context.abort(code, str(exc), trailing_metadata=trailers)

    async def _run(self, context: Any, rpc: str, work: Callable[[], Any]) -> Any:
        try:
            return await asyncio.to_thread(work)
        except Exception as exc:
            await self._fail(context, rpc, exc)
            raise

    async def ListDeadLetterTopics(self, request: Any, context: Any) -> Any:
        rows = await self._run(context, "ListDeadLetterTopics", lambda: handlers.list_topics(self.store))
        return operations_pb2.ListDeadLetterTopicsResponse(
            topics=[
                operations_pb2.DeadLetterTopicSummary(
                    topic=topic, pending=c["PENDING"], replayed=c["REPLAYED"], discarded=c["DISCARDED"]
                )
                for topic, c in rows
            ]
        )

    async def ListDeadLetters(self, request: Any, context: Any) -> Any:
        views, token = await self._run(
            context,
            "ListDeadLetters",
            lambda: handlers.list_letters(
                self.store, request.topic, request.state, request.page_size, request.page_token
            ),
        )
        return operations_pb2.ListDeadLettersResponse(
            letters=[letter_to_proto(v) for v in views], next_page_token=token
        )

    async def GetDeadLetter(self, request: Any, context: Any) -> Any:
        v, trail = await self._run(context, "GetDeadLetter", lambda: handlers.get_letter(self.store, request.letter_id))
        return operations_pb2.GetDeadLetterResponse(
            letter=letter_to_proto(v),
            audit=[
                operations_pb2.DeadLetterAudit(
                    action=a.action, subject=a.subject, role=a.role, reason=a.reason, at=a.at
                )
                for a in trail
            ],
        )

    async def ReplayDeadLetter(self, request: Any, context: Any) -> Any:
        actor = actor_of(context)
        v = await self._run(
            context,
            "ReplayDeadLetter",
            lambda: handlers.replay(self.store, request.letter_id, request.reason, actor, rfc3339(self.clock.now())),
        )
        metrics.HANDLED.labels(v.stored.dlq_topic, "REPLAYED").inc()
        log.info(
            "dead letter replayed",
            extra=logs.fields(letter_id=v.stored.letter_id, to=v.envelope.source_topic, by=actor.subject),
        )
        self.on_written()
        return operations_pb2.ReplayDeadLetterResponse(letter=letter_to_proto(v))

    async def DiscardDeadLetter(self, request: Any, context: Any) -> Any:
        actor = actor_of(context)
        v = await self._run(
            context,
            "DiscardDeadLetter",
            lambda: handlers.discard(self.store, request.letter_id, request.reason, actor, rfc3339(self.clock.now())),
        )
        metrics.HANDLED.labels(v.stored.dlq_topic, "DISCARDED").inc()
        log.info("dead letter discarded", extra=logs.fields(letter_id=v.stored.letter_id, by=actor.subject))
        return operations_pb2.DiscardDeadLetterResponse(letter=letter_to_proto(v))


def build_server(
    servicer: OperationsServicer,
    health_servicer: health.aio.HealthServicer,
    address: str,
    security: GrpcSecurity | None = None,
) -> tuple[grpc.aio.Server, int]:
    return grpc_server.build_server(
        "operations",
        address,
        health_servicer,
        servicers=[(operations_pb2_grpc.add_OperationsServiceServicer_to_server, servicer)],
        service_names=[SERVICE_NAME],
        max_receive_bytes=MAX_RECEIVE_BYTES,
        max_send_bytes=MAX_SEND_BYTES,
        security=security,
    )
