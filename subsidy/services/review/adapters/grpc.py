"""The gRPC edge: subsidy.v1.ReviewService on grpc.aio, built with every
interceptor, health checking and reflection by subsidy/platform/grpc/server.py.
Each RPC runs its use case (handlers.py) in a worker thread and maps errors:

    InvalidArgument                  INVALID_ARGUMENT (google.rpc.BadRequest names the field)
    NotFound                         NOT_FOUND
    FailedPrecondition               FAILED_PRECONDITION (a closed item, an objection after the period)
    NoticePoolEmpty                  FAILED_PRECONDITION, google.rpc.PreconditionFailure NOTICE_POOL_EMPTY
    CalendarNotCovered               FAILED_PRECONDITION, PreconditionFailure CALENDAR_NOT_COVERED (subject: the year)
    FontMissing                      FAILED_PRECONDITION
    PermissionDenied                 PERMISSION_DENIED (four-eyes: the same subject twice)
    DatabaseUnavailable              UNAVAILABLE
    anything else                    INTERNAL (logged with its traceback)

Who acts is the authenticated caller (subsidy.platform.security.identity):
the token's subject and role. With authentication off (SUBSIDY_AUTH_MODE=off,
dev and tests only) the caller names itself in the metadata
``x-subsidy-subject`` and ``x-subsidy-role``; a step without a subject is
refused, so four-eyes never compares two empty names.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health

from subsidy.core.workflow.calendar import CalendarNotCovered
from subsidy.core.workflow.review import ReviewItem
from subsidy.core.workflow.settings import WorkflowSettings
from subsidy.platform import logs
from subsidy.platform.clock import Clock
from subsidy.platform.db import DatabaseUnavailable
from subsidy.platform.grpc import server as grpc_server
from subsidy.platform.grpc import status as rich_status
from subsidy.platform.security import GrpcSecurity
from subsidy.platform.security.identity import current
from subsidy.services.review import handlers, metrics, model
from subsidy.services.review.adapters import document
from subsidy.services.review.model import (
    Actor,
    FailedPrecondition,
    InvalidArgument,
    LineRow,
    NotFound,
    NoticeRow,
    PermissionDenied,
)
from subsidy.services.review.ports import UnitOfWork
from subsidy.v1 import application_pb2, decision_pb2, review_pb2, review_pb2_grpc

log = logging.getLogger("subsidy.services.review.adapters.grpc")

SERVICE_NAME = review_pb2.DESCRIPTOR.services_by_name["ReviewService"].full_name
MAX_RECEIVE_BYTES = 1 << 20
MAX_SEND_BYTES = 32 << 20  # a notice's PDF


def item_to_proto(item: ReviewItem, deadline: dt.date, today: dt.date) -> Any:
    d = item.decision
    reviewed = f"{d.decision_id}/review:{item.item_id}" if item.closed else ""
    return review_pb2.ReviewItem(
        item_id=item.item_id,
        decision_id=d.decision_id,
        application_id=d.application_id,
        credit_code=d.credit_code,
        clause=d.clause,
        outcome=d.outcome,
        max_award_fen=d.max_award_fen,
        review_reasons=list(item.reasons),
        status=item.status,
        assignee=item.assignee,
        queued_on=item.queued_on.isoformat(),
        deadline="" if deadline == handlers.NO_DEADLINE else deadline.isoformat(),
        overdue=not item.closed and today > deadline,
        amount_fen=item.amount_fen,
        basis=item.basis,
        rejection_reasons=item.rejection_reasons,
        first_reviewer=item.first_reviewer,
        second_reviewer=item.second_reviewer,
        information_requests=[
            review_pb2.InformationRequest(
                number=i + 1, missing=m, answer=item.info_answers[i] if i < len(item.info_answers) else ""
            )
            for i, m in enumerate(item.info_requests)
        ],
        reviewed_decision_id=reviewed,
        reviewer_amounts=dict(item.reviewer_amounts),
    )


def notice_to_proto(row: NoticeRow, lines: list[LineRow]) -> Any:
    return review_pb2.Notice(
        notice_id=row.notice_id,
        published_on=row.published_on.isoformat(),
        period_first_day=row.first_day.isoformat(),
        period_last_day=row.last_day.isoformat(),
        published_by=row.published_by,
        lines=[
            review_pb2.NoticeLineState(line=handlers.line_to_proto(x), status=x.status, payable_on=x.payable_on)
            for x in lines
        ],
    )


def objection_to_proto(o: Any, notice_id: str, credit_code: str, objector: str) -> Any:
    return review_pb2.Objection(
        objection_id=o.objection_id,
        notice_id=notice_id,
        line_id=o.line_id,
        credit_code=credit_code,
        reason=o.reason,
        lodged_on=o.lodged_on.isoformat(),
        status=o.status,
        resolution_reasons=o.resolution_reasons,
        resolved_by=o.resolved_by,
        resolved_on=o.resolved_on.isoformat() if o.resolved_on else "",
        lodged_by=o.lodged_by,
        objector_credit_code=objector,
    )


def actor_of(context: Any) -> Actor:
    principal = current()
    if principal is not None:
        return Actor(principal.subject, principal.role, principal.credit_code)
    metadata = dict(context.invocation_metadata() or ())
    return Actor(
        str(metadata.get("x-subsidy-subject", "")).strip(),
        str(metadata.get("x-subsidy-role", "")).strip().upper(),
        str(metadata.get("x-subsidy-credit-code", "")).strip(),
    )


def _precondition(exc: BaseException) -> tuple[str, str, str] | None:
    """The google.rpc.PreconditionFailure violation (type, subject, description)
    a client can branch on, for the refusals that have one."""
    if isinstance(exc, model.NoticePoolEmpty):
        return model.NOTICE_POOL_EMPTY, "notice pool", str(exc)
    if isinstance(exc, CalendarNotCovered):
        return model.CALENDAR_NOT_COVERED, str(exc.day.year), str(exc)
    return None


class ReviewServicer(review_pb2_grpc.ReviewServiceServicer):
    def __init__(
        self,
        uow: UnitOfWork,
        workflow: WorkflowSettings,
        clock: Clock,
        on_written: Callable[[], None] = lambda: None,
        font: str = "",
    ):
        self.uow = uow
        self.workflow = workflow
        self.clock = clock
        self.on_written = on_written
        self.font = font
        self._rendered: document.RenderedNotices | None = None

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
        elif isinstance(exc, (FailedPrecondition, CalendarNotCovered, document.FontMissing)):
            code = grpc.StatusCode.FAILED_PRECONDITION
            precondition = _precondition(exc)
            if precondition is not None:
                trailers = (
                    (
                        rich_status.DETAILS_KEY,
                        rich_status.precondition_failure_details(code.value[0], str(exc), [precondition]),
                    ),
                )
        elif isinstance(exc, PermissionDenied):
            code = grpc.StatusCode.PERMISSION_DENIED
        elif isinstance(exc, DatabaseUnavailable):
            code = grpc.StatusCode.UNAVAILABLE
        else:
            log.error(f"{rpc} failed", exc_info=exc)
            metrics.REFUSED.labels(rpc, "INTERNAL").inc()
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the review logs")
            return
        metrics.REFUSED.labels(rpc, code.name).inc()
        log.info(f"{rpc} refused", extra=logs.fields(code=code.name, reason=str(exc)[:300]))
        await context.abort(code, str(exc), trailing_metadata=trailers)

    async def _run(self, context: Any, rpc: str, work: Callable[[], Any], action: str = "") -> Any:
        try:
            result = await asyncio.to_thread(work)
        except Exception as exc:
            await self._fail(context, rpc, exc)
            raise
        if action:
            metrics.STEPS.labels(action).inc()
            self.on_written()
        return result

    # -- the queue ----------------------------------------------------------------------------

    async def ListQueue(self, request: Any, context: Any) -> Any:
        actor = actor_of(context)
        today = self.clock.today()

        def work() -> Any:
            if request.assigned_to_me and not actor.subject:
                raise PermissionDenied("assigned_to_me needs an identified subject")
            query = handlers.queue_query(
                request.clause,
                request.review_reason,
                list(request.statuses),
                actor.subject if request.assigned_to_me else "",
                request.overdue_only,
                request.page_size,
                request.page_token,
            )
            return handlers.list_queue(self.uow, query, today)

        rows, token = await self._run(context, "ListQueue", work)
        return review_pb2.ListQueueResponse(items=[item_to_proto(i, d, today) for i, d in rows], next_page_token=token)

    async def GetItem(self, request: Any, context: Any) -> Any:
        today = self.clock.today()
        item, deadline, app, ledger = await self._run(
            context, "GetItem", lambda: handlers.item_detail(self.uow, request.item_id, self.workflow)
        )
        response = review_pb2.GetItemResponse(
            item=item_to_proto(item, deadline, today),
            decision_reasons=[
                decision_pb2.Reason(code=r.code, clause=r.clause, message=r.message) for r in item.decision.reasons
            ],
            ledger=[
                review_pb2.LedgerGrant(
                    application_id=g.application_id,
                    decision_id=g.decision_id,
                    clause=g.clause,
                    granted_fen=g.granted_fen,
                    decision_year=g.decision_year,
                )
                for g in ledger
            ],
            ledger_granted_fen=sum(g.granted_fen for g in ledger),
        )
        if app is not None:
            response.application.CopyFrom(application_pb2.Application.FromString(app))
        return response

    async def _item_step(
        self, context: Any, rpc: str, action: str, work: Callable[[], ReviewItem], response: Any
    ) -> Any:
        item = await self._run(context, rpc, work, action)
        today = self.clock.today()
        return response(item=item_to_proto(item, handlers.deadline_of(item, self.workflow), today))

    async def ClaimItem(self, request: Any, context: Any) -> Any:
        actor = actor_of(context)
        return await self._item_step(
            context,
            "ClaimItem",
            "CLAIMED",
            lambda: handlers.claim(self.uow, request.item_id, actor, self.clock.now()),
            review_pb2.ClaimItemResponse,
        )

    async def Decide(self, request: Any, context: Any) -> Any:
        actor = actor_of(context)
        return await self._item_step(
            context,
            "Decide",
            f"DECIDED_{request.result or 'UNSET'}",
            lambda: handlers.decide(
                self.uow,
                request.item_id,
                actor,
                self.workflow,
                self.clock.today(),
                self.clock.now(),
                result=request.result,
                amount_fen=int(request.amount_fen),
                basis=request.basis,
                reasons=request.reasons,
                missing=request.missing,
                reviewer_amounts={k: int(v) for k, v in request.reviewer_amounts.items()},
            ),
            review_pb2.DecideResponse,
        )

    async def AnswerInformation(self, request: Any, context: Any) -> Any:
        actor = actor_of(context)
        return await self._item_step(
            context,
            "AnswerInformation",
            "INFORMATION_ANSWERED",
            lambda: handlers.answer_information(
                self.uow,
                request.item_id,
                actor,
                request.credit_code,
                int(request.request_number),
                request.answer,
                self.clock.now(),
            ),
            review_pb2.AnswerInformationResponse,
        )

    async def SecondApprove(self, request: Any, context: Any) -> Any:
        actor = actor_of(context)
        return await self._item_step(
            context,
            "SecondApprove",
            "SENT_BACK" if request.send_back else "SECOND_APPROVED",
            lambda: (
                handlers.send_back(self.uow, request.item_id, actor, request.reasons, self.clock.now())
                if request.send_back
                else handlers.second_approve(
                    self.uow, request.item_id, actor, self.workflow, self.clock.today(), self.clock.now()
                )
            ),
            review_pb2.SecondApproveResponse,
        )

    async def ListAuditTrail(self, request: Any, context: Any) -> Any:
        rows, token = await self._run(
            context,
            "ListAuditTrail",
            lambda: handlers.audit_trail(self.uow, request.target, request.page_size, request.page_token),
        )
        return review_pb2.ListAuditTrailResponse(
            entries=[
                review_pb2.AuditEntry(
                    sequence=e.sequence,
                    at=e.at,
                    subject=e.subject,
                    role=e.role,
                    action=e.action,
                    target=e.target,
                    before=e.before,
                    after=e.after,
                )
                for e in rows
            ],
            next_page_token=token,
        )

    # -- the notice ---------------------------------------------------------------------------

    async def PublishNotice(self, request: Any, context: Any) -> Any:
        actor = actor_of(context)
        row, lines = await self._run(
            context,
            "PublishNotice",
            lambda: handlers.publish_notice(
                self.uow, actor, self.workflow, self.clock.today(), self.clock.now(), request.title
            ),
            "NOTICE_PUBLISHED",
        )
        log.info(
            "notice published",
            extra=logs.fields(notice_id=row.notice_id, lines=len(lines), last_day=row.last_day.isoformat()),
        )
        return review_pb2.PublishNoticeResponse(notice=notice_to_proto(row, lines))

    async def GetNotice(self, request: Any, context: Any) -> Any:
        def work() -> Any:
            row, lines = handlers.notice_detail(self.uow, request.notice_id)
            if self._rendered is None:
                self._rendered = document.RenderedNotices(document.find_font(self.font))
            return row, lines, document.render_html(row, lines), self._rendered.pdf(row, lines)

        row, lines, html, pdf = await self._run(context, "GetNotice", work)
        return review_pb2.GetNoticeResponse(notice=notice_to_proto(row, lines), html=html, pdf=pdf)

    async def ListNotices(self, request: Any, context: Any) -> Any:
        rows, token = await self._run(
            context, "ListNotices", lambda: handlers.list_notices(self.uow, request.page_size, request.page_token)
        )
        return review_pb2.ListNoticesResponse(
            notices=[notice_to_proto(r, lines) for r, lines in rows], next_page_token=token
        )

    async def LodgeObjection(self, request: Any, context: Any) -> Any:
        actor = actor_of(context)
        objector = actor.credit_code if actor.role == "ENTERPRISE" else request.credit_code

        def work() -> Any:
            o = handlers.lodge_objection(
                self.uow, actor, request.line_id, objector, request.reason, self.clock.today(), self.clock.now()
            )
            line = self._line(request.line_id)
            return o, line

        o, line = await self._run(context, "LodgeObjection", work, "OBJECTION_LODGED")
        return review_pb2.LodgeObjectionResponse(
            objection=objection_to_proto(o, line.notice_id, line.credit_code, objector)
        )

    def _line(self, line_id: str) -> LineRow:
        with self.uow:
            line = self.uow.lines.get(line_id)
        assert line is not None  # the use case found it
        return line

    async def ResolveObjection(self, request: Any, context: Any) -> Any:
        actor = actor_of(context)

        def work() -> Any:
            o, line = handlers.resolve_objection(
                self.uow,
                actor,
                request.objection_id,
                request.resolution,
                request.reasons,
                self.clock.today(),
                self.clock.now(),
            )
            with self.uow:
                found = self.uow.objections.get(o.objection_id)
            return o, line, found[3] if found else ""

        o, line, objector = await self._run(
            context, "ResolveObjection", work, f"OBJECTION_{request.resolution or 'UNSET'}"
        )
        return review_pb2.ResolveObjectionResponse(
            objection=objection_to_proto(o, line.notice_id, line.credit_code, objector)
        )


def build_server(
    servicer: ReviewServicer,
    health_servicer: health.aio.HealthServicer,
    address: str,
    security: GrpcSecurity | None = None,
) -> tuple[grpc.aio.Server, int]:
    return grpc_server.build_server(
        "review",
        address,
        health_servicer,
        servicers=[(review_pb2_grpc.add_ReviewServiceServicer_to_server, servicer)],
        service_names=[SERVICE_NAME],
        max_receive_bytes=MAX_RECEIVE_BYTES,
        max_send_bytes=MAX_SEND_BYTES,
        security=security,
    )
