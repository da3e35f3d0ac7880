"""第3条: a platform rated excellent (优秀平台) — national 100万, municipal 50万,
once per platform and level."""

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

Level = Literal["national", "municipal"]


@value
class BenchmarkPlatformClaim:
    KEY: ClassVar[str] = "benchmark_platform"
    CLAUSE: ClassVar[str] = "3"
    platform_id: str = ""
    level: Level | None = None


def rule(finding: Finding, app: Application, params: Mapping[str, Any]) -> None:
    claim = claim_of(app, BenchmarkPlatformClaim)
    amount = params["award_by_level_fen"].get(claim.level)
    if amount is None:
        finding.refuse("LEVEL_NOT_ELIGIBLE", f"{LEVEL_NAMES.get(claim.level, claim.level)}优秀平台不在奖励范围内")
        return
    finding.award(amount, f"获评{LEVEL_NAMES[claim.level]}工业互联网优秀平台，奖励{yuan(amount)}")


CLAUSE = Clause(
    claim=BenchmarkPlatformClaim,
    proto_field_number=13,
    parameters={**ELIGIBLE_KINDS, "award_by_level_fen": "fen_table", **SCHEDULE},
    rule=rule,
    fields=ClaimFields(required=("level",), identifiers=("platform_id",)),
    # The rating is published by the body that awards it.
    inputs=Inputs(data_platform=("platform_id", "level")),
)
