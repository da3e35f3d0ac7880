"""The payout events (subsidy.v1.PayoutEvent) and their CloudEvents headers,
built from the ledger's rows: pure functions, no I/O.

Every event id is derived (``grant:<application id>``, ``payable:<decision
id>``, ``withdrawn:<decision id>``, ``scheduled:<tranche id>``, ``due:…``,
``cancelled:…``, ``paid:…``; ``held:<tranche id>#<n>``, ``released:…#<n>``
and ``due:<tranche id>#released-<n>`` for the n-th hold of a tranche;
``recovery:<recovery id>``, ``recovered:<confirmation id>``), so a replay lands on the same id and a
consumer dedupes by it. The Kafka key is the firm's credit code.

Every tranche event carries the tranche row's ``application_id`` and
``clause``, so no consumer has to parse the tranche id or remember an
earlier event to know what a tranche is about; and, as every grant event,
the ``policy_version`` its amount was decided under (issue 14).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from subsidy.contracts import cloudevents, topics
from subsidy.core.domain import Reason
from subsidy.platform.outbox import OutboxMessage
from subsidy.services.payout.model import (
    EVENT_TYPES,
    SOURCE,
    GrantRow,
    GrantState,
    RecoveryRow,
    TrancheRow,
    adjusted_event_id,
    due_again_event_id,
    duplicate_grant_event_id,
    grant_event_id,
    held_event_id,
    payable_event_id,
    recovered_event_id,
    recovery_event_id,
    released_event_id,
    tranche_event_id,
    withdrawn_event_id,
)


def grant_state_proto(state: GrantState) -> int:
    _, payout_pb2 = _pb()
    return int(payout_pb2.GrantState.Value(f"GRANT_STATE_{state.value}"))


def _pb() -> Any:
    from subsidy.v1 import decision_pb2, payout_pb2

    return decision_pb2, payout_pb2


def _message(
    kind: str, event_id: str, credit_code: str, payload: Any, trace_id: str, at: dt.datetime | None
) -> OutboxMessage:
    _, payout_pb2 = _pb()
    event = payout_pb2.PayoutEvent(event_id=event_id)
    getattr(event, kind).CopyFrom(payload)
    headers = cloudevents.headers(event_id, EVENT_TYPES[kind], SOURCE, trace_id, at)
    return OutboxMessage(
        event_id=event_id,
        topic=topics.PAYOUTS.name,
        key=credit_code.encode(),
        value=event.SerializeToString(),
        headers=tuple(headers),
    )


def grant_recorded(
    grant: GrantRow, tranche_count: int, *, duplicate: bool = False, at: dt.datetime | None = None
) -> OutboxMessage:
    decision_pb2, payout_pb2 = _pb()
    payload = payout_pb2.GrantRecorded(
        application_id=grant.application_id,
        decision_id=grant.decision_id,
        credit_code=grant.credit_code,
        clause=grant.clause,
        policy_version=grant.policy_version,
        max_award_fen=grant.max_award_fen,
        granted_fen=grant.granted_fen,
        decision_year=grant.decision_year,
        reasons=[decision_pb2.Reason(code=r.code, clause=r.clause, message=r.message) for r in grant.reasons],
        tranche_count=tranche_count,
        state=grant_state_proto(grant.state),
    )
    event_id = duplicate_grant_event_id(grant.decision_id) if duplicate else grant_event_id(grant.application_id)
    return _message("grant_recorded", event_id, grant.credit_code, payload, grant.trace_id, at)


def grant_adjusted(previous: GrantRow, grant: GrantRow, at: dt.datetime | None = None) -> OutboxMessage:
    """A RESERVED grant now holds a superseding decision's amount (issue 14):
    the difference released or topped up. Id ``adjusted:<new decision id>``."""
    decision_pb2, payout_pb2 = _pb()
    difference = grant.granted_fen - previous.granted_fen
    payload = payout_pb2.GrantAdjusted(
        application_id=grant.application_id,
        credit_code=grant.credit_code,
        clause=grant.clause,
        previous_decision_id=previous.decision_id,
        decision_id=grant.decision_id,
        previous_policy_version=previous.policy_version,
        policy_version=grant.policy_version,
        previous_granted_fen=previous.granted_fen,
        granted_fen=grant.granted_fen,
        released_fen=max(0, -difference),
        topped_up_fen=max(0, difference),
        max_award_fen=grant.max_award_fen,
        outcome=grant.outcome,
        reasons=[decision_pb2.Reason(code=r.code, clause=r.clause, message=r.message) for r in grant.reasons],
        decision_year=grant.decision_year,
        state=grant_state_proto(grant.state),
    )
    return _message(
        "grant_adjusted", adjusted_event_id(grant.decision_id), grant.credit_code, payload, grant.trace_id, at
    )


def grant_payable(grant: GrantRow, tranche_count: int, at: dt.datetime | None = None) -> OutboxMessage:
    """The grant's notice closed clean; its TrancheScheduled events follow."""
    _, payout_pb2 = _pb()
    payload = payout_pb2.GrantPayable(
        application_id=grant.application_id,
        decision_id=grant.decision_id,
        credit_code=grant.credit_code,
        clause=grant.clause,
        notice_id=grant.notice_id,
        payable_on=grant.payable_on,
        granted_fen=grant.granted_fen,
        tranche_count=tranche_count,
        policy_version=grant.policy_version,
    )
    return _message(
        "grant_payable", payable_event_id(grant.decision_id), grant.credit_code, payload, grant.trace_id, at
    )


def grant_withdrawn(grant: GrantRow, released_fen: int, at: dt.datetime | None = None) -> OutboxMessage:
    """An objection was upheld: the grant will not be paid, its reservation is released."""
    _, payout_pb2 = _pb()
    payload = payout_pb2.GrantWithdrawn(
        application_id=grant.application_id,
        decision_id=grant.decision_id,
        credit_code=grant.credit_code,
        clause=grant.clause,
        notice_id=grant.notice_id,
        reason=grant.withdraw_reason,
        withdrawn_on=grant.withdrawn_on,
        released_fen=released_fen,
        policy_version=grant.policy_version,
    )
    return _message(
        "grant_withdrawn", withdrawn_event_id(grant.decision_id), grant.credit_code, payload, grant.trace_id, at
    )


def tranche_scheduled(
    t: TrancheRow, decision_id: str, policy_version: str, trace_id: str, at: dt.datetime | None = None
) -> OutboxMessage:
    _, payout_pb2 = _pb()
    payload = payout_pb2.TrancheScheduled(
        tranche_id=t.tranche_id,
        application_id=t.application_id,
        decision_id=decision_id,
        credit_code=t.credit_code,
        clause=t.clause,
        policy_version=policy_version,
        number=t.number,
        amount_fen=t.amount_fen,
        due_on=t.due_on,
        budget_year=t.budget_year,
    )
    return _message(
        "tranche_scheduled", tranche_event_id("tranche_scheduled", t.tranche_id), t.credit_code, payload, trace_id, at
    )


def tranche_due(t: TrancheRow, trace_id: str, at: dt.datetime | None = None) -> OutboxMessage:
    _, payout_pb2 = _pb()
    payload = payout_pb2.TrancheDue(
        tranche_id=t.tranche_id,
        credit_code=t.credit_code,
        amount_fen=t.amount_fen,
        due_on=t.due_on,
        budget_year=t.budget_year,
        clause=t.clause,
        application_id=t.application_id,
        policy_version=t.policy_version,
    )
    return _message("tranche_due", tranche_event_id("tranche_due", t.tranche_id), t.credit_code, payload, trace_id, at)


def tranche_cancelled(
    t: TrancheRow, reason: str, cancelled_on: str, trace_id: str, at: dt.datetime | None = None
) -> OutboxMessage:
    _, payout_pb2 = _pb()
    payload = payout_pb2.TrancheCancelled(
        tranche_id=t.tranche_id,
        credit_code=t.credit_code,
        amount_fen=t.amount_fen,
        reason=reason,
        cancelled_on=cancelled_on,
        application_id=t.application_id,
        clause=t.clause,
        policy_version=t.policy_version,
    )
    return _message(
        "tranche_cancelled", tranche_event_id("tranche_cancelled", t.tranche_id), t.credit_code, payload, trace_id, at
    )


def tranche_paid(
    t: TrancheRow, paid_on: str, payment_id: str, trace_id: str, at: dt.datetime | None = None
) -> OutboxMessage:
    _, payout_pb2 = _pb()
    payload = payout_pb2.TranchePaid(
        tranche_id=t.tranche_id,
        credit_code=t.credit_code,
        amount_fen=t.amount_fen,
        paid_on=paid_on,
        payment_id=payment_id,
        application_id=t.application_id,
        clause=t.clause,
        policy_version=t.policy_version,
    )
    return _message(
        "tranche_paid", tranche_event_id("tranche_paid", t.tranche_id), t.credit_code, payload, trace_id, at
    )


def tranche_due_again(t: TrancheRow, trace_id: str, at: dt.datetime | None = None) -> OutboxMessage:
    """The TrancheDue after a release (its own id: the tranche may have been DUE before its hold)."""
    _, payout_pb2 = _pb()
    payload = payout_pb2.TrancheDue(
        tranche_id=t.tranche_id,
        credit_code=t.credit_code,
        amount_fen=t.amount_fen,
        due_on=t.due_on,
        budget_year=t.budget_year,
        clause=t.clause,
        application_id=t.application_id,
        policy_version=t.policy_version,
    )
    return _message("tranche_due", due_again_event_id(t.tranche_id, t.hold_count), t.credit_code, payload, trace_id, at)


def tranche_held(
    t: TrancheRow, codes: tuple[str, ...], facts_as_of: str, trace_id: str, at: dt.datetime | None = None
) -> OutboxMessage:
    """``t`` as it is now: HELD, with its hold's days, reason and number."""
    _, payout_pb2 = _pb()
    payload = payout_pb2.TrancheHeld(
        tranche_id=t.tranche_id,
        application_id=t.application_id,
        credit_code=t.credit_code,
        clause=t.clause,
        amount_fen=t.amount_fen,
        due_on=t.due_on,
        budget_year=t.budget_year,
        held_on=t.held_on,
        hold_until=t.hold_until,
        reason=t.hold_reason,
        facts_as_of=facts_as_of,
        reason_codes=list(codes),
        policy_version=t.policy_version,
    )
    return _message("tranche_held", held_event_id(t.tranche_id, t.hold_count), t.credit_code, payload, trace_id, at)


def tranche_released(
    t: TrancheRow, released_on: str, facts_as_of: str, trace_id: str, at: dt.datetime | None = None
) -> OutboxMessage:
    _, payout_pb2 = _pb()
    payload = payout_pb2.TrancheReleased(
        tranche_id=t.tranche_id,
        application_id=t.application_id,
        credit_code=t.credit_code,
        clause=t.clause,
        amount_fen=t.amount_fen,
        held_on=t.held_on,
        released_on=released_on,
        facts_as_of=facts_as_of,
        policy_version=t.policy_version,
    )
    return _message(
        "tranche_released", released_event_id(t.tranche_id, t.hold_count), t.credit_code, payload, trace_id, at
    )


def recovery_opened(r: RecoveryRow, decision_id: str, trace_id: str, at: dt.datetime | None = None) -> OutboxMessage:
    _, payout_pb2 = _pb()
    payload = payout_pb2.RecoveryOpened(
        recovery_id=r.recovery_id,
        application_id=r.application_id,
        decision_id=decision_id,
        credit_code=r.credit_code,
        clause=r.clause,
        tranche_ids=list(r.tranche_ids),
        amount_fen=r.amount_fen,
        reason=r.reason,
        void_award=r.void_award,
        opened_on=r.opened_on,
    )
    return _message("recovery_opened", recovery_event_id(r.recovery_id), r.credit_code, payload, trace_id, at)


def recovery_recorded(
    r: RecoveryRow,
    confirmation_id: str,
    amount_fen: int,
    recovered_on: str,
    released_fen: int,
    trace_id: str,
    at: dt.datetime | None = None,
) -> OutboxMessage:
    """``r`` as it is after the confirmation."""
    _, payout_pb2 = _pb()
    payload = payout_pb2.RecoveryRecorded(
        recovery_id=r.recovery_id,
        application_id=r.application_id,
        credit_code=r.credit_code,
        clause=r.clause,
        confirmation_id=confirmation_id,
        amount_fen=amount_fen,
        recovered_on=recovered_on,
        recovered_fen=r.recovered_fen,
        outstanding_fen=r.outstanding_fen,
        released_fen=released_fen,
    )
    return _message("recovery_recorded", recovered_event_id(confirmation_id), r.credit_code, payload, trace_id, at)


def reasons_from_plain(items: list) -> tuple[Reason, ...]:
    return tuple(Reason(code, clause, message) for code, clause, message in items)


def reasons_to_plain(reasons: tuple[Reason, ...]) -> list:
    return [[r.code, r.clause, r.message] for r in reasons]
