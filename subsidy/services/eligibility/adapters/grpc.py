"""``subsidy.v1.PolicyService`` over gRPC (grpc.aio), with health checking and
reflection, run as a mode.Service inside the faust worker's event loop. The
server itself (interceptors, health, reflection, TLS) is built by
subsidy/platform/grpc/server.py, as for intake, payout and notify.

- ``Evaluate``: the calculator as a service. The application is validated
  exactly as on Kafka (``application_from_proto``); a contract violation is
  ``INVALID_ARGUMENT`` with the BadInput message naming the field.
- ``ListClauses``: the policy as data: every clause, its dated parameter
  values as JSON text, the words they cite, the ledger limit and scope.
- ``GetShadowDifference``: shadow evaluation's running difference in money
  per budget year and agreements by clause (subsidy/services/eligibility/shadow.py);
  ``FAILED_PRECONDITION`` when no shadow version is set.
- ``AdoptVersion``: four-eyes adoption of a candidate policy version
  (subsidy/services/eligibility/adoption.py): the first REVIEWER proposes, a
  second, different one adopts. The caller is the token's subject and role
  (with authentication off, dev and tests only: the metadata
  ``x-subsidy-subject`` and ``x-subsidy-role``). The applications it
  re-decides and the awards it reports on are read from intake at each step,
  with the caller's own ``authorization`` (ADR 0021); a request still setting
  ``open_applications`` or ``noticed_awards`` is INVALID_ARGUMENT naming the
  field. Refusals: PERMISSION_DENIED (four eyes, not a REVIEWER),
  FAILED_PRECONDITION (the version, its files, its dates, open applications;
  intake refusing the caller or holding a record that does not decode),
  INVALID_ARGUMENT (the request, naming the field), UNAVAILABLE (intake cannot
  be read, or the audit trail cannot be written: nothing adopted; or adopted,
  and its re-decisions recorded with it but not yet on the broker: published
  by the retry, ``RedecisionOutbox``).
- ``ListVersions``: the adoption state as this instance sees it now
  (``AdoptionDesk.overview``): every version of the register with the
  trail's adoptions applied, its pending proposal or its adoption, and the
  trail's last events. Authorized like ``GetShadowDifference``: by the access
  policy alone (REVIEWER, FINANCE, OPERATOR; the interceptor refuses, counts
  and logs the others). FAILED_PRECONDITION without a register, or when the
  trail holds what eligibility cannot apply; UNAVAILABLE when the shared
  trail cannot be read.
- Health (``grpc.health.v1.Health``): SERVING for "" and
  "subsidy.v1.PolicyService" only while ``ready()`` is true (the policy is
  loaded and the faust consumer runs); NOT_SERVING from the start of shutdown.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health
from mode import Service

from subsidy.contracts import cloudevents, codec
from subsidy.contracts.codec import BadInput
from subsidy.core import domain
from subsidy.core import eligibility as rules
from subsidy.core.adoption import ADOPTED, AdoptionRefused
from subsidy.core.dates import rfc3339
from subsidy.core.policy import Policy, PolicyError
from subsidy.platform import logs
from subsidy.platform.grpc import server as grpc_server
from subsidy.platform.grpc.server import NOT_SERVING, SERVING
from subsidy.platform.security import GrpcSecurity
from subsidy.platform.security.identity import current
from subsidy.services.eligibility.adapters.adoption_log import AdoptionLogError
from subsidy.services.eligibility.adoption import AdoptionDesk, Outcome, Overview
from subsidy.services.eligibility.metrics import Metrics
from subsidy.services.eligibility.model import Caller, OpenWorkUnavailable
from subsidy.services.eligibility.outbox import RedecisionOutbox
from subsidy.services.eligibility.shadow import ShadowTally
from subsidy.v1 import policy_service_pb2, policy_service_pb2_grpc

log = logging.getLogger("subsidy.eligibility.grpc")

#: Produces re-decisions on subsidy.decisions.v1 and returns them as published (stamped for review).
Publish = Callable[[Sequence[domain.Decision]], Awaitable[list[domain.Decision]]]

SERVICE_NAME = policy_service_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name
MAX_RECEIVE_BYTES = 1 << 20  # an application is a few hundred bytes
MAX_SEND_BYTES = 4 << 20  # ListClauses: the whole policy text


def _jsonable(value: Any) -> Any:
    if value is None:  # eligible_kinds: ANY
        return "ANY"
    if isinstance(value, (frozenset, set)):
        return sorted(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def list_clauses_response(policy: Policy) -> policy_service_pb2.ListClausesResponse:
    """The policy as ListClausesResponse, clauses in the contract's order."""
    pb = policy_service_pb2
    clauses = []
    for clause_id in domain.CLAUSES:
        cp = policy.clauses[clause_id]
        parameters = [
            pb.Parameter(
                name=p.name,
                unit=p.unit,
                description=p.description,
                values=[
                    pb.ParameterValue(
                        applies_from=v.applies_from.isoformat(),
                        value_json=json.dumps(_jsonable(v.value), ensure_ascii=False, sort_keys=True),
                        cites=v.cites,
                    )
                    for v in p.values
                ],
            )
            for p in cp.parameters.values()
        ]
        clauses.append(
            pb.Clause(
                clause=cp.clause,
                claim=cp.claim,
                item=cp.item,
                title=cp.title,
                text=cp.text,
                parameters=parameters,
                limit=cp.ledger.limit or "",
                scope_by=list(cp.ledger.scope_by),
            )
        )
    return pb.ListClausesResponse(
        policy_name=policy.name,
        policy_version=policy.version,
        effective_from=policy.effective_from.isoformat(),
        clauses=clauses,
    )


def _trace_id(context: grpc.aio.ServicerContext) -> str | None:
    metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
    return cloudevents.trace_id_of({"ce_traceparent": metadata.get("traceparent", "")})


def shadow_difference_response(
    tally: ShadowTally, adopted_version: str
) -> policy_service_pb2.GetShadowDifferenceResponse:
    pb = policy_service_pb2
    return pb.GetShadowDifferenceResponse(
        adopted_version=", ".join(tally.adopted_versions()) or adopted_version,
        shadow_version=tally.shadow_version,
        since=rfc3339(tally.since),
        applications=len(tally),
        years=[
            pb.BudgetYearDifference(
                year=y.year, adopted_fen=y.adopted_fen, shadow_fen=y.shadow_fen, difference_fen=y.difference_fen
            )
            for y in tally.years()
        ],
        clauses=[
            pb.ClauseAgreement(clause=clause, agreements=agreed, differences=differed)
            for clause, (agreed, differed) in tally.clauses().items()
        ],
        basis=SHADOW_BASIS,
    )


SHADOW_BASIS = (
    "每项决定的补贴上限按拨付比例分摊到预算年度（未计累计上限和一次性限制）; "
    "each decision's ceiling over its tranches' budget years, before the ledger's caps and one-time limits"
)


def caller(context: grpc.aio.ServicerContext) -> tuple[str, str]:
    """(subject, role) of the caller: the authenticated principal, or with
    authentication off the metadata the caller names itself with."""
    principal = current()
    if principal is not None:
        return principal.subject, principal.role
    metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
    return metadata.get("x-subsidy-subject", "").strip(), metadata.get("x-subsidy-role", "").strip().upper()


_REFUSALS = {
    "four_eyes": grpc.StatusCode.PERMISSION_DENIED,
    "precondition": grpc.StatusCode.FAILED_PRECONDITION,
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
}


#: AdoptVersionRequest's fields the caller may no longer set (ADR 0021), and why.
DEPRECATED_FIELDS = {
    "open_applications": "eligibility reads the applications not yet past their public notice from intake itself",
    "noticed_awards": "eligibility reads the awards past their public notice from intake itself",
}


def deprecated_fields_set(request: Any) -> str | None:
    """The INVALID_ARGUMENT message for a request that still sets a field the
    caller no longer chooses (naming it), or None."""
    for name, why in DEPRECATED_FIELDS.items():
        if len(getattr(request, name)):
            return f"{name}: no longer accepted ({why}, ADR 0021); leave it empty"
    return None


def _authorization(context: grpc.aio.ServicerContext) -> str:
    """The call's own ``authorization`` metadata, forwarded to intake so that
    intake's access policy decides on the reviewer's behalf ("" without one)."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            return value
    return ""


def adopt_version_response(outcome: Outcome) -> policy_service_pb2.AdoptVersionResponse:
    pb = policy_service_pb2
    event = outcome.event
    adopted = event["event"] == ADOPTED
    return pb.AdoptVersionResponse(
        status=event["event"],
        version_id=event["version_id"],
        policy_version=event["policy_version"],
        proposed_by=event["proposed_by"] if adopted else event["subject"],
        proposed_at=event["proposed_at"] if adopted else event["at"],
        approved_by=event["subject"] if adopted else "",
        adopted_at=event["at"] if adopted else "",
        effective_from=event.get("effective_from", ""),
        redecisions=[codec.decision_to_proto(d) for d in outcome.redecisions],
        report=[
            pb.AdoptionReportLine(
                application_id=line.application_id,
                credit_code=line.credit_code,
                clause=line.clause,
                kept_fen=line.kept_fen,
                kept_policy_version=line.kept_policy_version,
                new_outcome=line.new_outcome,
                new_max_award_fen=line.new_max_award_fen,
                difference_fen=line.difference_fen,
            )
            for line in outcome.report
        ],
        register_entry=outcome.register_entry,
    )


def adoption_event(event: dict[str, Any]) -> policy_service_pb2.AdoptionEvent:
    """One event of the trail as the contract shows it (a field the event
    lacks, e.g. in an event written before it existed, is empty)."""

    def text(key: str) -> str:
        value = event.get(key)
        return value if isinstance(value, str) else ""

    return policy_service_pb2.AdoptionEvent(
        event=text("event"),
        version_id=text("version_id"),
        policy_version=text("policy_version"),
        subject=text("subject"),
        at=text("at"),
        reason=text("reason"),
        proposed_by=text("proposed_by"),
        proposed_at=text("proposed_at"),
        effective_from=text("effective_from"),
        refusal_kind=text("kind"),
        refusal=text("why"),
    )


def list_versions_response(overview: Overview) -> policy_service_pb2.ListVersionsResponse:
    pb = policy_service_pb2
    versions = []
    for v in overview.versions:
        state = pb.PolicyVersionState(
            version_id=v.version_id,
            name=v.name,
            status=v.status,
            register_status=v.register_status,
            policy_version=v.policy_version,
            problem=v.problem,
            base=v.base,
            effective_from=v.effective_from,
            effective_until=v.effective_until,
        )
        if v.proposal is not None:
            state.proposal.CopyFrom(
                pb.PendingProposal(
                    policy_version=v.proposal.policy_version,
                    proposed_by=v.proposal.proposed_by,
                    proposed_at=v.proposal.proposed_at,
                    reason=v.proposal.reason,
                    files_unchanged=v.proposal_current,
                )
            )
        if v.adoption is not None:
            a = v.adoption
            state.adoption.CopyFrom(
                pb.VersionAdoption(
                    policy_version=a.policy_version,
                    proposed_by=a.proposed_by,
                    proposed_at=a.proposed_at,
                    approved_by=a.approved_by,
                    adopted_at=a.adopted_at,
                    reason=a.reason,
                    effective_from=a.effective_from,
                    base=a.base,
                )
            )
        versions.append(state)
    return pb.ListVersionsResponse(
        versions=versions,
        events=[adoption_event(e) for e in overview.events],
        earlier_events=overview.earlier,
        read_at=overview.read_at,
        trail=overview.trail,
    )


class PolicyServicer(policy_service_pb2_grpc.PolicyServiceServicer):
    def __init__(
        self,
        policy: Policy,
        shadow_tally: ShadowTally | None = None,
        adoption: AdoptionDesk | None = None,
        outbox: RedecisionOutbox | None = None,
    ):
        self.policy = policy
        self.shadow_tally = shadow_tally
        self.adoption = adoption
        #: Publishes an adoption's re-decisions on subsidy.decisions.v1 and records it in the trail.
        self.outbox = outbox
        self._clauses = list_clauses_response(policy)

    async def AdoptVersion(self, request, context):
        with logs.trace(_trace_id(context)):
            if self.adoption is None:
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION, "no policy versions register (policy/versions.yaml)"
                )
            subject, role = caller(context)
            if role != "REVIEWER":
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"adopting a policy version is a REVIEWER's act, not {role or 'an anonymous caller'}'s",
                )
            # The caller no longer says what is open (ADR 0021): eligibility finds it.
            problem = deprecated_fields_set(request)
            if problem is not None:
                log.info("refused AdoptVersion of %s by %s: %s", request.version_id, subject, problem)
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
            # Off the event loop: the open work is read from intake and the
            # shared trail from Kafka, both blocking.
            unavailable: OpenWorkUnavailable | None = None
            refusal: AdoptionRefused | None = None
            try:
                outcome = await asyncio.to_thread(
                    self.adoption.adopt,
                    version_id=request.version_id,
                    policy_version=request.policy_version,
                    reason=request.reason,
                    caller=Caller(subject, role, _authorization(context)),
                )
            except OpenWorkUnavailable as exc:  # nothing worked out, nothing recorded
                unavailable = exc
            except AdoptionRefused as exc:
                refusal = exc
            except OSError as exc:  # the audit trail cannot be written: nothing was adopted
                log.error("cannot write the adoption trail: %s", exc)
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE,
                    f"the adoption trail cannot be written ({exc.strerror}); nothing adopted",
                )
            if unavailable is not None:
                log.error(
                    "refused AdoptVersion of %s by %s: %s",
                    request.version_id,
                    subject,
                    unavailable,
                    extra=logs.fields(rpc="AdoptVersion", version_id=request.version_id, subject=subject),
                )
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE if unavailable.retryable else grpc.StatusCode.FAILED_PRECONDITION,
                    f"{unavailable}; nothing proposed or adopted, nothing recorded",
                )
            if refusal is not None:
                log.warning(
                    "refused AdoptVersion of %s by %s: %s",
                    request.version_id,
                    subject,
                    refusal,
                    extra=logs.fields(rpc="AdoptVersion", version_id=request.version_id, subject=subject),
                )
                await context.abort(_REFUSALS[refusal.kind], str(refusal))
            found = outcome.found
            log.info(
                "policy version %s %s by %s (%s: %d open application(s), %d award(s) past their notice)",
                request.version_id,
                outcome.event["event"],
                subject,
                found.source if found is not None else "",
                len(found.open_applications) if found is not None else 0,
                len(found.noticed_awards) if found is not None else 0,
                extra=logs.fields(rpc="AdoptVersion", version_id=request.version_id, subject=subject),
            )
            if outcome.redecisions and self.outbox is not None:
                # Adopted, and the re-decisions recorded with the adoption: now to
                # subsidy.decisions.v1 (review, the ledger, intake and notify react).
                # When the broker does not take them they stay owed in the trail,
                # and the retry publishes them (outbox.py; counted and logged there).
                try:
                    published = await self.outbox.publish_adopted(request.version_id, outcome.redecisions)
                except Exception as exc:  # noqa: BLE001 - the broker refused or is gone: said, not swallowed
                    await context.abort(
                        grpc.StatusCode.UNAVAILABLE,
                        f"{request.version_id} is adopted, but its {len(outcome.redecisions)} re-decision(s) could "
                        f"not be published on subsidy.decisions.v1 yet ({type(exc).__name__}: {exc}); they are "
                        f"recorded with the adoption and eligibility publishes them again every "
                        f"{self.outbox.retry_seconds:g} s until the broker has them; until then the ledger holds "
                        "their previous decisions (docs/policy-versions.md, Adoption)",
                    )
                outcome = dataclasses.replace(outcome, redecisions=published)
            return adopt_version_response(outcome)

    async def ListVersions(self, request, context):
        """Who may call it is the access policy's (as GetShadowDifference):
        reading the state decides nothing."""
        with logs.trace(_trace_id(context)):
            if self.adoption is None:
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION, "no policy versions register (policy/versions.yaml)"
                )
            problem: tuple[grpc.StatusCode, str] | None = None
            try:  # off the event loop: the shared trail is read from Kafka, the files from disk
                overview = await asyncio.to_thread(self.adoption.overview)
            except OSError as exc:
                problem = (
                    grpc.StatusCode.UNAVAILABLE,
                    f"the adoption trail cannot be read ({exc.strerror or exc}); try again",
                )
            except (PolicyError, AdoptionLogError) as exc:
                problem = (grpc.StatusCode.FAILED_PRECONDITION, str(exc))
            if problem is not None:
                log.error("ListVersions: %s", problem[1], extra=logs.fields(rpc="ListVersions"))
                await context.abort(*problem)
            return list_versions_response(overview)

    async def Evaluate(self, request, context):
        with logs.trace(_trace_id(context)):
            if not request.HasField("application"):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "application: is required")
            try:
                application = codec.application_from_proto(request.application)
                on = codec.parse_date(request.evaluation_date, "evaluation_date")
            except BadInput as exc:
                problem = str(exc)
            else:
                problem = None
            if problem is not None:
                log.info("refused Evaluate: %s", problem)
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
            # After an adoption: the version in force for the clause on its day.
            router = self.adoption.router if self.adoption is not None else None
            policy = router.policy_for(application) if router is not None else self.policy
            try:
                decision = rules.evaluate(application, policy, on)
            except Exception:
                log.error("evaluating application %s failed", application.application_id, exc_info=True)
                await context.abort(grpc.StatusCode.INTERNAL, "evaluating the application failed")
            log.info(
                "evaluated application %s clause %s outcome %s",
                decision.application_id,
                decision.clause,
                decision.outcome,
                extra=logs.fields(
                    application_id=decision.application_id,
                    clause=decision.clause,
                    outcome=decision.outcome,
                    rpc="Evaluate",
                ),
            )
            return policy_service_pb2.EvaluateResponse(decision=codec.decision_to_proto(decision))

    async def ListClauses(self, request, context):
        return self._clauses

    async def GetShadowDifference(self, request, context):
        if self.shadow_tally is None:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "shadow evaluation is off: set SUBSIDY_ELIGIBILITY_SHADOW_VERSION to a candidate policy version",
            )
        return shadow_difference_response(self.shadow_tally, self.policy.version)


class GrpcServer(Service):
    """The grpc.aio server as a mode.Service: started and stopped by the faust
    worker. The server is the shared builder's; this service owns its health
    servicer and the statuses in it."""

    def __init__(
        self,
        address: str,
        policy: Policy,
        ready: Callable[[], bool],
        grace_seconds: float = 5.0,
        poll_seconds: float = 0.5,
        probe: Callable[[], Any] | None = None,
        security: GrpcSecurity | None = None,
        shadow_tally: ShadowTally | None = None,
        adoption: AdoptionDesk | None = None,
        publish: Publish | None = None,
        outbox: RedecisionOutbox | None = None,
        publish_ready: Callable[[], bool] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.security = security
        self.shadow_tally = shadow_tally
        self.adoption = adoption
        if outbox is None and adoption is not None and publish is not None:
            # Tests hand a publisher alone: counted in a registry of their own.
            from prometheus_client import CollectorRegistry

            outbox = RedecisionOutbox(adoption, publish, Metrics(CollectorRegistry()))
        #: What adoptions owe subsidy.decisions.v1, published until acknowledged.
        self.outbox = outbox
        #: Whether the producer can publish now (the app runs); default ``ready``.
        self.publish_ready = publish_ready or ready
        self.adoption_follow_seconds = 1.0
        self.address = address
        self.policy = policy
        self.ready = ready
        self.probe = probe  # async: refreshes lag and broker contact before readiness is read
        self.grace_seconds = grace_seconds
        self.poll_seconds = poll_seconds
        self.server: grpc.aio.Server | None = None
        self.health = None
        self.port: int | None = None
        self.serving = False

    async def on_start(self) -> None:
        # The one server builder (subsidy/platform/grpc/server.py): every
        # interceptor once per method, health, reflection as the security
        # configuration allows, TLS. The health servicer is ours: NOT_SERVING
        # until ready() (faust's first rebalance) and from the start of shutdown.
        self.health = health.aio.HealthServicer()
        await self._set(False)
        server, self.port = grpc_server.build_server(
            "eligibility",
            self.address,
            self.health,
            servicers=[
                (
                    policy_service_pb2_grpc.add_PolicyServiceServicer_to_server,
                    PolicyServicer(self.policy, self.shadow_tally, self.adoption, self.outbox),
                )
            ],
            service_names=[SERVICE_NAME],
            max_receive_bytes=MAX_RECEIVE_BYTES,
            max_send_bytes=MAX_SEND_BYTES,
            security=self.security,
        )
        await server.start()
        self.server = server
        log.info("gRPC PolicyService listening on %s", self.address, extra=logs.fields(port=self.port))
        await self.update_health()

    async def _set(self, serving: bool) -> None:
        status = SERVING if serving else NOT_SERVING
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)
        if serving != self.serving:
            log.info("health: %s", "SERVING" if serving else "NOT_SERVING")
        self.serving = serving

    async def update_health(self) -> None:
        if self.probe is not None:
            try:
                await self.probe()
            except Exception:
                log.warning("readiness probe failed", exc_info=True)
        try:
            serving = bool(self.ready())
        except Exception:
            log.warning("readiness check failed", exc_info=True)
            serving = False
        await self._set(serving and not self.should_stop)

    @Service.task
    async def _follow_adoptions(self) -> None:
        """With a shared adoption trail: what another instance adopted routes
        this one's applications within about a second (AdoptionDesk.refresh,
        in a worker thread: it reads Kafka)."""
        if self.adoption is None or getattr(self.adoption.log, "catch_up", None) is None:
            return
        loop = asyncio.get_running_loop()
        while not self.should_stop:
            try:
                read = await loop.run_in_executor(None, self.adoption.refresh)
                if read:
                    log.info("adoption trail: %d event(s) from the shared topic applied", read)
            except Exception:
                log.error("adoption trail: catching up failed; routing stays as it was", exc_info=True)
            await self.sleep(self.adoption_follow_seconds)

    @Service.task
    async def _settle_redecisions(self) -> None:
        """What the adoption trail owes subsidy.decisions.v1 (an approval whose
        publication failed, or an instance killed between the two): published
        as soon as the producer can (at start-up) and every
        ``outbox.retry_seconds`` after, until the broker has acknowledged it."""
        outbox = self.outbox
        if outbox is None:
            return
        while not self.should_stop:
            waited = min(1.0, outbox.retry_seconds)
            try:
                if self.publish_ready():
                    await outbox.settle()
                    waited = outbox.retry_seconds
            except Exception:  # a bug here must not stop the retry for good
                log.error("re-decisions owed: the retry failed unexpectedly", exc_info=True)
                waited = outbox.retry_seconds
            await self.sleep(waited)

    @Service.task
    async def _watch_readiness(self) -> None:
        while not self.should_stop:
            await self.update_health()
            await self.sleep(self.poll_seconds)

    async def enter_shutdown(self) -> None:
        """NOT_SERVING from now on (load balancers stop sending new calls)."""
        if self.health is not None:
            await self.health.enter_graceful_shutdown()

    async def on_stop(self) -> None:
        await self.enter_shutdown()
        if self.server is not None:
            log.info("gRPC server stopping (grace %.1f s)", self.grace_seconds)
            await self.server.stop(self.grace_seconds)
            self.server = None
        close = getattr(self.adoption.open_work, "close", None) if self.adoption is not None else None
        if close is not None:  # intake's channel (adapters/intake.py), once no call can use it
            close()
