"""Payout's use cases, over the ports (ports.py): no SQL, Kafka or gRPC
here, so the unit tests run them over an in-memory unit of work
(tests/unit/payout/fakes.py) and the service over SQL (adapters/store.py).

- ``apply_decision``: a Decision checked against the firm's history
  (``subsidy.core.ledger.plan_grant``) and recorded — a RESERVED grant (its
  cap usage counts at once), its uses and schedule, the inbox row and
  GrantRecorded. A decision with ``review_required`` is only recorded as
  seen (inbox row ``held_for_review``): no grant, no cap use, no event; the
  reviewed decision that supersedes it is applied like a computed one;
- ``apply_notice_line``: a public-notice line of subsidy.notices.v1 —
  LinePayable makes the grant PAYABLE and schedules its tranches (tranche k
  due on the later of payable_on and the submission day in decision year +
  k: GrantPayable, TrancheScheduled); LineWithdrawn makes a RESERVED grant
  WITHDRAWN and releases its cap reservation (GrantWithdrawn);
- ``apply_payment``: a PaymentConfirmed makes its tranche PAID (TranchePaid);
- ``raise_tranches_due``: the SCHEDULED tranches whose day has come become
  DUE (TrancheDue);
- ``cancel_tranche``: an open tranche becomes CANCELLED (TrancheCancelled);
- ``ledger``, ``list_tranches``, ``tranches_of_budget_year``: reading.

Each is one unit of work, committed once: its writes and the outbox rows
announcing them are kept together or not at all. Inside the decisions
consumer's batch (one transaction per poll, ADR 0004) the store makes each
unit of work a savepoint of the batch; the use case does not know.

Idempotency is by derived ids (ADR 0005): a decision id already in the
inbox, a payment id already applied, an application already granted (a
later decision records a grant of 0 under ``grant:<decision id>``), a tranche
no longer SCHEDULED, an outbox event id already written — each replays as
nothing new. Every write concerning a firm first takes the firm's lock, so
replicas take turns on a firm and the cap holds.

The time of a write (``at``) is the caller's: the adapters pass their
injected clock's reading.

Also here, the pure parts: parsing and checking what arrives (a Decision, a
PaymentConfirmed, an API request), turning a ``GrantPlan`` into ledger rows
and outbox events, the rules of a payment.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from subsidy.contracts import cloudevents, codec
from subsidy.contracts import events as events_contract
from subsidy.contracts.codec import BadInput
from subsidy.core import release
from subsidy.core.dates import rfc3339
from subsidy.core.domain import Decision
from subsidy.core.ledger import GrantPlan, plan_grant, schedule
from subsidy.platform import paging
from subsidy.platform.outbox import OutboxMessage
from subsidy.services.payout import events
from subsidy.services.payout.model import (
    CANCELLED,
    DUE,
    HELD,
    OPEN,
    PAID,
    PAYABLE_LINE,
    RECOVERY_CONFIRMED_TYPE,
    RECOVERY_OPEN,
    RECOVERY_RECOVERED,
    SCHEDULED,
    STATUSES,
    WITHDRAWN_LINE,
    FailedPrecondition,
    GrantRow,
    GrantState,
    InvalidArgument,
    Ledger,
    NotFound,
    NoticeLine,
    Payment,
    RecoveryConfirmation,
    RecoveryRequest,
    RecoveryRow,
    Rejected,
    TrancheQuery,
    TrancheRow,
    UsageRow,
    due_on,
    parse_iso_date,
    payable_due_on,
    payable_event_id,
    recovery_id,
    withdrawn_event_id,
)
from subsidy.services.payout.ports import UnitOfWork

DEFAULT_PAGE_SIZE = 100
#: CancelTranche's ``reason``, in characters (docs/payout.md): it travels in
#: the TrancheCancelled event, which must stay far below Kafka's record limit.
MAX_CANCEL_REASON_CHARS = 1000
MAX_PAGE_SIZE = 500


# -- the use cases ---------------------------------------------------------------------


#: Inbox results: what applying a decision did.
APPLIED, DUPLICATE, HELD_FOR_REVIEW = "applied", "duplicate", "held_for_review"
#: A decision superseding the grant's (a policy version's adoption, issue 14):
#: ADJUSTED replaced a RESERVED grant's amount (GrantAdjusted); KEPT found the
#: grant past its notice (PAYABLE, WITHDRAWN or void), which keeps its amount
#: (the adoption report lists it); HELD_SUPERSEDING is one held for review,
#: whose reviewed decision then supersedes the grant in its turn.
ADJUSTED, KEPT, HELD_SUPERSEDING = "adjusted", "kept", "held_superseding"

#: A reviewed decision's id (decision.proto, ReviewRecord).
REVIEW_ID_SEPARATOR = "/review:"


@dataclass(frozen=True)
class Applied:
    """What applying one decision did: ``result`` is applied, replayed (decision
    id already in the inbox: nothing written), duplicate (application id
    already granted under another decision id: a GrantRecorded of 0) or
    held_for_review (review_required: seen, nothing granted or reserved)."""

    result: str
    plan: GrantPlan | None = None
    #: ADJUSTED: the grant as it was before.
    previous: GrantRow | None = None


class _History:
    """subsidy.core.ledger.LedgerView over a unit of work: the firm's history
    as it is inside the transaction that holds the firm's lock."""

    def __init__(self, uow: UnitOfWork):
        self.uow = uow

    def is_applied(self, application_id: str) -> bool:
        return self.uow.grants.is_applied(application_id)

    def used_fen(self, credit_code: str, scope: str) -> int:
        return self.uow.usage.used_fen(credit_code, scope)


def _trace_of(uow: UnitOfWork, application_id: str) -> str:
    """The trace the application's grant was recorded under, so a tranche's
    later events join the application's trace; a new one when none is known."""
    return uow.grants.trace_id(application_id) or cloudevents.new_trace_id()


# A replay, a repeat and a read commit too: they succeeded (the firm's row a
# lock may have made is kept), and a rollback is what the dashboard counts as
# a failed transaction (subsidy_db_transaction_duration_seconds{outcome}).


def apply_decision(uow: UnitOfWork, decision: Decision, trace_id: str, at: dt.datetime) -> Applied:
    """The firm locked, the inbox checked, the plan made over the ledger as it
    is now, then the RESERVED grant, usage, inbox row and outbox rows (no
    tranches: they wait for the notice, ``apply_notice_line``). A decision
    with review_required writes its inbox row only. A reviewed decision whose
    superseded decision was applied is Rejected (nothing written)."""
    now = rfc3339(at)
    with uow:
        uow.firms.lock(decision.credit_code, now)
        if uow.inbox.has(decision.decision_id):
            uow.commit()
            return Applied("replayed")
        superseding = is_superseding(uow, decision)
        if decision.review_required:
            held = HELD_SUPERSEDING if superseding else HELD_FOR_REVIEW
            uow.inbox.add(decision, held, now)
            uow.commit()
            return Applied(held)
        if decision.review is not None:
            check_supersedes(uow, decision)
        if superseding:
            grant = uow.grants.get(decision.application_id)
            if grant is not None:
                applied = supersede(uow, decision, grant, at)
                uow.commit()
                return applied
            # Never granted (its decision was held for review, or is older than
            # the topic): applied like a first decision.
        plan = plan_grant(decision, _History(uow))
        result = DUPLICATE if plan.duplicate else APPLIED
        uow.inbox.add(decision, result, now)
        if not plan.duplicate:
            grant, _ = plan_rows(decision, plan, trace_id)
            uow.grants.add(grant, decision.submitted_on, now)
            if plan.outcome == "ELIGIBLE":
                for scope, limit, cap_fen, granted_fen in scope_additions(decision, plan):
                    uow.usage.add(decision.credit_code, scope, limit, cap_fen, granted_fen)
        uow.outbox.add(plan_events(decision, plan, trace_id, at), now)
        uow.commit()
    return Applied(result, plan)


def is_superseding(uow: UnitOfWork, decision: Decision) -> bool:
    """Does this decision replace the application's grant? A re-decision at a
    policy version's adoption names the decision it supersedes
    (``supersedes_decision_id``); the reviewed decision of such a re-decision
    (held for review, or adjusted and then reviewed because its award was in
    its notice period) supersedes the grant in its turn."""
    if decision.supersedes_decision_id:
        return True
    if decision.review is None:
        return False
    reviewed = uow.inbox.get(decision.review.supersedes_decision_id)
    # Held for review, or applied and then reviewed (a change to an award in its
    # notice period is reviewed: review's POLICY_VERSION_IN_NOTICE).
    return reviewed is not None and reviewed.result in (HELD_SUPERSEDING, ADJUSTED)


class _Without(_History):
    """The firm's history without one grant: the ledger as if the superseded
    decision had never been applied, so the superseding one is planned on the
    same footing (its cap use replaces the old one, it does not add to it)."""

    def __init__(self, uow: UnitOfWork, grant: GrantRow):
        super().__init__(uow)
        self.grant = grant
        self.held = dict(grant.uses)

    def is_applied(self, application_id: str) -> bool:
        return application_id != self.grant.application_id and super().is_applied(application_id)

    def used_fen(self, credit_code: str, scope: str) -> int:
        used = super().used_fen(credit_code, scope)
        if credit_code != self.grant.credit_code:
            return used
        return max(0, used - self.held.get(scope, 0))


def supersede(uow: UnitOfWork, decision: Decision, grant: GrantRow, at: dt.datetime) -> Applied:
    """Inside apply_decision's unit of work (the firm locked, the decision not
    in the inbox): a RESERVED grant takes the superseding decision's amount,
    planned over the firm's history without the grant (caps and one-time
    awards checked again); the old cap use is released and the new one
    reserved, the difference released or topped up (GrantAdjusted). A grant
    past its notice (PAYABLE, WITHDRAWN) or void keeps its amount: the inbox
    row says KEPT, nothing else is written."""
    now = rfc3339(at)
    if grant.state != GrantState.RESERVED or grant.void:
        uow.inbox.add(decision, KEPT, now)
        return Applied(KEPT, None, grant)
    if grant.credit_code != decision.credit_code:
        raise Rejected(
            f"credit_code: application {decision.application_id} was granted to {grant.credit_code}, "
            f"not {decision.credit_code}: a superseding decision is of the same firm"
        )
    plan = plan_grant(decision, _Without(uow, grant))
    trace_id = grant.trace_id or cloudevents.new_trace_id()
    new_grant, _ = plan_rows(decision, plan, trace_id)
    for scope, fen in grant.uses:
        uow.usage.release(grant.credit_code, scope, fen)
    if plan.outcome == "ELIGIBLE":
        for scope, limit, cap_fen, granted_fen in scope_additions(decision, plan):
            uow.usage.add(decision.credit_code, scope, limit, cap_fen, granted_fen)
    uow.grants.replace(new_grant, now)
    uow.inbox.add(decision, ADJUSTED, now)
    uow.outbox.add([events.grant_adjusted(grant, new_grant, at)], now)
    return Applied(ADJUSTED, plan, grant)


def check_supersedes(uow: UnitOfWork, decision: Decision) -> None:
    """A reviewed decision supersedes a decision the ledger never applied (it
    was held for review), of the same application and firm; Rejected says
    which rule it breaks. A superseded decision never seen here (older than
    the topic's retention) is no obstacle: the application's grant, if any,
    still makes the reviewed one a duplicate (plan_grant)."""
    review = decision.review
    assert review is not None
    superseded = uow.inbox.get(review.supersedes_decision_id)
    if superseded is None:
        return
    if superseded.result in (APPLIED, DUPLICATE):
        raise Rejected(
            f"review.supersedes_decision_id: decision {review.supersedes_decision_id} was already applied to the "
            f"ledger ({superseded.result}): a reviewed decision supersedes only a decision held for review"
        )
    if superseded.application_id != decision.application_id or superseded.credit_code != decision.credit_code:
        raise Rejected(
            f"review.supersedes_decision_id: decision {review.supersedes_decision_id} is of application "
            f"{superseded.application_id} ({superseded.credit_code}), not {decision.application_id} "
            f"({decision.credit_code})"
        )


def apply_notice_line(uow: UnitOfWork, line: NoticeLine, at: dt.datetime) -> tuple[str, GrantRow, list[TrancheRow]]:
    """("applied", the grant now PAYABLE or WITHDRAWN, the tranches scheduled)
    or ("repeat", the grant, []) when it already is in that state. Rejected
    (nothing written) for a line the ledger cannot follow: an unknown
    decision, a firm or application that is not the grant's, PAYABLE after
    WITHDRAWN, WITHDRAWN after PAYABLE (a line is withdrawn only during its
    notice period, before it is payable: workflow.md)."""
    now = rfc3339(at)
    target = GrantState.PAYABLE if line.kind == PAYABLE_LINE else GrantState.WITHDRAWN
    with uow:
        uow.firms.lock(line.credit_code, now)
        grant = uow.grants.by_decision(line.decision_id)
        check_notice_line(uow, line, grant)
        assert grant is not None
        if grant.state == target:
            uow.commit()
            return "repeat", grant, []
        if grant.state != GrantState.RESERVED:
            since = grant.payable_on if grant.state == GrantState.PAYABLE else grant.withdrawn_on
            raise Rejected(
                f"{line.event_id}: the grant of decision {line.decision_id} is {grant.state} since {since} "
                f"(notice {grant.notice_id}): it cannot become {target}"
                + (
                    "; a line is withdrawn only during its notice period, before it is payable"
                    if target == GrantState.WITHDRAWN
                    else ""
                )
            )
        # The application's trace, as every later event of the grant (a new one if none is known).
        trace_id = grant.trace_id or cloudevents.new_trace_id()
        grant = dataclasses.replace(grant, trace_id=trace_id)
        day = line.day.isoformat()
        if target == GrantState.PAYABLE:
            tranches = payable_tranches(grant, line.day)
            uow.grants.set_state(grant.application_id, target, line.notice_id, day, "", now)
            for tranche in tranches:
                uow.tranches.add(tranche, now)
            changed = dataclasses.replace(grant, state=target, notice_id=line.notice_id, payable_on=day)
            messages = [events.grant_payable(changed, len(tranches), at)]
            messages += [
                events.tranche_scheduled(t, grant.decision_id, grant.policy_version, trace_id, at) for t in tranches
            ]
        else:
            tranches = []
            for scope, fen in grant.uses:
                uow.usage.release(grant.credit_code, scope, fen)
            uow.grants.set_state(grant.application_id, target, line.notice_id, day, line.reason, now)
            changed = dataclasses.replace(
                grant, state=target, notice_id=line.notice_id, withdrawn_on=day, withdraw_reason=line.reason
            )
            messages = [events.grant_withdrawn(changed, sum(fen for _, fen in grant.uses), at)]
        uow.outbox.add(messages, now)
        uow.commit()
    return "applied", changed, tranches


def check_notice_line(uow: UnitOfWork, line: NoticeLine, grant: GrantRow | None) -> None:
    """Is there a grant this line is about? Rejected says why not."""
    if grant is None:
        seen = uow.inbox.get(line.decision_id)
        current = uow.grants.get(seen.application_id) if seen is not None else None
        if seen is not None and seen.result in (APPLIED, ADJUSTED) and current is not None:
            why = (
                f"the grant of application {seen.application_id} now holds decision {current.decision_id} "
                f"({current.granted_fen} fen, policy version {current.policy_version}), which superseded it: "
                "the amount noticed is not the amount held, and the new one must be noticed"
            )
        elif seen is not None and seen.result in (HELD_FOR_REVIEW, HELD_SUPERSEDING):
            why = "it was held for review and never applied (a notice names the reviewed decision superseding it)"
        elif seen is not None and seen.result == DUPLICATE:
            why = f"it was a duplicate: application {seen.application_id} was granted under another decision"
        else:
            why = "the ledger has recorded no grant for it"
        raise Rejected(f"{line.event_id}: decision_id: unknown decision {line.decision_id}: {why}")
    if grant.credit_code != line.credit_code:
        raise Rejected(
            f"{line.event_id}: credit_code: the grant of decision {line.decision_id} belongs to "
            f"{grant.credit_code}, not {line.credit_code}"
        )
    if grant.application_id != line.application_id:
        raise Rejected(
            f"{line.event_id}: application_id: decision {line.decision_id} is of application "
            f"{grant.application_id}, not {line.application_id}"
        )


def payable_tranches(grant: GrantRow, payable_on: dt.date) -> list[TrancheRow]:
    """The tranches of a grant that became payable on ``payable_on``: the
    amounts and budget years its decision gave (subsidy.core.ledger.schedule,
    what ``subsidy simulate`` prints), each due on the later of
    ``payable_on`` and its day in its budget year."""
    submitted_on = dt.date.fromisoformat(grant.submitted_on)
    return [
        TrancheRow(
            tranche_id=t.tranche_id,
            application_id=grant.application_id,
            credit_code=grant.credit_code,
            clause=grant.clause,
            number=t.number,
            amount_fen=t.amount_fen,
            due_on=payable_due_on(submitted_on, t.year, payable_on).isoformat(),
            budget_year=t.year,
            status=SCHEDULED,
            policy_version=grant.policy_version,
        )
        for t in schedule(grant.application_id, grant.granted_fen, grant.decision_year, grant.tranche_shares_percent)
    ]


@dataclass
class Advanced:
    """What one run of the scheduler did (``advance_tranches``): tranches
    that became DUE (released ones included), HELD, released, cancelled
    after their hold's grace."""

    due: list[TrancheRow]
    held: list[TrancheRow]
    released: list[TrancheRow]
    cancelled: list[TrancheRow]


GraceDays = Callable[[dt.date], int]


@functools.cache
def _workflow() -> Any:
    from subsidy.core.workflow.settings import load_workflow

    return load_workflow()


def policy_grace_days(day: dt.date) -> int:
    """hold_grace_days of policy/workflow.yaml in force on ``day`` (the
    default when the adapter injects none)."""
    return int(_workflow().on(day).hold_grace_days)


def raise_tranches_due(
    uow: UnitOfWork, today: dt.date, at: dt.datetime, grace_days: GraceDays | None = None
) -> list[TrancheRow]:
    """``advance_tranches``, answering the tranches that became DUE."""
    return advance_tranches(uow, today, at, grace_days).due


def advance_tranches(uow: UnitOfWork, today: dt.date, at: dt.datetime, grace_days: GraceDays | None = None) -> Advanced:
    """The scheduler's one unit of work, firm by firm (locked, in credit-code
    order: two schedulers cannot deadlock), by the release gate
    (subsidy.core.release) over the firm's latest facts:

    - each HELD tranche is released (TrancheReleased, then TrancheDue) when
      the facts were restored within its grace, cancelled (TrancheCancelled
      with the reason) once the grace is over, else kept;
    - the SCHEDULED tranches due on or before ``today`` become DUE
      (TrancheDue) when the firm passes the gate, HELD (TrancheHeld, the
      grace of policy/workflow.yaml in force today) when it does not.

    Idempotent: what moved is no longer SCHEDULED or HELD, and a second run
    finds nothing to do."""
    grace = grace_days or policy_grace_days
    now = rfc3339(at)
    day = today.isoformat()
    out = Advanced([], [], [], [])
    with uow:
        firms = sorted(set(uow.tranches.firms_due(day)) | set(uow.tranches.firms_held()))
        for firm in firms:
            uow.firms.lock(firm, now)
            result = release.gate(uow.facts.get(firm))
            as_of = result.facts_as_of.isoformat() if result.facts_as_of else ""
            messages: list[OutboxMessage] = []
            for t in uow.tranches.of_firm_in(firm, (HELD,)):
                until = dt.date.fromisoformat(t.hold_until)
                action = release.after_hold(result, until, today)
                trace_id = _trace_of(uow, t.application_id)
                if action == release.AfterHold.RELEASE:
                    uow.tranches.mark_released(t.tranche_id, now)
                    again = _reread(uow, t.tranche_id)
                    messages += [
                        events.tranche_released(again, day, as_of, trace_id, at),
                        events.tranche_due_again(again, trace_id, at),
                    ]
                    out.released.append(again)
                    out.due.append(again)
                elif action == release.AfterHold.CANCEL:
                    reason = release.cancel_reason(result, dt.date.fromisoformat(t.held_on), until)
                    uow.tranches.mark_cancelled(t.tranche_id, day, reason, now)
                    gone = _reread(uow, t.tranche_id)
                    messages.append(events.tranche_cancelled(gone, reason, day, trace_id, at))
                    out.cancelled.append(gone)
            if result.passes:
                rows = sorted(uow.tranches.mark_due(firm, day, now), key=lambda t: (t.due_on, t.tranche_id))
                messages += [events.tranche_due(t, _trace_of(uow, t.application_id), at) for t in rows]
                out.due += rows
            else:
                scheduled = uow.tranches.of_firm_in(firm, (SCHEDULED,), due_by=day)
                held = _hold(uow, scheduled, result, today, grace, now)
                messages += [
                    events.tranche_held(t, result.codes, as_of, _trace_of(uow, t.application_id), at) for t in held
                ]
                out.held += held
            uow.outbox.add(messages, now)
        uow.commit()
    return out


def _reread(uow: UnitOfWork, tranche_id: str) -> TrancheRow:
    row = uow.tranches.get(tranche_id)
    assert row is not None  # tranches are never deleted
    return row


def _hold(
    uow: UnitOfWork,
    tranches: list[TrancheRow],
    result: release.GateResult,
    today: dt.date,
    grace: GraceDays,
    now: str,
) -> list[TrancheRow]:
    """HELD from today, each until today + the grace in force today; as they are now."""
    until = release.hold_until(today, grace(today)).isoformat()
    held = []
    for t in tranches:
        uow.tranches.mark_held(t.tranche_id, today.isoformat(), until, result.reason, now)
        held.append(_reread(uow, t.tranche_id))
    return held


@dataclass(frozen=True)
class FactsApplied:
    """What a FirmFacts record did: ``result`` applied (kept as the firm's
    latest), stale (a sequence not above the kept one: nothing written) or
    repeat (a tombstone for a firm already unknown); the DUE tranches it
    held (the firm no longer passes the gate)."""

    result: str
    gate: release.GateResult
    held: list[TrancheRow]


def apply_firm_facts(
    uow: UnitOfWork,
    standing: release.FirmStanding,
    name: str,
    today: dt.date,
    at: dt.datetime,
    grace_days: GraceDays | None = None,
) -> FactsApplied:
    """A firm's facts from subsidy.firms.v1, in one unit of work holding the
    firm: kept when newer (``release.newer``: the highest feed_sequence
    wins; a tombstone — ``known`` False — always applies, keeping the
    sequence), and, when they fail the gate, the firm's DUE tranches (not
    yet paid) are HELD at once (TrancheHeld): finance is never left with a
    DUE for a firm that has left. Releases and cancellations are the
    scheduler's (``advance_tranches``), which the adapter wakes."""
    grace = grace_days or policy_grace_days
    now = rfc3339(at)
    with uow:
        uow.firms.lock(standing.credit_code, now)
        current = uow.facts.get(standing.credit_code)
        if standing.known and not release.newer(current, standing.feed_sequence):
            uow.commit()
            return FactsApplied("stale", release.gate(current), [])
        if not standing.known:
            if current is not None and not current.known:
                uow.commit()
                return FactsApplied("repeat", release.gate(current), [])
            sequence = current.feed_sequence if current is not None else 0
            standing = dataclasses.replace(standing, feed_sequence=sequence)
        uow.facts.put(standing, name, now)
        result = release.gate(standing)
        held: list[TrancheRow] = []
        if not result.passes:
            due = uow.tranches.of_firm_in(standing.credit_code, (DUE,))
            held = _hold(uow, due, result, today, grace, now)
            as_of = result.facts_as_of.isoformat() if result.facts_as_of else ""
            uow.outbox.add(
                [events.tranche_held(t, result.codes, as_of, _trace_of(uow, t.application_id), at) for t in held],
                now,
            )
        uow.commit()
    return FactsApplied("applied", result, held)


# -- recovery (追回) -------------------------------------------------------------------

#: OpenRecovery's reason, like CancelTranche's: it travels in RecoveryOpened.
MAX_RECOVERY_REASON_CHARS = MAX_CANCEL_REASON_CHARS
MAX_RECOVERY_TRANCHES = 100


def check_recovery_request(
    application_id: str, tranche_ids: Iterable[str], amount_fen: int, reason: str, void_award: bool, opened_by: str
) -> RecoveryRequest:
    """OpenRecovery's form, or InvalidArgument naming the field; nothing read."""
    if not application_id.strip():
        raise InvalidArgument("application_id: is required")
    if application_id != application_id.strip() or any(unicodedata.category(c) == "Cc" for c in application_id):
        raise InvalidArgument("application_id: must not contain whitespace around it or control characters")
    ids = tuple(tranche_ids)
    if len(ids) > MAX_RECOVERY_TRANCHES:
        raise InvalidArgument(f"tranche_ids: at most {MAX_RECOVERY_TRANCHES}, got {len(ids)}")
    for i, t in enumerate(ids):
        if not t:
            raise InvalidArgument(f"tranche_ids[{i}]: must not be empty")
        if ids.index(t) != i:
            raise InvalidArgument(f"tranche_ids[{i}]: {t!r} is named twice")
    if amount_fen <= 0:
        raise InvalidArgument(f"amount_fen: must be positive, got {amount_fen}")
    reason = reason.strip()
    if not reason:
        raise InvalidArgument("reason: is required (why the money is recovered)")
    try:
        check_cancel_reason(reason)
    except InvalidArgument:
        raise InvalidArgument(
            f"reason: at most {MAX_RECOVERY_REASON_CHARS} characters and no control characters"
        ) from None
    return RecoveryRequest(application_id, ids, amount_fen, reason, void_award, opened_by)


@dataclass(frozen=True)
class RecoveryOpened:
    recovery: RecoveryRow
    created: bool
    #: The award's open tranches cancelled because it was declared void.
    cancelled: list[TrancheRow]
    #: Cap room freed at once (the void award's unpaid tranches).
    released_fen: int = 0


def open_recovery(uow: UnitOfWork, request: RecoveryRequest, today: dt.date, at: dt.datetime) -> RecoveryOpened:
    """A REVIEWER's recovery of money paid on tranches of one grant, in one
    unit of work holding the firm: the amount spread over the tranches
    (``release.allocate``: at most what was paid on them and not yet claimed
    by an earlier recovery), RecoveryOpened; with ``void_award`` the grant
    is declared void, its open tranches cancelled (TrancheCancelled) and
    their amounts' cap room released. The same request again (same derived
    id) answers the recovery as it is, writing nothing.
    NotFound (no grant, a tranche of another grant), FailedPrecondition (a
    tranche not paid; more than can be recovered), nothing written."""
    now = rfc3339(at)
    rid = recovery_id(
        request.application_id, request.tranche_ids, request.amount_fen, request.reason, request.void_award
    )
    with uow:
        grant = uow.grants.get(request.application_id)
        if grant is None:
            raise NotFound(f"application_id: no grant for application {request.application_id!r}")
        uow.firms.lock(grant.credit_code, now)
        existing = uow.recoveries.get(rid)
        if existing is not None:
            uow.commit()
            return RecoveryOpened(existing, False, [])
        tranches = uow.tranches.of_application(grant.application_id)
        selected = _recovered_tranches(request, grant, tranches)
        claimed = uow.recoveries.claimed_fen(grant.application_id)
        try:
            allocations = release.allocate(
                request.amount_fen,
                [release.PaidTranche(t.tranche_id, t.amount_fen, claimed.get(t.tranche_id, 0)) for t in selected],
            )
        except release.RecoveryRefused as exc:
            raise FailedPrecondition(str(exc)) from None
        row = RecoveryRow(
            recovery_id=rid,
            application_id=grant.application_id,
            credit_code=grant.credit_code,
            clause=grant.clause,
            allocations=allocations,
            amount_fen=request.amount_fen,
            recovered_fen=0,
            reason=request.reason,
            void_award=request.void_award,
            opened_on=today.isoformat(),
            opened_by=request.opened_by,
            status=RECOVERY_OPEN,
        )
        uow.recoveries.add(row, now)
        trace_id = grant.trace_id or cloudevents.new_trace_id()
        messages = [events.recovery_opened(row, grant.decision_id, trace_id, at)]
        cancelled: list[TrancheRow] = []
        released_fen = 0
        if request.void_award and not grant.void:
            uow.grants.declare_void(grant.application_id, now)
            reason = f"奖励已被认定无效（追回 {rid}）：{request.reason}"[:MAX_CANCEL_REASON_CHARS]
            for t in tranches:
                if t.status in OPEN:
                    uow.tranches.mark_cancelled(t.tranche_id, today.isoformat(), reason, now)
                    gone = _reread(uow, t.tranche_id)
                    cancelled.append(gone)
                    messages.append(events.tranche_cancelled(gone, reason, today.isoformat(), trace_id, at))
            released_fen = _release_cap(uow, grant, sum(t.amount_fen for t in cancelled), now)
        uow.outbox.add(messages, now)
        uow.commit()
    return RecoveryOpened(row, True, cancelled, released_fen)


def _recovered_tranches(request: RecoveryRequest, grant: GrantRow, tranches: list[TrancheRow]) -> list[TrancheRow]:
    """The PAID tranches named (in the request's order), or every PAID
    tranche of the grant when none is named."""
    if not request.tranche_ids:
        paid = [t for t in tranches if t.status == PAID]
        if not paid:
            raise FailedPrecondition(
                f"application_id: application {grant.application_id} has no paid tranche: nothing to recover"
            )
        return paid
    by_id = {t.tranche_id: t for t in tranches}
    selected = []
    for i, tranche_id in enumerate(request.tranche_ids):
        t = by_id.get(tranche_id)
        if t is None:
            raise NotFound(f"tranche_ids[{i}]: {tranche_id!r} is not a tranche of application {grant.application_id}")
        if t.status != PAID:
            raise FailedPrecondition(
                f"tranche_ids[{i}]: tranche {tranche_id} is {t.status}: only paid money can be recovered"
            )
        selected.append(t)
    return selected


def _release_cap(uow: UnitOfWork, grant: GrantRow, fen: int, now: str) -> int:
    """Free ``fen`` of a void grant's cap use (up to what it still holds); the fen freed."""
    grant = uow.grants.get(grant.application_id) or grant
    freed = release.cap_release(fen, True, grant.uses, grant.cap_released_fen)
    for scope, f in freed:
        uow.usage.release(grant.credit_code, scope, f)
    total = sum(f for _, f in freed)
    if total:
        uow.grants.add_cap_released(grant.application_id, total, now)
    return total


def apply_recovery_confirmation(
    uow: UnitOfWork, confirmation: RecoveryConfirmation, at: dt.datetime
) -> tuple[str, RecoveryRow | None, int]:
    """("applied", the recovery now, the cap fen freed) or ("repeat", None, 0)
    for a confirmation id already applied; Rejected (nothing written) for
    one that must not be: an unknown recovery, another firm's, more than
    is outstanding. Recovered money frees the cap only for a void award."""
    now = rfc3339(at)
    with uow:
        if uow.confirmations.has(confirmation.confirmation_id):
            uow.commit()
            return "repeat", None, 0
        recovery = uow.recoveries.get(confirmation.recovery_id)
        if recovery is None:
            raise Rejected(f"recovery_id: unknown recovery {confirmation.recovery_id!r}")
        uow.firms.lock(recovery.credit_code, now)
        if uow.confirmations.has(confirmation.confirmation_id):
            uow.commit()
            return "repeat", None, 0
        recovery = uow.recoveries.get(confirmation.recovery_id)
        assert recovery is not None
        if confirmation.credit_code != recovery.credit_code:
            raise Rejected(
                f"credit_code: recovery {recovery.recovery_id} is of {recovery.credit_code}, "
                f"not {confirmation.credit_code}"
            )
        if confirmation.amount_fen > recovery.outstanding_fen:
            raise Rejected(
                f"amount_fen: {confirmation.amount_fen} fen is more than recovery {recovery.recovery_id} has "
                f"outstanding ({recovery.outstanding_fen} fen of {recovery.amount_fen})"
            )
        uow.confirmations.add(confirmation, now)
        done = recovery.recovered_fen + confirmation.amount_fen == recovery.amount_fen
        uow.recoveries.add_recovered(
            recovery.recovery_id, confirmation.amount_fen, RECOVERY_RECOVERED if done else RECOVERY_OPEN, now
        )
        grant = uow.grants.get(recovery.application_id)
        assert grant is not None  # a recovery is of a grant
        released = 0
        if grant.void or recovery.void_award:
            released = _release_cap(uow, grant, confirmation.amount_fen, now)
        after = uow.recoveries.get(recovery.recovery_id)
        assert after is not None
        uow.outbox.add(
            [
                events.recovery_recorded(
                    after,
                    confirmation.confirmation_id,
                    confirmation.amount_fen,
                    confirmation.recovered_on,
                    released,
                    grant.trace_id or cloudevents.new_trace_id(),
                    at,
                )
            ],
            now,
        )
        uow.commit()
    return "applied", after, released


def apply_payment(uow: UnitOfWork, payment: Payment, at: dt.datetime) -> tuple[str, TrancheRow | None]:
    """("applied", the tranche now PAID) or ("repeat", None) for a payment id
    already applied; raises Rejected (nothing written) when it must not be applied."""
    now = rfc3339(at)
    with uow:
        if uow.payments.has(payment.payment_id):
            uow.commit()
            return "repeat", None
        tranche = uow.tranches.get(payment.tranche_id)
        if tranche is not None:
            uow.firms.lock(tranche.credit_code, now)
            # Looked at again under the lock: another replica may have applied
            # this payment, or changed the tranche, while this one waited.
            if uow.payments.has(payment.payment_id):
                uow.commit()
                return "repeat", None
            tranche = uow.tranches.get(payment.tranche_id)
        check_payment(payment, tranche)
        assert tranche is not None
        uow.tranches.mark_paid(tranche.tranche_id, payment.paid_on, payment.payment_id, now)
        uow.payments.add(payment, now)
        paid = uow.tranches.get(tranche.tranche_id)
        assert paid is not None
        uow.outbox.add(
            [events.tranche_paid(paid, payment.paid_on, payment.payment_id, _trace_of(uow, paid.application_id), at)],
            now,
        )
        uow.commit()
    return "applied", paid


def check_cancel_reason(reason: str) -> None:
    """At most MAX_CANCEL_REASON_CHARS characters, none of them a control
    character (Unicode category Cc: NUL, newline, ESC, DEL, C1…)."""
    if len(reason) > MAX_CANCEL_REASON_CHARS:
        raise InvalidArgument(f"reason: at most {MAX_CANCEL_REASON_CHARS} characters, got {len(reason)}")
    if any(unicodedata.category(c) == "Cc" for c in reason):
        raise InvalidArgument("reason: must not contain control characters")


def cancel_tranche(
    uow: UnitOfWork, tranche_id: str, reason: str, today: dt.date, at: dt.datetime
) -> tuple[TrancheRow, bool]:
    """(tranche, changed). SCHEDULED or DUE → CANCELLED with a
    TrancheCancelled event; already CANCELLED → unchanged; PAID →
    FailedPrecondition; unknown → NotFound. A ``reason`` over
    MAX_CANCEL_REASON_CHARS or with a control character → InvalidArgument,
    nothing read or written."""
    check_cancel_reason(reason)
    now = rfc3339(at)
    with uow:
        tranche = uow.tranches.get(tranche_id)
        if tranche is None:
            raise NotFound(f"no tranche {tranche_id!r}")
        uow.firms.lock(tranche.credit_code, now)
        tranche = uow.tranches.get(tranche_id)
        assert tranche is not None  # tranches are never deleted
        if tranche.status == CANCELLED:
            uow.commit()
            return tranche, False
        if tranche.status == PAID:
            raise FailedPrecondition(
                f"tranche {tranche_id} was paid on {tranche.paid_on} (payment {tranche.payment_id}): "
                "a paid tranche cannot be cancelled"
            )
        assert tranche.status in OPEN
        uow.tranches.mark_cancelled(tranche_id, today.isoformat(), reason, now)
        cancelled = uow.tranches.get(tranche_id)
        assert cancelled is not None
        uow.outbox.add(
            [
                events.tranche_cancelled(
                    cancelled, reason, today.isoformat(), _trace_of(uow, cancelled.application_id), at
                )
            ],
            now,
        )
        uow.commit()
    return cancelled, True


def ledger(uow: UnitOfWork, credit_code: str) -> Ledger:
    """The firm's grants with their state and tranches, and its usage per
    scope split into what RESERVED grants hold and the rest (PAYABLE)."""
    with uow:
        grants = uow.grants.of_firm(credit_code)
        tranches = uow.tranches.of_firm(credit_code)
        scopes = uow.usage.of_firm(credit_code)
        recoveries = uow.recoveries.of_firm(credit_code)
        uow.commit()
    by_application: dict[str, list[TrancheRow]] = {}
    for t in tranches:
        by_application.setdefault(t.application_id, []).append(t)
    recovered: dict[str, list[RecoveryRow]] = {}
    for r in recoveries:
        recovered.setdefault(r.application_id, []).append(r)
    reserved: dict[str, int] = {}
    for g in grants:
        if g.state == GrantState.RESERVED:
            for scope, fen in g.uses:
                reserved[scope] = reserved.get(scope, 0) + fen
    return Ledger(
        credit_code,
        tuple(
            dataclasses.replace(
                g,
                tranches=tuple(by_application.get(g.application_id, ())),
                recoveries=tuple(recovered.get(g.application_id, ())),
            )
            for g in grants
        ),
        tuple(_with_reserved(u, reserved.get(u.scope, 0)) for u in scopes),
    )


def _with_reserved(usage: UsageRow, reserved_fen: int) -> UsageRow:
    return dataclasses.replace(usage, reserved_fen=min(reserved_fen, usage.used_fen))


def list_tranches(uow: UnitOfWork, query: TrancheQuery) -> tuple[list[TrancheRow], str]:
    """One page and the token of the next ("" on the last page)."""
    with uow:
        rows = uow.tranches.page(query, query.page_size + 1)  # one more: is there a next page?
        uow.commit()
    if len(rows) > query.page_size:
        rows = rows[: query.page_size]
        return rows, next_token(query, rows[-1])
    return rows, ""


def tranches_of_budget_year(uow: UnitOfWork, year: int) -> list[TrancheRow]:
    """Finance's CSV (adapters/export.py): a budget year's tranches by due date."""
    with uow:
        rows = uow.tranches.of_budget_year(year)
        uow.commit()
    return rows


# -- what arrives on Kafka ------------------------------------------------------------


def parse_decision(value: bytes | None) -> Decision:
    """A valid subsidy.v1.Decision as a domain value, or Rejected saying why.
    Decoded once, by the contract's decoder of the type (subsidy.contracts.events);
    what payout itself needs of the content is checked here."""
    try:
        decision = codec.decision_from_proto(events_contract.decision(value))
    except (events_contract.MalformedEvent, BadInput) as exc:
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
    if decision.review is not None:
        check_review(decision)
    return decision


def check_review(decision: Decision) -> None:
    """A reviewed decision as decision.proto defines it (ReviewRecord), or
    Rejected naming the field."""
    review = decision.review
    assert review is not None
    if decision.review_required:
        raise Rejected("review_required: a reviewed decision (review set) cannot require review again")
    if not review.supersedes_decision_id:
        raise Rejected("review.supersedes_decision_id: is required")
    if not review.item_id:
        raise Rejected("review.item_id: is required")
    expected = f"{review.supersedes_decision_id}{REVIEW_ID_SEPARATOR}{review.item_id}"
    if decision.decision_id != expected:
        raise Rejected(
            f"decision_id: a reviewed decision's id is <supersedes_decision_id>/review:<item_id>, "
            f"expected {expected!r}, got {decision.decision_id!r}"
        )
    if review.result not in ("APPROVED", "REJECTED"):
        raise Rejected(f"review.result: APPROVED or REJECTED, got {review.result!r}")
    if (review.result == "APPROVED") != (decision.outcome == "ELIGIBLE"):
        raise Rejected(
            f"outcome: a reviewed decision {review.result} must be "
            f"{'ELIGIBLE' if review.result == 'APPROVED' else 'other than ELIGIBLE'}, got {decision.outcome}"
        )
    if not review.reviewers:
        raise Rejected("review.reviewers: at least one reviewer is required")


def parse_notice_line(value: bytes | None) -> NoticeLine | None:
    """The LinePayable or LineWithdrawn of a subsidy.v1.NoticeEvent, checked;
    None for the other kinds (NoticePublished, objections: nothing for the
    ledger); Rejected naming the field for anything else."""
    if not value:
        # The reason this consumer's dead letters have always given (tests pin it).
        raise Rejected("empty value (or a tombstone): expected a subsidy.v1.NoticeEvent")
    try:
        message = events_contract.notice_event(value)
    except events_contract.MalformedEvent as exc:
        raise Rejected(str(exc)) from None
    kind = message.WhichOneof("event")
    if kind not in ("line_payable", "line_withdrawn"):
        return None
    body = getattr(message, kind)
    for name in ("decision_id", "application_id", "credit_code", "notice_id"):
        if not getattr(body, name):
            raise Rejected(f"{kind}.{name}: is required")
    line_kind = PAYABLE_LINE if kind == "line_payable" else WITHDRAWN_LINE
    expected = (payable_event_id if line_kind == PAYABLE_LINE else withdrawn_event_id)(body.decision_id)
    if message.event_id != expected:
        raise Rejected(f"event_id: expected {expected!r} for this {kind}, got {message.event_id!r}")
    day_field = "payable_on" if line_kind == PAYABLE_LINE else "withdrawn_on"
    try:
        day = parse_iso_date(getattr(body, day_field), f"{kind}.{day_field}")
    except InvalidArgument as exc:
        raise Rejected(str(exc)) from None
    reason = body.reason if line_kind == WITHDRAWN_LINE else ""
    if line_kind == WITHDRAWN_LINE:
        try:
            check_cancel_reason(reason)
        except InvalidArgument as exc:
            raise Rejected(f"{kind}.{exc}") from None
    return NoticeLine(
        kind=line_kind,
        event_id=message.event_id,
        decision_id=body.decision_id,
        application_id=body.application_id,
        credit_code=body.credit_code,
        notice_id=body.notice_id,
        day=day,
        reason=reason,
    )


def parse_payment(value: bytes | None) -> Payment:
    """A well-formed subsidy.v1.PaymentConfirmed, or Rejected saying why (the
    contract's decoder, then what payout needs: a positive amount, a real date)."""
    try:
        m = events_contract.payment_confirmed(value)
    except events_contract.MalformedEvent as exc:
        raise Rejected(str(exc)) from None
    if not m.paid_on:
        raise Rejected("paid_on: is required")
    if m.amount_fen <= 0:
        raise Rejected(f"amount_fen: must be positive, got {m.amount_fen}")
    try:
        parse_iso_date(m.paid_on, "paid_on")
    except InvalidArgument as exc:
        raise Rejected(str(exc)) from None
    return Payment(m.payment_id, m.tranche_id, m.credit_code, m.amount_fen, m.paid_on)


def parse_firm_facts(key: bytes | None, value: bytes | None) -> tuple[release.FirmStanding, str]:
    """A subsidy.firms.v1 record as the release gate reads it, and the firm's
    name; Rejected naming the field. The key is the credit code; a tombstone
    (no value, or an empty one) says the platform no longer knows the firm
    (``known`` False). A date after payout's today is not refused here:
    registry-sync checks it against its own clock, and dead-lettering the
    latest facts over a clock skew would leave payout with older ones (the
    applier logs it)."""
    from subsidy.core import credit_code as credit_codes

    try:
        code = bytes(key or b"").decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected("key: not UTF-8: expected the firm's credit code") from None
    if not credit_codes.is_valid(code):
        raise Rejected(f"key: not a valid unified social credit code: {code[:40]!r}")
    try:
        m = events_contract.firm_facts(value)
    except events_contract.MalformedEvent as exc:
        raise Rejected(str(exc)) from None
    if m is None:  # a tombstone
        return release.FirmStanding(code, False, None, False, False, False, 0), ""
    if m.credit_code != code:
        raise Rejected(f"credit_code: {m.credit_code[:40]!r} is not the record's key {code!r}")
    if m.feed_sequence <= 0:
        raise Rejected(f"feed_sequence: must be positive, got {m.feed_sequence}")
    try:
        as_of = parse_iso_date(m.as_of, "as_of")
    except InvalidArgument as exc:
        raise Rejected(str(exc)) from None
    standing = release.FirmStanding(
        credit_code=code,
        known=True,
        as_of=as_of,
        registered_in_district=m.registered_in_district,
        tax_registered_in_district=m.tax_registered_in_district,
        independent_legal_person=m.independent_legal_person,
        feed_sequence=m.feed_sequence,
    )
    name = "".join(c for c in m.name if unicodedata.category(c) != "Cc")[:200]
    return standing, name


def is_recovery_confirmed(headers: Any) -> bool:
    """Is this subsidy.payments.v1 record a RecoveryConfirmed (its ce_type
    header)? Every other record there is a PaymentConfirmed (ADR 0017)."""
    return cloudevents.as_dict(headers).get("ce_type") == RECOVERY_CONFIRMED_TYPE


def parse_recovery_confirmed(value: bytes | None) -> RecoveryConfirmation:
    """A well-formed subsidy.v1.RecoveryConfirmed, or Rejected naming the field."""
    from google.protobuf.message import DecodeError

    from subsidy.v1 import payout_pb2

    if not value:
        raise Rejected("empty value (or a tombstone): expected a subsidy.v1.RecoveryConfirmed")
    try:
        m = payout_pb2.RecoveryConfirmed.FromString(bytes(value))
    except (DecodeError, ValueError) as exc:
        raise Rejected(f"not a subsidy.v1.RecoveryConfirmed protobuf: {exc}") from None
    for name in ("confirmation_id", "recovery_id", "credit_code", "recovered_on"):
        if not getattr(m, name):
            raise Rejected(f"{name}: is required")
    if m.amount_fen <= 0:
        raise Rejected(f"amount_fen: must be positive, got {m.amount_fen}")
    try:
        parse_iso_date(m.recovered_on, "recovered_on")
    except InvalidArgument as exc:
        raise Rejected(str(exc)) from None
    return RecoveryConfirmation(m.confirmation_id, m.recovery_id, m.credit_code, m.amount_fen, m.recovered_on)


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
            f"amount mismatch: paid {payment.amount_fen} fen, tranche {tranche.tranche_id} is {tranche.amount_fen} fen"
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
    """The RESERVED grant a (non-duplicate) plan writes, and the tranches it
    would have were it payable now (tranche k due on the submission date in
    decision year + k; the ledger writes them only once the grant is
    PAYABLE, ``payable_tranches``)."""
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
            policy_version=decision.policy_version,
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
        tranches=(),
        state=GrantState.RESERVED,
        uses=tuple(_uses(plan)),
        tranche_shares_percent=tuple(decision.tranche_shares_percent),
        submitted_on=decision.submitted_on.isoformat(),
    )
    return grant, tranches


def _uses(plan: GrantPlan) -> list[tuple[str, int]]:
    """The plan's granted fen per scope, in the order first used."""
    by_scope: dict[str, int] = {}
    for use in plan.uses:
        by_scope[use.scope] = by_scope.get(use.scope, 0) + use.granted_fen
    return list(by_scope.items())


def plan_events(
    decision: Decision, plan: GrantPlan, trace_id: str, at: dt.datetime | None = None
) -> list[OutboxMessage]:
    """GrantRecorded of a RESERVED grant, with no tranche (they follow
    GrantPayable); a duplicate: a GrantRecorded of 0 with
    DUPLICATE_APPLICATION, under the decision's id."""
    grant, _ = plan_rows(decision, plan, trace_id)
    return [events.grant_recorded(grant, 0, duplicate=plan.duplicate, at=at)]


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


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument(f"page_size: must not be negative, got {requested}")
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def tranche_query(due_from: str, due_to: str, statuses: Iterable[str], requested_size: int, token: str) -> TrancheQuery:
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
