"""The gRPC edge: subsidy.v1.PayoutService on grpc.aio, built with every
interceptor, health checking and reflection by subsidy/platform/grpc/server.py.
Each RPC runs its use case (handlers.py) over the unit of work in a worker
thread (the database blocks) and maps errors to status codes:

    InvalidArgument      INVALID_ARGUMENT
    NotFound             NOT_FOUND
    FailedPrecondition   FAILED_PRECONDITION
    DatabaseUnavailable  UNAVAILABLE
    anything else        INTERNAL (logged with its traceback)
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health

from subsidy.core import credit_code
from subsidy.platform import logs
from subsidy.platform.clock import Clock
from subsidy.platform.db import DatabaseUnavailable
from subsidy.platform.grpc import server as grpc_server
from subsidy.platform.grpc.server import NOT_SERVING, SERVING  # noqa: F401 - the bootstrap's health answers
from subsidy.platform.security import GrpcSecurity
from subsidy.platform.security.identity import current
from subsidy.services.payout import events, handlers, metrics, outlay, recoveries
from subsidy.services.payout.adapters.outlay_store import SqlOutlay
from subsidy.services.payout.adapters.recoveries_store import SqlRecoveryList
from subsidy.services.payout.model import (
    FailedPrecondition,
    GrantRow,
    InvalidArgument,
    NotFound,
    RecoveryRow,
    TrancheRow,
    utcnow,
)
from subsidy.services.payout.ports import UnitOfWork
from subsidy.v1 import decision_pb2, payout_pb2, payout_pb2_grpc

log = logging.getLogger("subsidy.services.payout.adapters.grpc")

SERVICE_NAME = payout_pb2.DESCRIPTOR.services_by_name["PayoutService"].full_name
MAX_RECEIVE_BYTES = 1 << 20
MAX_SEND_BYTES = 16 << 20  # a page of 500 tranches, or a firm with many grants


def tranche_to_proto(t: TrancheRow) -> Any:
    return payout_pb2.Tranche(
        tranche_id=t.tranche_id,
        application_id=t.application_id,
        credit_code=t.credit_code,
        clause=t.clause,
        number=t.number,
        amount_fen=t.amount_fen,
        due_on=t.due_on,
        budget_year=t.budget_year,
        status=handlers.as_proto_status(t.status),
        paid_on=t.paid_on,
        payment_id=t.payment_id,
        held_on=t.held_on,
        hold_until=t.hold_until,
        hold_reason=t.hold_reason,
    )


def recovery_to_proto(r: RecoveryRow) -> Any:
    return payout_pb2.Recovery(
        recovery_id=r.recovery_id,
        application_id=r.application_id,
        tranche_ids=list(r.tranche_ids),
        amount_fen=r.amount_fen,
        recovered_fen=r.recovered_fen,
        reason=r.reason,
        void_award=r.void_award,
        opened_on=r.opened_on,
        status=r.status,
        credit_code=r.credit_code,
    )


def grant_to_proto(g: GrantRow) -> Any:
    return payout_pb2.Grant(
        application_id=g.application_id,
        decision_id=g.decision_id,
        clause=g.clause,
        outcome=g.outcome,
        max_award_fen=g.max_award_fen,
        granted_fen=g.granted_fen,
        decision_year=g.decision_year,
        reasons=[decision_pb2.Reason(code=r.code, clause=r.clause, message=r.message) for r in g.reasons],
        tranches=[tranche_to_proto(t) for t in g.tranches],
        state=events.grant_state_proto(g.state),
        notice_id=g.notice_id,
        payable_on=g.payable_on,
        withdrawn_on=g.withdrawn_on,
        withdraw_reason=g.withdraw_reason,
        paid_fen=g.paid_fen,
        recovered_fen=g.recovered_fen,
        net_fen=g.net_fen,
        recoveries=[recovery_to_proto(r) for r in g.recoveries],
        void=g.void,
        policy_version=g.policy_version,
    )


class PayoutServicer(payout_pb2_grpc.PayoutServiceServicer):
    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock,
        on_written: Callable[[], None] = lambda: None,
        now: Callable[[], dt.datetime] = utcnow,
    ):
        self.uow = uow
        self.clock = clock
        self.on_written = on_written
        self.now = now

    async def _fail(self, context: Any, rpc: str, exc: BaseException) -> None:
        if isinstance(exc, InvalidArgument):
            code = grpc.StatusCode.INVALID_ARGUMENT
        elif isinstance(exc, NotFound):
            code = grpc.StatusCode.NOT_FOUND
        elif isinstance(exc, FailedPrecondition):
            code = grpc.StatusCode.FAILED_PRECONDITION
        elif isinstance(exc, DatabaseUnavailable):
            code = grpc.StatusCode.UNAVAILABLE
        else:
            log.error(f"{rpc} failed", exc_info=exc)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the payout logs")
            return
        log.info(f"{rpc} refused", extra=logs.fields(code=code.name, reason=str(exc)[:300]))
        await context.abort(code, str(exc))

    async def GetLedger(self, request: Any, context: Any) -> Any:
        try:
            if not credit_code.is_valid(request.credit_code):
                raise InvalidArgument(f"credit_code: not a valid unified social credit code: {request.credit_code!r}")
            ledger = await asyncio.to_thread(handlers.ledger, self.uow, request.credit_code)
        except Exception as exc:
            await self._fail(context, "GetLedger", exc)
            raise
        return payout_pb2.GetLedgerResponse(
            credit_code=ledger.credit_code,
            grants=[grant_to_proto(g) for g in ledger.grants],
            scopes=[
                payout_pb2.ScopeUsage(
                    scope=u.scope,
                    limit=u.limit,
                    used_fen=u.used_fen,
                    remaining_fen=u.remaining_fen,
                    cap_fen=u.cap_fen,
                    reserved_fen=u.reserved_fen,
                    payable_fen=u.payable_fen,
                )
                for u in ledger.scopes
            ],
            paid_fen=ledger.paid_fen,
            recovered_fen=ledger.recovered_fen,
            net_fen=ledger.net_fen,
        )

    async def ListTranches(self, request: Any, context: Any) -> Any:
        try:
            statuses = [handlers.from_proto_status(s) for s in request.statuses]
            query = handlers.tranche_query(
                request.due_from, request.due_to, statuses, request.page_size, request.page_token
            )
            rows, token = await asyncio.to_thread(handlers.list_tranches, self.uow, query)
        except Exception as exc:
            await self._fail(context, "ListTranches", exc)
            raise
        return payout_pb2.ListTranchesResponse(tranches=[tranche_to_proto(t) for t in rows], next_page_token=token)

    async def GetOutlay(self, request: Any, context: Any) -> Any:
        """The outlay per budget year (outlay.py), read from the store's own database."""
        try:
            query = SqlOutlay(self.uow.db)  # type: ignore[attr-defined]  # the SqlStore's database
            years, total = await asyncio.to_thread(outlay.outlay, query, request.from_year, request.to_year)
        except Exception as exc:
            await self._fail(context, "GetOutlay", exc)
            raise

        def one(y: outlay.YearOutlay) -> Any:
            return payout_pb2.BudgetYearOutlay(**dataclasses.asdict(y))

        return payout_pb2.GetOutlayResponse(years=[one(y) for y in years], total=one(total))

    async def ListRecoveries(self, request: Any, context: Any) -> Any:
        """Recoveries across firms (recoveries.py), read from the store's own database."""
        try:
            try:
                name = payout_pb2.RecoveryFilter.Name(request.filter).removeprefix("RECOVERY_FILTER_")
            except ValueError:
                raise InvalidArgument(f"filter: unknown value {request.filter}") from None
            query = SqlRecoveryList(self.uow.db)  # type: ignore[attr-defined]  # the SqlStore's database
            rows, token = await asyncio.to_thread(
                recoveries.list_recoveries,
                query,
                "ALL" if name == "UNSPECIFIED" else name,
                request.page_size,
                request.page_token,
            )
        except Exception as exc:
            await self._fail(context, "ListRecoveries", exc)
            raise
        return payout_pb2.ListRecoveriesResponse(recoveries=[recovery_to_proto(r) for r in rows], next_page_token=token)

    async def CancelTranche(self, request: Any, context: Any) -> Any:
        try:
            if not request.tranche_id:
                raise InvalidArgument("tranche_id: is required")
            reason = request.reason.strip() or "cancelled (no reason given)"
            tranche, changed = await asyncio.to_thread(
                handlers.cancel_tranche, self.uow, request.tranche_id, reason, self.clock.today(), self.now()
            )
        except Exception as exc:
            await self._fail(context, "CancelTranche", exc)
            raise
        if changed:
            metrics.TRANSITIONS.labels("CANCELLED").inc()
            self.on_written()
        log.info(
            "tranche cancelled" if changed else "tranche was already cancelled",
            extra=logs.fields(
                tranche_id=tranche.tranche_id,
                credit_code=tranche.credit_code,
                amount_fen=tranche.amount_fen,
                reason=reason[:200],
            ),
        )
        return payout_pb2.CancelTrancheResponse(tranche=tranche_to_proto(tranche))

    async def OpenRecovery(self, request: Any, context: Any) -> Any:
        try:
            checked = handlers.check_recovery_request(
                request.application_id,
                request.tranche_ids,
                request.amount_fen,
                request.reason,
                request.void_award,
                _subject(context),
            )
            opened = await asyncio.to_thread(handlers.open_recovery, self.uow, checked, self.clock.today(), self.now())
        except Exception as exc:
            await self._fail(context, "OpenRecovery", exc)
            raise
        r = opened.recovery
        if opened.created:
            metrics.RECOVERIES.labels("true" if r.void_award else "false").inc()
            if opened.cancelled:
                metrics.TRANSITIONS.labels("CANCELLED").inc(len(opened.cancelled))
            self.on_written()
        log.info(
            "recovery opened" if opened.created else "recovery was already open",
            extra=logs.fields(
                recovery_id=r.recovery_id,
                application_id=r.application_id,
                credit_code=r.credit_code,
                amount_fen=r.amount_fen,
                void_award=r.void_award,
                tranches_cancelled=[t.tranche_id for t in opened.cancelled],
                cap_released_fen=opened.released_fen,
                opened_by=r.opened_by,
            ),
        )
        return payout_pb2.OpenRecoveryResponse(recovery=recovery_to_proto(r), created=opened.created)


def _subject(context: Any) -> str:
    """Who opens the recovery: the authenticated caller's subject; with
    authentication off (development), the x-subsidy-subject metadata, or ""."""
    principal = current()
    if principal is not None:
        return principal.subject
    metadata = dict(context.invocation_metadata() or ())
    return str(metadata.get("x-subsidy-subject", "")).strip()[:200]


def build_server(
    servicer: PayoutServicer,
    health_servicer: health.aio.HealthServicer,
    address: str,
    security: GrpcSecurity | None = None,
) -> tuple[grpc.aio.Server, int]:
    """TLS, authentication and reflection follow ``security`` (default: from the environment)."""
    return grpc_server.build_server(
        "payout",
        address,
        health_servicer,
        servicers=[(payout_pb2_grpc.add_PayoutServiceServicer_to_server, servicer)],
        service_names=[SERVICE_NAME],
        max_receive_bytes=MAX_RECEIVE_BYTES,
        max_send_bytes=MAX_SEND_BYTES,
        security=security,
    )
