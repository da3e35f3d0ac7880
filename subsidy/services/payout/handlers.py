"""The payout use cases' pure parts: parsing and checking what arrives (a
Decision, a PaymentConfirmed, an API request), turning a ``GrantPlan`` into
ledger rows and outbox events, and the rules of a payment. No SQL, Kafka or
gRPC: the store runs these inside its transactions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable

from google.protobuf.message import DecodeError

from subsidy.contracts import codec
from subsidy.contracts.codec import BadInput
from subsidy.core.domain import Decision
from subsidy.services.payout import events
from subsidy.core.ledger import GrantPlan
from subsidy.platform import paging
from subsidy.platform.outbox import OutboxMessage
from subsidy.services.payout.model import (
    CANCELLED,
    OPEN,
    PAID,
    SCHEDULED,
    STATUSES,
    GrantRow,
    InvalidArgument,
    Rejected,
    TrancheRow,
    due_on,
    parse_iso_date,
)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500


# -- what arrives on Kafka ------------------------------------------------------------


def parse_decision(value: bytes | None) -> Decision:
    """A valid subsidy.v1.Decision as a domain value, or Rejected saying why."""
    from subsidy.v1 import decision_pb2

    if value is None:
        raise Rejected("empty message (no value)")
    try:
        message = decision_pb2.Decision.FromString(value)
    except DecodeError as exc:
        raise Rejected(f"not a subsidy.v1.Decision protobuf: {exc}") from None
    for name in ("decision_id", "application_id", "credit_code", "clause"):
        if not getattr(message, name):
            raise Rejected(f"{name}: is required")
    try:
        decision = codec.decision_from_proto(message)
    except BadInput as exc:
        raise Rejected(str(exc)) from None
    if decision.decision_year < 1900 or decision.decision_year > 9000:
        raise Rejected(f"decision_year: out of range: {decision.decision_year}")
    for i, e in enumerate(decision.entitlements):
        if e.amount_fen < 0 or e.cap_fen < 0:
            raise Rejected(f"entitlements[{i}]: negative amount")
        if not e.scope:
            raise Rejected(f"entitlements[{i}].scope: is required")
    shares = decision.tranche_shares_percent
    if decision.entitlements and (not shares or any(s < 0 for s in shares) or sum(shares) != 100):
        raise Rejected(f"tranche_shares_percent: must be non-negative and add up to 100, got {list(shares)}")
    return decision


@dataclass(frozen=True)
class Payment:
    payment_id: str
    tranche_id: str
    credit_code: str
    amount_fen: int
    paid_on: str


def parse_payment(value: bytes | None) -> Payment:
    """A well-formed subsidy.v1.PaymentConfirmed, or Rejected saying why."""
    from subsidy.v1 import payout_pb2

    if value is None:
        raise Rejected("empty message (no value)")
    try:
        m = payout_pb2.PaymentConfirmed.FromString(value)
    except DecodeError as exc:
        raise Rejected(f"not a subsidy.v1.PaymentConfirmed protobuf: {exc}") from None
    for name in ("payment_id", "tranche_id", "credit_code", "paid_on"):
        if not getattr(m, name):
            raise Rejected(f"{name}: is required")
    if m.amount_fen <= 0:
        raise Rejected(f"amount_fen: must be positive, got {m.amount_fen}")
    try:
        parse_iso_date(m.paid_on, "paid_on")
    except InvalidArgument as exc:
        raise Rejected(str(exc)) from None
    return Payment(m.payment_id, m.tranche_id, m.credit_code, m.amount_fen, m.paid_on)


def check_payment(payment: Payment, tranche: TrancheRow | None) -> None:
    """May this (new) payment be applied to this tranche? Rejected says why not.
    (A repeat of a payment id already applied is ignored before this.)"""
    if tranche is None:
        raise Rejected(f"unknown tranche: {payment.tranche_id}")
    if payment.credit_code != tranche.credit_code:
        raise Rejected(
            f"credit code mismatch: payment for {payment.credit_code}, tranche {tranche.tranche_id} "
            f"belongs to {tranche.credit_code}"
        )
    if payment.amount_fen != tranche.amount_fen:
        raise Rejected(
            f"amount mismatch: paid {payment.amount_fen} fen, tranche {tranche.tranche_id} is "
            f"{tranche.amount_fen} fen"
        )
    if tranche.status == CANCELLED:
        raise Rejected(f"tranche {tranche.tranche_id} is cancelled: it must not be paid")
    if tranche.status == PAID:
        raise Rejected(
            f"tranche {tranche.tranche_id} was already paid by payment {tranche.payment_id} on {tranche.paid_on}"
        )
    if tranche.status not in OPEN:  # pragma: no cover - statuses are closed
        raise Rejected(f"tranche {tranche.tranche_id} has status {tranche.status}")


# -- a plan becomes rows and events ------------------------------------------------------


def plan_rows(decision: Decision, plan: GrantPlan, trace_id: str) -> tuple[GrantRow, tuple[TrancheRow, ...]]:
    """The grant and tranche rows a (non-duplicate) plan writes. Tranche k is
    due on the submission date in decision year + k."""
    tranches = tuple(
        TrancheRow(
            tranche_id=t.tranche_id,
            application_id=plan.application_id,
            credit_code=plan.credit_code,
            clause=plan.clause,
            number=t.number,
            amount_fen=t.amount_fen,
            due_on=due_on(decision.submitted_on, t.year).isoformat(),
            budget_year=t.year,
            status=SCHEDULED,
        )
        for t in plan.tranches
    )
    grant = GrantRow(
        application_id=plan.application_id,
        decision_id=plan.decision_id,
        credit_code=plan.credit_code,
        clause=plan.clause,
        outcome=plan.outcome,
        policy_version=decision.policy_version,
        max_award_fen=plan.max_award_fen,
        granted_fen=plan.granted_fen,
        decision_year=decision.decision_year,
        reasons=plan.reasons,
        trace_id=trace_id,
        tranches=tranches,
    )
    return grant, tranches


def plan_events(decision: Decision, plan: GrantPlan, trace_id: str,
                at: dt.datetime | None = None) -> list[OutboxMessage]:
    """GrantRecorded, then one TrancheScheduled per tranche (a duplicate: only
    a GrantRecorded of 0 with DUPLICATE_APPLICATION, under the decision's id)."""
    grant, tranches = plan_rows(decision, plan, trace_id)
    out = [events.grant_recorded(grant, len(tranches), duplicate=plan.duplicate, at=at)]
    out += [events.tranche_scheduled(t, plan.decision_id, decision.policy_version, trace_id, at) for t in tranches]
    return out


def scope_additions(decision: Decision, plan: GrantPlan) -> list[tuple[str, str, int, int]]:
    """(scope, limit, cap_fen, granted_fen) for every entitlement line of an
    applied decision, so the usage table knows each scope's cap and limit
    even before anything in it is granted."""
    granted: dict[str, int] = {}
    for use in plan.uses:
        granted[use.scope] = granted.get(use.scope, 0) + use.granted_fen
    seen: dict[str, tuple[str, str, int, int]] = {}
    for line in decision.entitlements:
        if line.scope not in seen:
            seen[line.scope] = (line.scope, line.limit, line.cap_fen, granted.get(line.scope, 0))
    return list(seen.values())


# -- ListTranches --------------------------------------------------------------------------


@dataclass(frozen=True)
class TrancheQuery:
    due_from: str
    due_to: str
    statuses: tuple[str, ...]
    page_size: int
    after: tuple[str, str] | None

    def fingerprint(self) -> str:
        text = json.dumps([self.due_from, self.due_to, sorted(self.statuses)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument(f"page_size: must not be negative, got {requested}")
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def tranche_query(due_from: str, due_to: str, statuses: Iterable[str], requested_size: int,
                  token: str) -> TrancheQuery:
    if due_from:
        parse_iso_date(due_from, "due_from")
    if due_to:
        parse_iso_date(due_to, "due_to")
    for s in statuses:
        if s not in STATUSES:
            raise InvalidArgument(f"statuses: unknown status {s!r}")
    query = TrancheQuery(due_from, due_to, tuple(sorted(set(statuses))), page_size(requested_size), None)
    if not token:
        return query
    try:
        data = paging.decode(token)
        fingerprint, due, tranche = data["q"], data["d"], data["t"]
        if not (isinstance(due, str) and isinstance(tranche, str)):
            raise ValueError
    except (ValueError, KeyError):  # BadPageToken is a ValueError
        raise InvalidArgument("page_token: not a token this service issued") from None
    if fingerprint != query.fingerprint():
        raise InvalidArgument("page_token: belongs to a listing with other filters")
    return TrancheQuery(query.due_from, query.due_to, query.statuses, query.page_size, (due, tranche))


def next_token(query: TrancheQuery, last: TrancheRow) -> str:
    return paging.encode({"q": query.fingerprint(), "d": last.due_on, "t": last.tranche_id})


def as_proto_status(status: str) -> Any:
    from subsidy.v1 import payout_pb2

    return payout_pb2.TrancheStatus.Value(f"TRANCHE_STATUS_{status}")


def from_proto_status(value: int) -> str:
    from subsidy.v1 import payout_pb2

    try:
        name = payout_pb2.TrancheStatus.Name(value)
    except ValueError:
        raise InvalidArgument(f"statuses: unknown status {value}") from None
    status = name.removeprefix("TRANCHE_STATUS_")
    if status not in STATUSES:
        raise InvalidArgument(f"statuses: {name} is not a status to list by")
    return status
