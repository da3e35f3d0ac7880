"""Cap reconciliation (issue 16): recompute every firm's cap usage from the
ledger's grant rows and compare it with ``payout_usage``, the running totals
the ledger checks caps against.

What a grant holds of a scope is its ``uses`` (written with the grant, in
the same transaction as the usage it adds). A WITHDRAWN grant holds
nothing (its uses were released); a void award holds its uses less the cap
room its recovered money freed (``cap_released_fen``, taken per scope in the
order of its uses: subsidy.core.release.cap_release, the same function the
ledger frees it with). So, per firm and scope::

    recomputed = sum(uses of ELIGIBLE, not WITHDRAWN grants) - freed

A mismatch is a (firm, scope) whose recorded ``used_fen`` differs from the
recomputed one, or a cumulative cap whose recorded use is above its cap.
Both must stay 0: ``subsidy_payout_cap_mismatches``.

Grants written before migration 0003 have no ``uses`` (NULL): their firm's
usage cannot be recomputed, so the firm is counted ``unverifiable`` instead
of reported as a mismatch it is not.

Pure: ``reconcile`` takes rows, returns the result. The query is
adapters/ledger_gauges.py; the service runs it every
``SUBSIDY_PAYOUT_RECONCILE_INTERVAL_SECONDS``, the CronJob once
(``python -m subsidy.services.payout reconcile``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable

from subsidy.core import release

ELIGIBLE = "ELIGIBLE"
WITHDRAWN = "WITHDRAWN"
CUMULATIVE_CAP = "cumulative_cap"


@dataclasses.dataclass(frozen=True)
class GrantUses:
    """What one grant row says about its cap use."""

    credit_code: str
    outcome: str
    state: str | None
    uses: str | None  # the column: JSON [[scope, fen], ...] or NULL (before 0003)
    cap_released_fen: int


@dataclasses.dataclass(frozen=True)
class UsageRecord:
    """One row of payout_usage."""

    credit_code: str
    scope: str
    limit_kind: str
    cap_fen: int
    used_fen: int


@dataclasses.dataclass(frozen=True)
class Mismatch:
    credit_code: str
    scope: str
    kind: str  # "usage" (recorded != recomputed) or "over_cap" (recorded above a cumulative cap)
    recorded_fen: int
    recomputed_fen: int
    cap_fen: int

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Reconciliation:
    firms: int
    scopes: int
    mismatches: tuple[Mismatch, ...]
    unverifiable_firms: tuple[str, ...]

    def count(self, kind: str) -> int:
        return sum(1 for m in self.mismatches if m.kind == kind)


def held_by(grant: GrantUses) -> dict[str, int] | None:
    """Fen per scope the grant still holds; None when it cannot be told (no uses column)."""
    if grant.outcome != ELIGIBLE:
        return {}
    if grant.uses is None:
        return None
    uses = [(str(scope), int(fen)) for scope, fen in json.loads(grant.uses)]
    if grant.state == WITHDRAWN:
        return {}
    held: dict[str, int] = {}
    for scope, fen in uses:
        held[scope] = held.get(scope, 0) + fen
    for scope, fen in release.cap_release(grant.cap_released_fen, True, uses, 0):
        held[scope] -= fen
    return held


def reconcile(grants: Iterable[GrantUses], usage: Iterable[UsageRecord]) -> Reconciliation:
    """Compare the recorded usage with what the grants hold (see the module)."""
    recomputed: dict[tuple[str, str], int] = {}
    unverifiable: set[str] = set()
    for grant in grants:
        held = held_by(grant)
        if held is None:
            unverifiable.add(grant.credit_code)
            continue
        for scope, fen in held.items():
            key = (grant.credit_code, scope)
            recomputed[key] = recomputed.get(key, 0) + fen
    recorded = {(u.credit_code, u.scope): u for u in usage}
    mismatches: list[Mismatch] = []
    for key in sorted(set(recorded) | set(recomputed)):
        firm, scope = key
        row = recorded.get(key)
        used = row.used_fen if row else 0
        cap = row.cap_fen if row else 0
        if firm in unverifiable:
            continue
        expected = recomputed.get(key, 0)
        if used != expected:
            mismatches.append(Mismatch(firm, scope, "usage", used, expected, cap))
        if row is not None and row.limit_kind == CUMULATIVE_CAP and used > row.cap_fen:
            mismatches.append(Mismatch(firm, scope, "over_cap", used, expected, cap))
    firms = {firm for firm, _ in recorded} | {firm for firm, _ in recomputed} | unverifiable
    return Reconciliation(
        firms=len(firms),
        scopes=len(set(recorded) | set(recomputed)),
        mismatches=tuple(mismatches),
        unverifiable_firms=tuple(sorted(unverifiable)),
    )
