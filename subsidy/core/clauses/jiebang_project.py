"""第6条: a traditional firm's project selected under 揭榜挂帅 — 30% of the total
project investment, cumulative cap 300万 per project."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from subsidy.core.clauses._base import ELIGIBLE_KINDS, SCHEDULE, ClaimFields, Clause, Finding, Inputs, capped, claim_of
from subsidy.core.domain import Application, value


@value
class JiebangProjectClaim:
    KEY: ClassVar[str] = "jiebang_project"
    CLAUSE: ClassVar[str] = "6"
    project_id: str = ""
    jiebang_selected: bool = False
    total_investment_fen: int = 0


def rule(finding: Finding, app: Application, params: Mapping[str, Any]) -> None:
    claim = claim_of(app, JiebangProjectClaim)
    if not claim.jiebang_selected:
        finding.refuse("NOT_JIEBANG_SELECTED", "项目未入选“揭榜挂帅”")
    if claim.total_investment_fen == 0:
        finding.refuse("ZERO_AMOUNT", "项目总投资为0")
    if not finding.against:
        capped(finding, claim.total_investment_fen, params, "项目总投资")


CLAUSE = Clause(
    claim=JiebangProjectClaim,
    proto_field_number=15,
    parameters={**ELIGIBLE_KINDS, "rate_percent": "percent", "cap_fen": "fen", **SCHEDULE},
    rule=rule,
    fields=ClaimFields(identifiers=("project_id",)),
    # The selection list is the district's.
    inputs=Inputs(data_platform=("project_id", "jiebang_selected")),
)
