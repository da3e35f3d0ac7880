"""免申即享 proposals in intake (issue 13, item 4; docs/proposals.md): the use
cases over ports.ProposalStore, no Kafka, gRPC or SQL here.

- ``on_firm_facts``: a firm's facts from subsidy.firms.v1 (registry-sync)
  are turned into proposable claims (subsidy/core/proposals.py,
  policy/proposals.yaml), each evaluated like any application; an ELIGIBLE
  one with an amount becomes ONE PROPOSED proposal (derived id: the same fact
  twice inserts nothing), unless the firm already applied for the same claim;
  its window ends ``proposal_window_days`` later (policy/workflow.yaml).
  ProposalCreated goes to subsidy.proposals.v1 through intake's outbox, in
  the proposal's transaction.
- ``confirm``: consent and a payee account; the proposal's application
  (application_id = proposal_id, submitted on the day of the confirmation)
  goes through ``handlers.submit`` — the same validator, registry facts and
  outbox as any application — then the proposal is CONFIRMED with
  ProposalConfirmed. Confirming again answers the same; a crash between the
  two steps is finished by the next call.
- ``decline``; ``expire_due``: PROPOSED past its window → EXPIRED (the
  injected clock's day, subsidy/platform/clock.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Callable
from typing import Any

from subsidy.contracts import cloudevents, codec, topics
from subsidy.core import proposals as rules
from subsidy.core.dates import rfc3339
from subsidy.core.policy import Policy
from subsidy.core.workflow.settings import WorkflowSettings
from subsidy.platform.clock import Clock
from subsidy.platform.logs import fields
from subsidy.platform.outbox import OutboxMessage
from subsidy.platform.topic_registry import to_record
from subsidy.services.intake import handlers, metrics, search
from subsidy.services.intake.model import (
    CONFIRMED,
    DECLINED,
    EXPIRED,
    PROPOSED,
    AlreadyExists,
    InvalidApplication,
    NotFound,
    ProposalClosed,
    StoredProposal,
    Submitted,
)
from subsidy.services.intake.ports import ProposalStore

log = logging.getLogger("subsidy.services.intake.proposals")

TYPE_PREFIX = "cn.gov.songjiang.subsidy.proposal"
MAX_REASON_CHARS = 500
MAX_PAYEE_CHARS = 100


@dataclasses.dataclass
class ProposalDeps:
    intake: handlers.Deps
    store: ProposalStore
    policy: Policy
    rules: rules.ProposalRules
    workflow: WorkflowSettings
    clock: Clock
    new_trace_id: Callable[[], str] = cloudevents.new_trace_id


# ------------------------------------------------------------------ events


def _event(p: Any, kind: str, now: dt.datetime, **payload: Any) -> OutboxMessage:
    from subsidy.v1 import proposal_pb2

    event_id = f"proposal:{p.proposal_id}:{kind}"
    event = proposal_pb2.ProposalEvent(event_id=event_id, proposal_id=p.proposal_id, credit_code=p.credit_code)
    getattr(event, kind).CopyFrom(payload["message"])
    return OutboxMessage(
        topic=topics.PROPOSALS.name,
        key=p.credit_code.encode(),
        value=event.SerializeToString(deterministic=True),
        headers=tuple(
            cloudevents.headers(event_id, f"{TYPE_PREFIX}.{kind}.v1", handlers.SOURCE, payload["trace_id"], now)
        ),
        event_id=event_id,
    )


def proposal_message(stored: StoredProposal) -> Any:
    from subsidy.v1 import proposal_pb2

    return proposal_pb2.Proposal.FromString(stored.proposal)


# ------------------------------------------------------------------ from the facts


def facts_view(message: Any) -> rules.Facts:
    """A subsidy.v1.FirmFacts as the core reads it (BadInput/ValueError for facts the contract refuses)."""
    record = to_record(message)
    recognitions = tuple(
        rules.Recognition(r.kind, r.level, r.reference, dt.date.fromisoformat(r.awarded_on) if r.awarded_on else None)
        for r in message.recognitions
    )
    return rules.Facts(
        firm=record.firm,
        recognitions=recognitions,
        revenues={r.year: r.revenue_fen for r in message.revenues},
        identifier_usage={u.year: (u.registrations, u.resolutions) for u in message.identifier_usage},
    )


def on_firm_facts(deps: ProposalDeps, message: Any) -> list[tuple[str, str]]:
    """The proposals the firm's facts make: [(proposal_id, created | known | applied | proposed)]:
    ``known`` this very proposal exists, ``applied`` the firm applied for the
    claim, ``proposed`` the claim was proposed under another fact's reference."""
    from subsidy.v1 import proposal_pb2

    facts = facts_view(message)
    today = deps.clock.today()
    found = rules.proposals(facts, deps.rules, deps.policy, today)
    if not found:
        return []
    code = facts.firm.credit_code
    applied = [
        codec.application_from_proto(_application(a.payload)).claim for a in deps.intake.store.list_by_firm(code, 1000)
    ]
    # Proposals already made (in any state) for the same claim under another
    # fact's reference (a certificate re-issued): one proposal per claim.
    offered = [
        codec.application_from_proto(proposal_message(p).application).claim
        for p in deps.store.list_proposals(code, 1000)
    ]
    window = deps.workflow.on(today).proposal_window_days
    out = []
    for candidate, decision in found:
        if deps.store.get_proposal(candidate.proposal_id) is not None:
            out.append((candidate.proposal_id, "known"))
            continue
        if any(rules.same_claim(claim, candidate.claim, facts.firm, deps.policy, today) for claim in applied):
            out.append((candidate.proposal_id, "applied"))
            metrics.PROPOSALS.labels("skipped_applied").inc()
            continue
        if any(rules.same_claim(claim, candidate.claim, facts.firm, deps.policy, today) for claim in offered):
            out.append((candidate.proposal_id, "proposed"))
            metrics.PROPOSALS.labels("skipped_proposed").inc()
            continue
        now = deps.clock.now()
        application = rules.application_of(candidate, facts.firm, today)
        proposal = proposal_pb2.Proposal(
            proposal_id=candidate.proposal_id,
            credit_code=code,
            clause=candidate.clause,
            fact_reference=candidate.fact_reference,
            application=codec.application_to_proto(application),
            expected_award_fen=decision.max_award_fen,
            policy_version=decision.policy_version,
            state=proposal_pb2.PROPOSAL_STATE_PROPOSED,
            proposed_on=today.isoformat(),
            expires_on=(today + dt.timedelta(days=window)).isoformat(),
        )
        stored = StoredProposal(
            candidate.proposal_id,
            code,
            candidate.clause,
            candidate.fact_reference,
            PROPOSED,
            proposal.SerializeToString(deterministic=True),
            proposal.proposed_on,
            proposal.expires_on,
            rfc3339(now),
        )
        trace_id = deps.new_trace_id()
        event = _event(
            stored, "created", now, message=proposal_pb2.ProposalCreated(proposal=proposal), trace_id=trace_id
        )
        created = deps.store.add_proposal(stored, event)
        out.append((candidate.proposal_id, "created" if created else "known"))
        if created:
            metrics.PROPOSALS.labels("created").inc()
            log.info(
                "proposal created",
                extra=fields(
                    proposal_id=candidate.proposal_id,
                    credit_code=code,
                    clause=candidate.clause,
                    expected_award_fen=decision.max_award_fen,
                    expires_on=proposal.expires_on,
                    trace_id=trace_id,
                ),
            )
    return out


def _application(payload: bytes) -> Any:
    from subsidy.v1 import application_pb2

    return application_pb2.Application.FromString(payload)


# ------------------------------------------------------------------ the firm's answers


def get(deps: ProposalDeps, proposal_id: str) -> StoredProposal:
    if not proposal_id:
        raise InvalidApplication("proposal_id", "is required")
    found = deps.store.get_proposal(proposal_id)
    if found is None:
        raise not_found(proposal_id)
    return found


def not_found(proposal_id: str) -> NotFound:
    """The one answer for an id that is free or another firm's (no existence oracle)."""
    return NotFound(f"no proposal with id {proposal_id!r}")


def _check_open(deps: ProposalDeps, stored: StoredProposal, action: str) -> None:
    if stored.state != PROPOSED:
        raise ProposalClosed(f"proposal {stored.proposal_id} is {stored.state}: it can no longer be {action}")
    if deps.clock.today().isoformat() > stored.expires_on:
        raise ProposalClosed(
            f"proposal {stored.proposal_id} expired after {stored.expires_on}: it can no longer be {action}"
        )


def _payee(account: Any) -> str:
    values = {}
    for name in ("bank_name", "account_name", "account_number"):
        value = getattr(account, name, "") or ""
        if not value.strip():
            raise InvalidApplication(f"payee_account.{name}", "is required to confirm a proposal")
        if len(value) > MAX_PAYEE_CHARS:
            raise InvalidApplication(f"payee_account.{name}", f"is longer than {MAX_PAYEE_CHARS} characters")
        values[name] = value.strip()
    if not values["account_number"].replace(" ", "").isdigit():
        raise InvalidApplication("payee_account.account_number", "must be digits")
    return json.dumps(values, ensure_ascii=False, sort_keys=True)


def confirm(
    deps: ProposalDeps, proposal_id: str, consent: bool, payee_account: Any, trace_id: str | None = None
) -> tuple[StoredProposal, Submitted]:
    """Submit the proposal's application and mark it CONFIRMED (see the module doc)."""
    from subsidy.v1 import proposal_pb2

    stored = get(deps, proposal_id)
    if stored.state == CONFIRMED:  # again: the same answer
        existing = deps.intake.store.get(proposal_id)
        if existing is not None:
            return stored, Submitted(existing.receipt, duplicate=True)
    if consent is not True:
        raise InvalidApplication("consent", "must be true: the firm agrees to apply with the platform's facts")
    payee = _payee(payee_account)
    _check_open(deps, stored, "confirmed")
    today = deps.clock.today()
    proposal = proposal_message(stored)
    message = proposal.application
    message.submitted_on = today.isoformat()
    try:
        submitted = handlers.submit(deps.intake, message, trace_id)
    except AlreadyExists:
        # Submitted by an earlier confirmation (on another day) that crashed before it marked the proposal.
        existing = deps.intake.store.get(proposal_id)
        if existing is None:  # pragma: no cover - AlreadyExists means the row is there
            raise
        submitted = Submitted(existing.receipt, duplicate=True)
    now = deps.clock.now()
    proposal.state = proposal_pb2.PROPOSAL_STATE_CONFIRMED
    proposal.decided_at = rfc3339(now)
    event = _event(
        stored,
        "confirmed",
        now,
        message=proposal_pb2.ProposalConfirmed(application_id=proposal_id, confirmed_at=proposal.decided_at),
        trace_id=submitted.receipt.trace_id,
    )
    if deps.store.decide_proposal(
        proposal_id, PROPOSED, CONFIRMED, proposal.SerializeToString(deterministic=True), rfc3339(now), event, payee
    ):
        metrics.PROPOSALS.labels("confirmed").inc()
        log.info(
            "proposal confirmed",
            extra=fields(proposal_id=proposal_id, application_id=proposal_id, trace_id=submitted.receipt.trace_id),
        )
    return get(deps, proposal_id), submitted


def decline(deps: ProposalDeps, proposal_id: str, reason: str) -> StoredProposal:
    from subsidy.v1 import proposal_pb2

    if len(reason) > MAX_REASON_CHARS:
        raise InvalidApplication("reason", f"is longer than {MAX_REASON_CHARS} characters")
    stored = get(deps, proposal_id)
    if stored.state == DECLINED:
        return stored
    _check_open(deps, stored, "declined")
    now = deps.clock.now()
    proposal = proposal_message(stored)
    proposal.state = proposal_pb2.PROPOSAL_STATE_DECLINED
    proposal.decided_at = rfc3339(now)
    proposal.decline_reason = reason
    event = _event(
        stored,
        "declined",
        now,
        message=proposal_pb2.ProposalDeclined(reason=reason, declined_at=proposal.decided_at),
        trace_id=deps.new_trace_id(),
    )
    if deps.store.decide_proposal(
        proposal_id, PROPOSED, DECLINED, proposal.SerializeToString(deterministic=True), rfc3339(now), event
    ):
        metrics.PROPOSALS.labels("declined").inc()
        log.info("proposal declined", extra=fields(proposal_id=proposal_id))
    return get(deps, proposal_id)


def expire_due(deps: ProposalDeps) -> int:
    """PROPOSED proposals past their window become EXPIRED; how many."""
    from subsidy.v1 import proposal_pb2

    today = deps.clock.today()
    expired = 0
    for stored in deps.store.proposals_past(today.isoformat()):
        now = deps.clock.now()
        proposal = proposal_message(stored)
        proposal.state = proposal_pb2.PROPOSAL_STATE_EXPIRED
        proposal.decided_at = rfc3339(now)
        event = _event(
            stored,
            "expired",
            now,
            message=proposal_pb2.ProposalExpired(expired_on=today.isoformat()),
            trace_id=deps.new_trace_id(),
        )
        if deps.store.decide_proposal(
            stored.proposal_id, PROPOSED, EXPIRED, proposal.SerializeToString(deterministic=True), rfc3339(now), event
        ):
            expired += 1
            metrics.PROPOSALS.labels("expired").inc()
            log.info("proposal expired", extra=fields(proposal_id=stored.proposal_id, expires_on=stored.expires_on))
    return expired


# ------------------------------------------------------------------ listing


def list_for_firm(
    deps: ProposalDeps, code: str, page_size: int = 0, page_token: str = ""
) -> tuple[list[StoredProposal], str]:
    """One firm's proposals, newest first."""
    if not code:
        raise InvalidApplication("credit_code", "is required")
    return list_proposals(deps, search.proposal_filters(code), page_size, page_token)


def list_proposals(
    deps: ProposalDeps, filters: search.Filters, page_size: int = 0, page_token: str = ""
) -> tuple[list[StoredProposal], str]:
    """The proposals matching ``filters`` (search.proposal_filters: a firm or
    all, a state or any), newest first (issue 15: the staff's list across firms)."""
    size = search.page_size(page_size)
    after = search.decode_token(filters, page_token)
    rows = deps.store.search_proposals(filters, size + 1, after)
    more = len(rows) > size
    rows = rows[:size]
    token = search.encode_token(filters, rows[-1].created_at, rows[-1].proposal_id) if more else ""
    return rows, token
