"""第12条: an innovation carrier (创新中心, 实训基地, 重点实验室, 联合实验室)
recognised at municipal level or above — a one-time 100万 start-up subsidy per
carrier."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from subsidy.core.clauses._base import (
    ELIGIBLE_KINDS,
    LEVEL_NAMES,
    SCHEDULE,
    ClaimFields,
    Clause,
    Finding,
    Inputs,
    claim_of,
)
from subsidy.core.domain import Application, value
from subsidy.core.money import yuan

CarrierType = Literal["innovation_center", "training_base", "key_lab", "joint_lab"]
CarrierLevel = Literal["national", "municipal", "district"]
# Keyed by the claim's carrier type, which may be unset (as LEVEL_NAMES).
CARRIER_NAMES: dict[str | None, str] = {
    "innovation_center": "创新中心",
    "training_base": "人才实训基地",
    "key_lab": "重点实验室",
    "joint_lab": "联合实验室",
}


@value
class InnovationCarrierClaim:
    KEY: ClassVar[str] = "innovation_carrier"
    CLAUSE: ClassVar[str] = "12"
    carrier_id: str = ""
    carrier_type: CarrierType | None = None
    level: CarrierLevel | None = None


def rule(finding: Finding, app: Application, params: Mapping[str, Any]) -> None:
    claim = claim_of(app, InnovationCarrierClaim)
    if claim.level not in params["levels"]:
        finding.refuse(
            "LEVEL_NOT_ELIGIBLE", f"{LEVEL_NAMES.get(claim.level, claim.level)}认定不在补贴范围内（须市级以上）"
        )
    if claim.carrier_type not in params["carrier_types"]:
        finding.refuse("CARRIER_TYPE_NOT_ELIGIBLE", f"载体类型“{claim.carrier_type}”不在补贴范围内")
    if not finding.against:
        amount = params["award_fen"]
        finding.award(
            amount,
            f"经认定为{LEVEL_NAMES[claim.level]}{CARRIER_NAMES.get(claim.carrier_type, claim.carrier_type)}，一次性开办费补贴{yuan(amount)}",
        )


CLAUSE = Clause(
    claim=InnovationCarrierClaim,
    proto_field_number=23,
    parameters={**ELIGIBLE_KINDS, "levels": "text_list", "carrier_types": "text_list", "award_fen": "fen", **SCHEDULE},
    rule=rule,
    fields=ClaimFields(required=("carrier_type", "level"), identifiers=("carrier_id",)),
    inputs=Inputs(data_platform=("carrier_id", "carrier_type", "level")),
)
