"""The payout core: what a decision is worth given the firm's history.

Pure rules over a ``LedgerView`` (what the ledger already holds), returning a
``GrantPlan`` (what to write). The payout service runs ``plan_grant`` and the
writes of its plan inside one database transaction, holding the firm's rows
locked; ``InMemoryLedger`` is the same contract in memory, for the calculator
and the tests.

Rules (the policy team's interpretation.md, "Per-firm caps and idempotency";
docs/policy-data.md):
- an application id already applied is a duplicate: nothing more is granted;
- a cumulative cap limits the sum of grants in its scope, across
  applications and years; a claim beyond what is left gets what is left;
- a one-time award is granted once per scope; later claims get 0;
- caps and one-time awards are kept per firm (credit code) and scope;
- the grant is split by the decision's schedule, floor for every tranche but
  the last, which takes the remainder; tranche k is due in decision year + k.

The plan's tranches are what ``subsidy simulate`` prints. The payout service
holds the grant RESERVED (its cap use counts at once) and writes these
tranches only when its public notice closes clean; the day each is due then
is payout's rule (ADR 0013, ``docs/adr/0013-grant-states-and-the-notice-gate.md``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from subsidy.core.domain import ELIGIBLE, Decision, LimitKind, Reason, value
from subsidy.core.money import split, yuan


class LedgerView(Protocol):
    def is_applied(self, application_id: str) -> bool:
        """Has this application id been applied before (whatever its outcome)?"""

    def used_fen(self, credit_code: str, scope: str) -> int:
        """Sum granted so far to this firm in this scope."""


@value
class Tranche:
    tranche_id: str  # derived: application id + tranche number
    number: int  # 0-based
    year: int  # budget year in which it is due
    amount_fen: int


@value
class ScopeUse:
    scope: str
    granted_fen: int
    limit: str
    cap_fen: int


@value
class GrantPlan:
    application_id: str
    decision_id: str
    credit_code: str
    clause: str
    outcome: str
    max_award_fen: int
    duplicate: bool
    granted_fen: int
    tranches: tuple[Tranche, ...]
    uses: tuple[ScopeUse, ...]
    reasons: tuple[Reason, ...]


def tranche_id(application_id: str, number: int) -> str:
    return f"{application_id}/tranche-{number}"


def plan_grant(decision: Decision, ledger: LedgerView) -> GrantPlan:
    """What the ledger grants for one decision, given what it already holds."""
    if ledger.is_applied(decision.application_id):
        reason = Reason(
            "DUPLICATE_APPLICATION",
            decision.clause.split(".")[0],
            f"申请编号{decision.application_id}已受理，重复申请不再给予补贴",
        )
        return _plan(decision, True, 0, (), (), (reason,))
    if decision.outcome != ELIGIBLE:
        return _plan(decision, False, 0, (), (), ())

    item = decision.clause.split(".")[0]
    uses: list[ScopeUse] = []
    reasons: list[Reason] = []
    granted_total = 0
    for line in decision.entitlements:
        used = ledger.used_fen(decision.credit_code, line.scope)
        if line.limit == LimitKind.ONCE:
            granted = 0 if used > 0 else line.amount_fen
            if granted == 0:
                reasons.append(
                    Reason(
                        "ALREADY_AWARDED",
                        item,
                        f"第{item}条一次性奖励（{line.scope}）已发放过{yuan(used)}，不再重复给予",
                    )
                )
        else:
            remaining = max(0, line.cap_fen - used)
            granted = min(line.amount_fen, remaining)
            if granted == 0:
                reasons.append(
                    Reason("CAP_EXHAUSTED", item, f"第{item}条累计上限{yuan(line.cap_fen)}（{line.scope}）已用完")
                )
            elif granted < line.amount_fen:
                reasons.append(
                    Reason(
                        "CAP_PARTIAL",
                        item,
                        f"第{item}条累计上限{yuan(line.cap_fen)}（{line.scope}）已用{yuan(used)}，本次给予剩余额度{yuan(granted)}",
                    )
                )
        if granted:
            uses.append(ScopeUse(line.scope, granted, line.limit, line.cap_fen))
            granted_total += granted

    tranches = schedule(decision.application_id, granted_total, decision.decision_year, decision.tranche_shares_percent)
    return _plan(decision, False, granted_total, tranches, tuple(uses), tuple(reasons))


def _plan(
    decision: Decision,
    duplicate: bool,
    granted_fen: int,
    tranches: tuple[Tranche, ...],
    uses: tuple[ScopeUse, ...],
    reasons: tuple[Reason, ...],
) -> GrantPlan:
    return GrantPlan(
        application_id=decision.application_id,
        decision_id=decision.decision_id,
        credit_code=decision.credit_code,
        clause=decision.clause,
        outcome=decision.outcome,
        max_award_fen=decision.max_award_fen,
        duplicate=duplicate,
        granted_fen=granted_fen,
        tranches=tranches,
        uses=uses,
        reasons=reasons,
    )


def schedule(
    application_id: str, granted_fen: int, decision_year: int, shares_percent: Iterable[int]
) -> tuple[Tranche, ...]:
    """Tranches of a grant; a tranche that would round to 0 fen is left out,
    since finance pays no zero amounts (the others still add up exactly)."""
    if granted_fen == 0:
        return ()
    amounts = split(granted_fen, tuple(shares_percent))
    return tuple(
        [
            Tranche(tranche_id(application_id, k), k, decision_year + k, amount)
            for k, amount in enumerate(amounts)
            if amount
        ]
    )


class InMemoryLedger:
    """The ledger in memory: for the calculator, and as a fake in tests."""

    def __init__(self) -> None:
        self.applied: dict[str, GrantPlan] = {}
        self.usage: dict[tuple[str, str], int] = {}

    def is_applied(self, application_id: str) -> bool:
        return application_id in self.applied

    def used_fen(self, credit_code: str, scope: str) -> int:
        return self.usage.get((credit_code, scope), 0)

    def record(self, plan: GrantPlan) -> None:
        if plan.duplicate:
            return
        self.applied[plan.application_id] = plan
        for use in plan.uses:
            key = (plan.credit_code, use.scope)
            self.usage[key] = self.usage.get(key, 0) + use.granted_fen

    def apply(self, decision: Decision) -> GrantPlan:
        plan = plan_grant(decision, self)
        self.record(plan)
        return plan
