"""第2条: a sector industrial-internet platform — 30% of the investment
excluding infrastructure (基建), which must exceed 300万; cumulative cap 500万
per platform."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from subsidy.core.clauses._base import ELIGIBLE_KINDS, SCHEDULE, ClaimFields, Clause, Finding, capped, claim_of
from subsidy.core.domain import Application, value
from subsidy.core.money import yuan


@value
class IndustryPlatformClaim:
    KEY: ClassVar[str] = "industry_platform"
    CLAUSE: ClassVar[str] = "2"
    platform_id: str = ""
    sector: str = ""
    investment_fen: int = 0
    infrastructure_investment_fen: int = 0


def rule(finding: Finding, app: Application, params: Mapping[str, Any]) -> None:
    claim = claim_of(app, IndustryPlatformClaim)
    base = max(0, claim.investment_fen - claim.infrastructure_investment_fen)
    threshold = params["threshold_fen"]
    if base <= threshold:
        finding.refuse(
            "BELOW_THRESHOLD",
            f"不含基建的投资额{yuan(base)}未超过{yuan(threshold)}",
        )
        return
    capped(finding, base, params, "不含基建投资额")


CLAUSE = Clause(
    claim=IndustryPlatformClaim,
    proto_field_number=12,
    parameters={**ELIGIBLE_KINDS, "threshold_fen": "fen", "rate_percent": "percent", "cap_fen": "fen", **SCHEDULE},
    rule=rule,
    fields=ClaimFields(identifiers=("platform_id",)),
)
