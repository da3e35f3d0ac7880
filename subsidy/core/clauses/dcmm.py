"""第9条: DCMM (data management capability maturity) assessment — 15万 / 20万 /
25万 for levels 2 / 3 / 4, once per firm and level."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from subsidy.core.clauses._base import ELIGIBLE_KINDS, SCHEDULE, ClaimFields, Clause, Finding, Inputs, claim_of
from subsidy.core.domain import Application, value
from subsidy.core.money import yuan

DcmmLevel = Literal[1, 2, 3, 4, 5]


@value
class DcmmClaim:
    KEY: ClassVar[str] = "dcmm"
    CLAUSE: ClassVar[str] = "9"
    certificate_id: str = ""
    level: DcmmLevel | None = None


def rule(finding: Finding, app: Application, params: Mapping[str, Any]) -> None:
    claim = claim_of(app, DcmmClaim)
    amount = params["award_by_level_fen"].get(str(claim.level))
    if amount is None:
        listed = "、".join(f"{k}级" for k in params["award_by_level_fen"])
        finding.refuse("DCMM_LEVEL_NOT_ELIGIBLE", f"DCMM {claim.level}级不在奖励范围内（限{listed}）")
        return
    finding.award(amount, f"通过DCMM {claim.level}级评估，奖励{yuan(amount)}")


CLAUSE = Clause(
    claim=DcmmClaim,
    proto_field_number=18,
    parameters={**ELIGIBLE_KINDS, "award_by_level_fen": "fen_table", **SCHEDULE},
    rule=rule,
    fields=ClaimFields(required=("level",), identifiers=("certificate_id",)),
    inputs=Inputs(data_platform=("certificate_id", "level")),
)
