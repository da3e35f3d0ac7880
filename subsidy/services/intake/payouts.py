"""How payout events change what intake shows of an application's grant,
and what its state is from its decision and grant.

Pure: ``fold(grant, event)`` returns the grant after one subsidy.v1.PayoutEvent;
``state_of(decision, grant)`` the application's state; ``replaces(current,
new)`` whether a decision replaces the one shown (a reviewed decision is
never replaced by a computed one, whichever arrived first).
Events of one firm arrive in order (one key, one partition), so a tranche's
TrancheScheduled precedes its TrancheDue, TranchePaid or TrancheCancelled.
Which application an event belongs to is ``subsidy.contracts.events.application_id_of``:
the event says so (events from before it did are read there, once).
"""

from __future__ import annotations

from typing import Any


class NotAPayoutEvent(ValueError):
    pass


def fold(grant: Any, event: Any) -> Any:
    """The grant (subsidy.v1.Grant, possibly empty) after one payout event."""
    from subsidy.v1 import payout_pb2

    kind = event.WhichOneof("event")
    if kind == "grant_recorded":
        g = event.grant_recorded
        if _is_duplicate(g) and grant.decision_id and grant.decision_id != g.decision_id:
            # A later decision for an application already granted: a grant of
            # 0 under its own id; the application's grant is the first one.
            return grant
        # Only what GrantRecorded says: what later events set (state, the
        # notice, tranches, recoveries) stays, whichever arrived first.
        state = grant.state
        grant.application_id = g.application_id
        grant.decision_id = g.decision_id
        grant.clause = g.clause
        grant.max_award_fen = g.max_award_fen
        grant.granted_fen = g.granted_fen
        grant.decision_year = g.decision_year
        grant.policy_version = g.policy_version
        del grant.reasons[:]
        grant.reasons.extend(g.reasons)
        # RESERVED from the event; a grant already further (its GrantPayable
        # folded in before a replay of this) keeps its state.
        grant.state = state if state != payout_pb2.GRANT_STATE_UNSPECIFIED else g.state
        return grant
    if kind == "grant_adjusted":
        # A superseding decision (a policy version's adoption, issue 14) now
        # holds the RESERVED grant: its amount, decision and reasons.
        a = event.grant_adjusted
        if grant.state not in (payout_pb2.GRANT_STATE_UNSPECIFIED, payout_pb2.GRANT_STATE_RESERVED):
            return grant  # a grant further on was never adjusted (payout keeps it); an old event read late
        grant.application_id = a.application_id
        grant.decision_id = a.decision_id
        grant.clause = a.clause
        grant.max_award_fen = a.max_award_fen
        grant.granted_fen = a.granted_fen
        grant.decision_year = a.decision_year
        grant.policy_version = a.policy_version
        del grant.reasons[:]
        grant.reasons.extend(a.reasons)
        grant.state = a.state
        return grant
    if kind == "grant_payable":
        p = event.grant_payable
        _identify(grant, p)
        grant.state = payout_pb2.GRANT_STATE_PAYABLE
        grant.notice_id = p.notice_id
        grant.payable_on = p.payable_on
        return grant
    if kind == "grant_withdrawn":
        w = event.grant_withdrawn
        _identify(grant, w)
        grant.state = payout_pb2.GRANT_STATE_WITHDRAWN
        grant.notice_id = w.notice_id
        grant.withdrawn_on = w.withdrawn_on
        grant.withdraw_reason = w.reason
        return grant
    if kind == "tranche_scheduled":
        t = event.tranche_scheduled
        tranche = _tranche(grant, t.tranche_id, create=True)
        tranche.application_id = t.application_id
        tranche.credit_code = t.credit_code
        tranche.clause = t.clause
        tranche.number = t.number
        tranche.amount_fen = t.amount_fen
        tranche.due_on = t.due_on
        tranche.budget_year = t.budget_year
        if tranche.status == payout_pb2.TRANCHE_STATUS_UNSPECIFIED:
            tranche.status = payout_pb2.TRANCHE_STATUS_SCHEDULED
        return grant
    if kind == "tranche_due":
        tranche = _tranche(grant, event.tranche_due.tranche_id)
        if tranche is not None and tranche.status == payout_pb2.TRANCHE_STATUS_SCHEDULED:
            tranche.status = payout_pb2.TRANCHE_STATUS_DUE
        return grant
    if kind == "tranche_paid":
        paid = event.tranche_paid
        tranche = _tranche(grant, paid.tranche_id)
        if tranche is not None:
            tranche.status = payout_pb2.TRANCHE_STATUS_PAID
            tranche.paid_on = paid.paid_on
            tranche.payment_id = paid.payment_id
        return grant
    if kind == "tranche_cancelled":
        tranche = _tranche(grant, event.tranche_cancelled.tranche_id)
        if tranche is not None:
            tranche.status = payout_pb2.TRANCHE_STATUS_CANCELLED
        return grant
    if kind == "tranche_held":
        # The release gate (issue 13): the firm no longer meets 一、适用范围.
        tranche = _tranche(grant, event.tranche_held.tranche_id)
        if tranche is not None and tranche.status in (
            payout_pb2.TRANCHE_STATUS_SCHEDULED,
            payout_pb2.TRANCHE_STATUS_DUE,
        ):
            tranche.status = payout_pb2.TRANCHE_STATUS_HELD
        return grant
    if kind == "tranche_released":
        # Facts restored within the hold grace: the tranche becomes DUE
        # (payout's TrancheDue follows and says the same).
        tranche = _tranche(grant, event.tranche_released.tranche_id)
        if tranche is not None and tranche.status == payout_pb2.TRANCHE_STATUS_HELD:
            tranche.status = payout_pb2.TRANCHE_STATUS_DUE
        return grant
    if kind == "recovery_opened":
        o = event.recovery_opened
        recovery = _recovery(grant, o.recovery_id)
        recovery.application_id = o.application_id
        recovery.credit_code = o.credit_code
        del recovery.tranche_ids[:]
        recovery.tranche_ids.extend(o.tranche_ids)
        recovery.amount_fen = o.amount_fen
        recovery.reason = o.reason
        recovery.void_award = o.void_award
        recovery.opened_on = o.opened_on
        recovery.status = "RECOVERED" if recovery.recovered_fen >= o.amount_fen > 0 else "OPEN"
        grant.void = grant.void or o.void_award
        return grant
    if kind == "recovery_recorded":
        r = event.recovery_recorded
        recovery = _recovery(grant, r.recovery_id)
        # recovered_fen is the recovery's running total, so a replay adds nothing.
        recovery.recovered_fen = max(recovery.recovered_fen, r.recovered_fen)
        if r.outstanding_fen == 0 and r.recovered_fen > 0:
            recovery.status = "RECOVERED"
        return grant
    raise NotAPayoutEvent(f"unknown payout event {kind!r}")


def _is_duplicate(recorded: Any) -> bool:
    return any(r.code == "DUPLICATE_APPLICATION" for r in recorded.reasons)


def _identify(grant: Any, body: Any) -> None:
    """A grant known first from its GrantPayable/GrantWithdrawn (intake began
    reading after its GrantRecorded) still says what it is."""
    if not grant.application_id:
        grant.application_id = body.application_id
        grant.decision_id = body.decision_id
        grant.clause = body.clause
        if hasattr(body, "granted_fen"):
            grant.granted_fen = body.granted_fen


def _recovery(grant: Any, recovery_id: str) -> Any:
    for recovery in grant.recoveries:
        if recovery.recovery_id == recovery_id:
            return recovery
    return grant.recoveries.add(recovery_id=recovery_id, status="OPEN")


def _tranche(grant: Any, tranche_id: str, create: bool = False) -> Any:
    for tranche in grant.tranches:
        if tranche.tranche_id == tranche_id:
            return tranche
    if not create:
        return None
    tranche = grant.tranches.add(tranche_id=tranche_id)
    return tranche


def fold_bytes(grant: bytes | None, event: Any) -> bytes:
    from subsidy.v1 import payout_pb2

    current = payout_pb2.Grant.FromString(grant) if grant else payout_pb2.Grant()
    folded = fold(current, event)
    # The money, from what the grant holds (a replay changes nothing).
    folded.paid_fen = sum(t.amount_fen for t in folded.tranches if t.status == payout_pb2.TRANCHE_STATUS_PAID)
    folded.recovered_fen = sum(r.recovered_fen for r in folded.recoveries)
    folded.net_fen = folded.paid_fen - folded.recovered_fen
    ordered = sorted(folded.tranches, key=lambda t: t.number)
    del folded.tranches[:]
    folded.tranches.extend(ordered)
    return folded.SerializeToString(deterministic=True)


# -- the application's state -------------------------------------------------------


def _decision(raw: bytes | None) -> Any:
    from subsidy.v1 import decision_pb2

    return decision_pb2.Decision.FromString(raw) if raw else None


def replaces(current: bytes | None, new: bytes) -> bool:
    """Does the decision ``new`` replace ``current`` as the application's
    decision? A reviewed decision (review set) supersedes the computed one it
    reviewed and is never replaced by a computed decision, whichever of the
    two arrived first; otherwise the later decision is shown (as before)."""
    if current is None:
        return True
    shown, incoming = _decision(current), _decision(new)
    if incoming.supersedes_decision_id:
        # A re-decision at a policy version's adoption (issue 14) replaces
        # whatever was shown, reviewed or not -- unless what is shown already
        # is its own review.
        return not (shown.HasField("review") and shown.review.supersedes_decision_id == incoming.decision_id)
    if shown.supersedes_decision_id:
        # Only its own review replaces a re-decision: a late computed or
        # reviewed decision of the superseded version does not.
        return incoming.HasField("review") and incoming.review.supersedes_decision_id == shown.decision_id
    return incoming.HasField("review") or not shown.HasField("review")


def state_of(decision: bytes | None, grant: bytes | None) -> str:
    """The application's state (model.STATES) from what intake holds:
    RECEIVED until its decision arrives (a grant folded in before it waits
    for it); then the grant's state when the ledger has one — RESERVED (in
    notice), PAYABLE, WITHDRAWN, or RECORDED for a grant of 0 fen or one
    recorded before grants had states; without a grant, UNDER_REVIEW for a
    decision that requires review, else DECIDED."""
    from subsidy.services.intake import model
    from subsidy.v1 import payout_pb2

    if decision is None:
        return model.RECEIVED
    if grant is not None:
        g = payout_pb2.Grant.FromString(grant)
        if g.state == payout_pb2.GRANT_STATE_PAYABLE:
            return model.PAYABLE
        if g.state == payout_pb2.GRANT_STATE_WITHDRAWN:
            return model.WITHDRAWN
        if g.state == payout_pb2.GRANT_STATE_RESERVED and g.granted_fen > 0:
            return model.RESERVED
        return model.RECORDED
    d = _decision(decision)
    if d.review_required and not d.HasField("review"):
        return model.UNDER_REVIEW
    return model.DECIDED
