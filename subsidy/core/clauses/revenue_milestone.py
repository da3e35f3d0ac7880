"""第4条: revenue first exceeding 5亿 / 10亿 / 20亿 — one-time awards of 50万 /
100万 / 200万, each threshold once per firm."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from typing import Any, ClassVar

from subsidy.core.clauses._base import ELIGIBLE_KINDS, SCHEDULE, ClaimFields, Clause, Finding, Inputs, claim_of
from subsidy.core.domain import Application, value
from subsidy.core.money import yuan


@value
class RevenueMilestoneClaim:
    KEY: ClassVar[str] = "revenue_milestone"
    CLAUSE: ClassVar[str] = "4"
    year: int = 0
    revenue_by_year_fen: Mapping[int, int] = field(default_factory=dict)


def rule(finding: Finding, app: Application, params: Mapping[str, Any]) -> None:
    claim = claim_of(app, RevenueMilestoneClaim)
    revenue = claim.revenue_by_year_fen.get(claim.year, 0)
    earlier_best = max((v for y, v in claim.revenue_by_year_fen.items() if y < claim.year), default=0)
    crossed = []
    for threshold_text, award in sorted(params["award_by_threshold_fen"].items(), key=lambda kv: int(kv[0])):
        threshold = int(threshold_text)
        if revenue > threshold and earlier_best <= threshold:
            crossed.append(threshold)
            finding.lines.append(({"threshold": threshold}, award))
    if not crossed:
        finding.refuse(
            "NO_THRESHOLD_FIRST_CROSSED",
            f"{claim.year}年营业收入{yuan(revenue)}未首次突破5亿、10亿或20亿元",
        )
        return
    parts = "、".join(yuan(t) for t in crossed)
    total = sum(amount for _, amount in finding.lines)
    finding.basis = f"{claim.year}年营业收入{yuan(revenue)}首次突破{parts}，奖励合计{yuan(total)}"


CLAUSE = Clause(
    claim=RevenueMilestoneClaim,
    proto_field_number=14,
    parameters={**ELIGIBLE_KINDS, "award_by_threshold_fen": "fen_table", **SCHEDULE},
    rule=rule,
    fields=ClaimFields(int32=("year",)),
    # Revenue by year is in the tax data.
    inputs=Inputs(data_platform=("year", "revenue_by_year_fen")),
    # Each threshold crossed is its own one-time scope (ledger.scope_by: [threshold]).
    scope_parts=("threshold",),
)
