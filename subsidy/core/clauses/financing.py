"""第14条: financing through the 上海临松工业互联网创业投资基金, which invests on
its own terms — no money from this policy (REFERRED)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from subsidy.core.clauses._base import AWARD_NONE, ELIGIBLE_KINDS, Clause, Finding, Inputs
from subsidy.core.domain import REFERRED, Application, value


@value
class FinancingClaim:
    KEY: ClassVar[str] = "financing"
    CLAUSE: ClassVar[str] = "14"
    need: str = ""


def rule(finding: Finding, app: Application, params: Mapping[str, Any]) -> None:
    finding.outcome = REFERRED
    finding.basis = "由上海临松工业互联网创业投资基金按其自身规则投资，本政策不直接给予资金，已转介"


CLAUSE = Clause(
    claim=FinancingClaim,
    proto_field_number=25,
    parameters={**ELIGIBLE_KINDS},
    rule=rule,
    inputs=Inputs(award=AWARD_NONE),
)
