"""The gRPC edge: subsidy.v1.IntakeService on grpc.aio.

Each RPC runs its use case (handlers.py) in a worker thread (the store and
the registry client block) and maps the core's errors to status codes:

    InvalidApplication   INVALID_ARGUMENT  + google.rpc.BadRequest field violation
    UnknownFirm          FAILED_PRECONDITION
    RegistryUnavailable  UNAVAILABLE
    DatabaseUnavailable  UNAVAILABLE
    AlreadyExists        ALREADY_EXISTS
    NotFound             NOT_FOUND
    anything else        INTERNAL (logged with its traceback)
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health

from subsidy.contracts import cloudevents
from subsidy.platform import logs
from subsidy.platform.db import DatabaseUnavailable
from subsidy.platform.grpc import server as grpc_server
from subsidy.platform.grpc import status as rich_status
from subsidy.platform.grpc.server import NOT_SERVING, SERVING  # noqa: F401 - the bootstrap's health answers
from subsidy.platform.registry import RegistryUnavailable
from subsidy.platform.security import GrpcSecurity, current, firm_allowed
from subsidy.platform.security.interceptor import deny
from subsidy.services.intake import handlers, metrics, search
from subsidy.services.intake.model import (
    STATES,
    AlreadyExists,
    InvalidApplication,
    NotFound,
    ProposalClosed,
    StoredApplication,
    UnknownFirm,
)
from subsidy.v1 import application_pb2, decision_pb2, intake_pb2, intake_pb2_grpc, proposal_pb2, proposal_pb2_grpc

log = logging.getLogger("subsidy.services.intake.adapters.grpc")

SERVICE_NAME = intake_pb2.DESCRIPTOR.services_by_name["IntakeService"].full_name
PROPOSAL_SERVICE_NAME = proposal_pb2.DESCRIPTOR.services_by_name["ProposalService"].full_name
MAX_RECEIVE_BYTES = 1 << 20  # 1 MiB: an application is a few hundred bytes
MAX_SEND_BYTES = 4 << 20  # a page of 100 applications with their decisions

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}\Z")
_STATES = {state: intake_pb2.ApplicationState.Value(f"APPLICATION_STATE_{state}") for state in STATES}


def incoming_trace_id(context: Any) -> str:
    """The caller's W3C trace id (``traceparent`` metadata) if valid, else a new one."""
    for key, value in context.invocation_metadata() or ():
        if key == "traceparent" and isinstance(value, str):
            match = _TRACEPARENT.match(value.strip())
            if match and match.group(1) != "0" * 32:
                return match.group(1)
    return cloudevents.new_trace_id()


def receipt_to_proto(stored: StoredApplication) -> Any:
    r = stored.receipt
    return intake_pb2.Receipt(
        application_id=r.application_id, received_at=r.received_at, payload_sha256=r.payload_sha256, trace_id=r.trace_id
    )


def status_to_proto(stored: StoredApplication) -> Any:
    status = intake_pb2.ApplicationStatus(
        application=application_pb2.Application.FromString(stored.payload),
        state=_STATES.get(stored.state, intake_pb2.APPLICATION_STATE_UNSPECIFIED),
        receipt=receipt_to_proto(stored),
    )
    if stored.decision is not None:
        status.decision.CopyFrom(decision_pb2.Decision.FromString(stored.decision))
    if stored.grant is not None:
        status.grant.ParseFromString(stored.grant)
    status.decisions.extend(decision_pb2.Decision.FromString(d) for d in stored.history)
    return status


def _enum_name(enum: Any, value: int, prefix: str) -> str:
    """The state a filter names ("" for UNSPECIFIED: any); an unknown number is refused naming ``state``."""
    try:
        name = str(enum.Name(value)).removeprefix(prefix)
    except ValueError:
        raise InvalidApplication("state", f"unknown value {value}") from None
    return "" if name == "UNSPECIFIED" else name


def _check_own_firm(service: str, rpc: str, code: str) -> None:
    """An ENTERPRISE caller lists only its own firm. The access interceptor
    already refuses another credit code or none (access.yaml: enterprise:
    {field: credit_code}); this holds the same line inside the servicer should
    the policy ever be loosened, with the same refusal (PERMISSION_DENIED)."""
    principal = current()
    if principal is not None and principal.role == "ENTERPRISE" and code != principal.credit_code:
        deny(service, rpc, "wrong_firm", principal, "credit_code is not the caller's credit code")
        raise _WrongFirm()


def _enterprise_firm() -> str:
    """The credit code an ENTERPRISE caller is bound to: its application ids
    are scoped to its firm (handlers.submit, handlers.get). "" for the portal,
    staff, and a server without authentication (dev)."""
    principal = current()
    return principal.credit_code if principal is not None and principal.role == "ENTERPRISE" else ""


class _WrongFirm(Exception):
    pass


class IntakeServicer(intake_pb2_grpc.IntakeServiceServicer):
    def __init__(self, deps: handlers.Deps, on_accepted: Callable[[], None] = lambda: None):
        self.deps = deps
        self.on_accepted = on_accepted

    async def _fail(self, context: Any, rpc: str, exc: BaseException, field_prefix: str = "") -> None:
        """Abort the RPC with the status that fits ``exc`` (never returns)."""
        trailers: tuple = ()
        if isinstance(exc, InvalidApplication):
            code = grpc.StatusCode.INVALID_ARGUMENT
            field = f"{field_prefix}{exc.field}" if exc.field else field_prefix.rstrip(".")
            message = f"invalid {field or 'request'}: {exc.problem}"
            trailers = (
                (
                    rich_status.DETAILS_KEY,
                    rich_status.bad_request_details(code.value[0], message, [(field, exc.problem)]),
                ),
            )
        elif isinstance(exc, (UnknownFirm, ProposalClosed)):
            code, message = grpc.StatusCode.FAILED_PRECONDITION, str(exc)
        elif isinstance(exc, (RegistryUnavailable, DatabaseUnavailable)):
            code, message = grpc.StatusCode.UNAVAILABLE, str(exc)
        elif isinstance(exc, AlreadyExists):
            code, message = grpc.StatusCode.ALREADY_EXISTS, str(exc)
        elif isinstance(exc, NotFound):
            code, message = grpc.StatusCode.NOT_FOUND, str(exc)
        elif isinstance(exc, _WrongFirm):
            code, message = grpc.StatusCode.PERMISSION_DENIED, "credit_code is not the caller's credit code"
        else:
            log.error(f"{rpc} failed", exc_info=exc)
            code, message = grpc.StatusCode.INTERNAL, "internal error; the trace id in the logs has the details"
        if rpc == "SubmitApplication":
            metrics.SUBMISSIONS.labels(code.name.lower()).inc()
        log.info(f"{rpc} refused", extra=logs.fields(code=code.name, reason=message[:300]))
        await context.abort(code, message, trailing_metadata=trailers)

    async def SubmitApplication(self, request: Any, context: Any) -> Any:
        trace_id = incoming_trace_id(context)
        with logs.trace(trace_id):
            try:
                result = await asyncio.to_thread(
                    handlers.submit, self.deps, request.application, trace_id, _enterprise_firm()
                )
            except Exception as exc:
                await self._fail(context, "SubmitApplication", exc, "application.")
                raise  # unreachable: abort raised
            metrics.SUBMISSIONS.labels("duplicate" if result.duplicate else "accepted").inc()
            if not result.duplicate:
                self.on_accepted()
            r = result.receipt
            return intake_pb2.SubmitApplicationResponse(
                receipt=intake_pb2.Receipt(
                    application_id=r.application_id,
                    received_at=r.received_at,
                    payload_sha256=r.payload_sha256,
                    trace_id=r.trace_id,
                ),
                duplicate=result.duplicate,
            )

    async def GetApplication(self, request: Any, context: Any) -> Any:
        try:
            stored = await asyncio.to_thread(handlers.get, self.deps, request.application_id, _enterprise_firm())
        except Exception as exc:
            await self._fail(context, "GetApplication", exc)
            raise
        # An enterprise sees only its own applications (access.yaml: enterprise:
        # servicer). Another firm's id is answered exactly as a free one
        # (NOT_FOUND, the same words): the answer must not tell an enterprise
        # which ids other firms hold. The refusal is still counted and logged.
        if not firm_allowed(stored.credit_code):
            deny(SERVICE_NAME, "GetApplication", "wrong_firm", current(), "the record belongs to another firm")
            await self._fail(context, "GetApplication", handlers.not_found(request.application_id))
        with logs.trace(stored.trace_id):
            log.info("GetApplication", extra=logs.fields(application_id=stored.application_id, state=stored.state))
        return intake_pb2.GetApplicationResponse(application=status_to_proto(stored))

    async def ListApplications(self, request: Any, context: Any) -> Any:
        try:
            filters = search.application_filters(
                request.credit_code,
                request.firm_name,
                request.clause,
                _enum_name(intake_pb2.ApplicationState, request.state, "APPLICATION_STATE_"),
            )
            _check_own_firm(SERVICE_NAME, "ListApplications", filters.credit_code)
            page = await asyncio.to_thread(
                handlers.list_applications, self.deps, filters, request.page_size, request.page_token
            )
        except Exception as exc:
            await self._fail(context, "ListApplications", exc)
            raise
        return intake_pb2.ListApplicationsResponse(
            applications=[status_to_proto(s) for s in page.applications], next_page_token=page.next_page_token
        )

    async def ListDirectory(self, request: Any, context: Any) -> Any:
        try:
            year, entries = handlers.directory(self.deps, request.year)
        except Exception as exc:
            await self._fail(context, "ListDirectory", exc)
            raise
        return intake_pb2.ListDirectoryResponse(
            year=year,
            entries=[
                intake_pb2.DirectoryEntry(
                    credit_code=e.credit_code, name=e.name, category=e.category, cloud_services=e.cloud_services
                )
                for e in entries
            ],
        )


class ProposalServicer(proposal_pb2_grpc.ProposalServiceServicer):
    """subsidy.v1.ProposalService (免申即享, subsidy/services/intake/proposals.py). The
    firm binding: ListProposals by its credit_code field (access.yaml); Confirm
    and Decline here, on the loaded proposal's firm (another firm's id is
    answered as a free one)."""

    def __init__(self, deps: Any, intake: IntakeServicer, on_written: Callable[[], None] = lambda: None):
        self.deps = deps
        self._intake = intake
        self.on_written = on_written

    @staticmethod
    def to_proto(stored: Any) -> Any:
        from subsidy.services.intake import proposals

        return proposals.proposal_message(stored)

    async def _load_own(self, context: Any, rpc: str, proposal_id: str) -> Any:
        from subsidy.services.intake import proposals

        try:
            stored = await asyncio.to_thread(proposals.get, self.deps, proposal_id)
        except Exception as exc:
            await self._intake._fail(context, rpc, exc)
            raise
        if not firm_allowed(stored.credit_code):
            deny(PROPOSAL_SERVICE_NAME, rpc, "wrong_firm", current(), "the proposal belongs to another firm")
            await self._intake._fail(context, rpc, proposals.not_found(proposal_id))
        return stored

    async def ListProposals(self, request: Any, context: Any) -> Any:
        from subsidy.services.intake import proposals

        try:
            filters = search.proposal_filters(
                request.credit_code, _enum_name(proposal_pb2.ProposalState, request.state, "PROPOSAL_STATE_")
            )
            _check_own_firm(PROPOSAL_SERVICE_NAME, "ListProposals", filters.credit_code)
            rows, token = await asyncio.to_thread(
                proposals.list_proposals, self.deps, filters, request.page_size, request.page_token
            )
        except Exception as exc:
            await self._intake._fail(context, "ListProposals", exc)
            raise
        return proposal_pb2.ListProposalsResponse(proposals=[self.to_proto(r) for r in rows], next_page_token=token)

    async def ConfirmProposal(self, request: Any, context: Any) -> Any:
        from subsidy.services.intake import proposals

        await self._load_own(context, "ConfirmProposal", request.proposal_id)
        trace_id = incoming_trace_id(context)
        with logs.trace(trace_id):
            try:
                stored, submitted = await asyncio.to_thread(
                    proposals.confirm,
                    self.deps,
                    request.proposal_id,
                    request.consent,
                    request.payee_account,
                    trace_id,
                )
            except Exception as exc:
                await self._intake._fail(context, "ConfirmProposal", exc)
                raise
        self.on_written()
        r = submitted.receipt
        return proposal_pb2.ConfirmProposalResponse(
            proposal=self.to_proto(stored),
            receipt=intake_pb2.Receipt(
                application_id=r.application_id,
                received_at=r.received_at,
                payload_sha256=r.payload_sha256,
                trace_id=r.trace_id,
            ),
        )

    async def DeclineProposal(self, request: Any, context: Any) -> Any:
        from subsidy.services.intake import proposals

        await self._load_own(context, "DeclineProposal", request.proposal_id)
        try:
            stored = await asyncio.to_thread(proposals.decline, self.deps, request.proposal_id, request.reason)
        except Exception as exc:
            await self._intake._fail(context, "DeclineProposal", exc)
            raise
        self.on_written()
        return proposal_pb2.DeclineProposalResponse(proposal=self.to_proto(stored))


def build_server(
    servicer: IntakeServicer,
    health_servicer: health.aio.HealthServicer,
    address: str,
    security: GrpcSecurity | None = None,
    proposals: ProposalServicer | None = None,
) -> tuple[grpc.aio.Server, int]:
    """The server with IntakeService (and ProposalService when given), health checking and
    reflection; returns (server, bound port).
    TLS, authentication and reflection follow ``security`` (default: from the environment)."""
    servicers: list[Any] = [(intake_pb2_grpc.add_IntakeServiceServicer_to_server, servicer)]
    names = [SERVICE_NAME]
    if proposals is not None:
        servicers.append((proposal_pb2_grpc.add_ProposalServiceServicer_to_server, proposals))
        names.append(PROPOSAL_SERVICE_NAME)
    return grpc_server.build_server(
        "intake",
        address,
        health_servicer,
        servicers=servicers,
        service_names=names,
        max_receive_bytes=MAX_RECEIVE_BYTES,
        max_send_bytes=MAX_SEND_BYTES,
        security=security,
    )
