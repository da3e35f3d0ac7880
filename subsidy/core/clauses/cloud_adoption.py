"""第10条 (上云): cloud application services bought from a provider in that
year's 名录 — the spend itself, cumulative cap 5万 per firm."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from subsidy.core.clauses._base import ELIGIBLE_KINDS, SCHEDULE, ClaimFields, Clause, Finding, Inputs, claim_of
from subsidy.core.domain import Application, value
from subsidy.core.money import yuan


@value
class CloudAdoptionClaim:
    KEY: ClassVar[str] = "cloud_adoption"
    CLAUSE: ClassVar[str] = "10.cloud"
    provider_credit_code: str = ""
    provider_listed_in_directory: bool = False
    service_year: int = 0
    spend_fen: int = 0


def rule(finding: Finding, app: Application, params: Mapping[str, Any]) -> None:
    claim = claim_of(app, CloudAdoptionClaim)
    if not claim.provider_listed_in_directory:
        finding.refuse("PROVIDER_NOT_IN_DIRECTORY", f"服务商未列入{claim.service_year or ''}年度《名录》")
    if claim.spend_fen == 0:
        finding.refuse("ZERO_AMOUNT", "上云支出为0")
    if not finding.against:
        cap = params["cap_fen"]
        amount = min(claim.spend_fen, cap)
        finding.award(
            amount, f"使用《名录》内云平台应用服务支出{yuan(claim.spend_fen)}，补贴{yuan(amount)}（上限{yuan(cap)}）"
        )


CLAUSE = Clause(
    claim=CloudAdoptionClaim,
    proto_field_number=19,
    parameters={**ELIGIBLE_KINDS, "cap_fen": "fen", **SCHEDULE},
    rule=rule,
    fields=ClaimFields(int32=("service_year",), credit_codes=("provider_credit_code",)),
    # Intake sets the listing from the 名录 of the service year, never from
    # the applicant (subsidy/services/intake/handlers.py).
    inputs=Inputs(data_platform=("provider_listed_in_directory",)),
)
