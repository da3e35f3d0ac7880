"""How payout events change what intake shows of an application's grant.

Pure: ``fold(grant, event)`` returns the grant after one subsidy.v1.PayoutEvent.
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
        tranches = [t.SerializeToString() for t in grant.tranches]
        grant.Clear()
        grant.application_id = g.application_id
        grant.decision_id = g.decision_id
        grant.clause = g.clause
        grant.max_award_fen = g.max_award_fen
        grant.granted_fen = g.granted_fen
        grant.decision_year = g.decision_year
        grant.reasons.extend(g.reasons)
        for raw in tranches:
            grant.tranches.add().ParseFromString(raw)
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
    raise NotAPayoutEvent(f"unknown payout event {kind!r}")


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
    ordered = sorted(folded.tranches, key=lambda t: t.number)
    del folded.tranches[:]
    folded.tranches.extend(ordered)
    return folded.SerializeToString(deterministic=True)
