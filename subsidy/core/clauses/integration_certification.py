"""第8条: 两化融合管理体系 certification, version 2.0 at grade AA or above — a
one-time award of 20万 per firm."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from subsidy.core.clauses._base import ELIGIBLE_KINDS, SCHEDULE, ClaimFields, Clause, Finding, Inputs, claim_of
from subsidy.core.domain import Application, value
from subsidy.core.money import yuan

Grade = Literal["A", "AA", "AAA", "AAAA", "AAAAA"]


@value
class IntegrationCertificationClaim:
    KEY: ClassVar[str] = "integration_certification"
    CLAUSE: ClassVar[str] = "8"
    certificate_id: str = ""
    version: str = ""
    grade: Grade | None = None


def rule(finding: Finding, app: Application, params: Mapping[str, Any]) -> None:
    claim = claim_of(app, IntegrationCertificationClaim)
    if claim.version not in params["versions"]:
        finding.refuse(
            "CERTIFICATION_VERSION", f"两化融合管理体系认证版本为“{claim.version}”，须为{'、'.join(params['versions'])}"
        )
    if claim.grade not in params["grades"]:
        finding.refuse("CERTIFICATION_GRADE", f"认证级别{claim.grade}未达到AA级以上")
    if not finding.against:
        amount = params["award_fen"]
        finding.award(amount, f"通过两化融合管理体系{claim.version}贯标认证{claim.grade}级，一次性奖励{yuan(amount)}")


CLAUSE = Clause(
    claim=IntegrationCertificationClaim,
    proto_field_number=17,
    parameters={**ELIGIBLE_KINDS, "versions": "text_list", "grades": "text_list", "award_fen": "fen", **SCHEDULE},
    rule=rule,
    fields=ClaimFields(required=("grade",), identifiers=("certificate_id",)),
    # The certification body's register.
    inputs=Inputs(data_platform=("certificate_id", "version", "grade")),
)
