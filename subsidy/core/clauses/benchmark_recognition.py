"""第7条: a firm recognised as a benchmark (标杆) or a scenario — 50万 / 30万 /
20万 / 20万 by recognition, once per recognition."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from subsidy.core.clauses._base import ELIGIBLE_KINDS, SCHEDULE, ClaimFields, Clause, Finding, Inputs, claim_of
from subsidy.core.domain import Application, value
from subsidy.core.money import yuan

Recognition = Literal[
    "national_excellent_scenario",
    "municipal_benchmark_enterprise",
    "municipal_demo_scenario",
    "municipal_smart_workshop",
]
# Keyed by the claim's recognition, which may be unset (as LEVEL_NAMES).
RECOGNITION_NAMES: dict[str | None, str] = {
    "national_excellent_scenario": "国家级优秀场景",
    "municipal_benchmark_enterprise": "市级工业互联网标杆企业",
    "municipal_demo_scenario": "市级工业互联网示范应用场景",
    "municipal_smart_workshop": "市级智能制造车间",
}


@value
class BenchmarkRecognitionClaim:
    KEY: ClassVar[str] = "benchmark_recognition"
    CLAUSE: ClassVar[str] = "7"
    recognition_id: str = ""
    recognition: Recognition | None = None


def rule(finding: Finding, app: Application, params: Mapping[str, Any]) -> None:
    claim = claim_of(app, BenchmarkRecognitionClaim)
    amount = params["award_by_recognition_fen"].get(claim.recognition)
    name = RECOGNITION_NAMES.get(claim.recognition, claim.recognition)
    if amount is None:
        finding.refuse("RECOGNITION_NOT_ELIGIBLE", f"“{name}”不在奖励范围内")
        return
    finding.award(amount, f"获评{name}，奖励{yuan(amount)}")


CLAUSE = Clause(
    claim=BenchmarkRecognitionClaim,
    proto_field_number=16,
    parameters={**ELIGIBLE_KINDS, "award_by_recognition_fen": "fen_table", **SCHEDULE},
    rule=rule,
    fields=ClaimFields(required=("recognition",), identifiers=("recognition_id",)),
    inputs=Inputs(data_platform=("recognition_id", "recognition")),
)
