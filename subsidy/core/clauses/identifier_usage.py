"""第11条 (标识应用): identifier registrations over 100万 and monthly average
resolutions over 10万 — 10万, once per firm."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from subsidy.core.clauses._base import ELIGIBLE_KINDS, SCHEDULE, Clause, Finding, Inputs, claim_of
from subsidy.core.domain import Application, value
from subsidy.core.money import yuan


@value
class IdentifierUsageClaim:
    KEY: ClassVar[str] = "identifier_usage"
    CLAUSE: ClassVar[str] = "11.identifiers"
    identifier_registrations: int = 0
    monthly_avg_resolutions: int = 0


def rule(finding: Finding, app: Application, params: Mapping[str, Any]) -> None:
    claim = claim_of(app, IdentifierUsageClaim)
    registrations, resolutions = params["registrations_threshold"], params["monthly_resolutions_threshold"]
    if claim.identifier_registrations <= registrations:
        finding.refuse("BELOW_THRESHOLD", f"标识注册量{claim.identifier_registrations}条未超过{registrations}条")
    if claim.monthly_avg_resolutions <= resolutions:
        finding.refuse("BELOW_THRESHOLD", f"月均解析量{claim.monthly_avg_resolutions}次未超过{resolutions}次")
    if not finding.against:
        amount = params["award_fen"]
        finding.award(amount, f"标识注册量超{registrations}条且月均解析量超{resolutions}次，奖励{yuan(amount)}")


CLAUSE = Clause(
    claim=IdentifierUsageClaim,
    proto_field_number=22,
    parameters={
        **ELIGIBLE_KINDS,
        "registrations_threshold": "count",
        "monthly_resolutions_threshold": "count",
        "award_fen": "fen",
        **SCHEDULE,
    },
    rule=rule,
    # Counted by the identifier-resolution system itself.
    inputs=Inputs(data_platform=("identifier_registrations", "monthly_avg_resolutions")),
)
