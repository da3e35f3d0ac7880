"""第10条 (园区): a park rated a municipal 工业互联网标杆园区 — 50万, once per park."""

from __future__ import annotations

from typing import ClassVar

from subsidy.core.clauses._base import ELIGIBLE_KINDS, SCHEDULE, ClaimFields, Clause, Inputs, flagged_award
from subsidy.core.domain import value


@value
class BenchmarkParkClaim:
    KEY: ClassVar[str] = "benchmark_park"
    CLAUSE: ClassVar[str] = "10.park"
    park_id: str = ""
    recognized_municipal_benchmark_park: bool = False


CLAUSE = Clause(
    claim=BenchmarkParkClaim,
    proto_field_number=20,
    parameters={**ELIGIBLE_KINDS, "award_fen": "fen", **SCHEDULE},
    rule=flagged_award(
        "recognized_municipal_benchmark_park",
        "NOT_RECOGNIZED_BENCHMARK_PARK",
        "园区未获评市级工业互联网标杆园区",
        "园区获评市级工业互联网标杆园区",
    ),
    fields=ClaimFields(identifiers=("park_id",)),
    inputs=Inputs(data_platform=("park_id", "recognized_municipal_benchmark_park")),
)
