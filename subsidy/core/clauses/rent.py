"""第1条 (租赁): rent of production and office premises by a newly introduced
key platform or solution provider — 50% of the rent counted within three
years of introduction, cumulative cap 500万 per firm."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, ClassVar

from subsidy.core.clauses._base import (
    ELIGIBLE_KINDS,
    SCHEDULE,
    ClaimFields,
    Clause,
    Finding,
    Inputs,
    add_years,
    capped,
    claim_of,
    newly_introduced,
)
from subsidy.core.domain import Application, value
from subsidy.core.money import pro_rata, yuan


@value
class RentClaim:
    KEY: ClassVar[str] = "rent"
    CLAUSE: ClassVar[str] = "1.rent"
    recognized_key_platform: bool = False
    lease_start: dt.date | None = None
    lease_end: dt.date | None = None
    rent_paid_fen: int = 0


def rule(finding: Finding, app: Application, params: Mapping[str, Any]) -> None:
    claim = claim_of(app, RentClaim)
    if not claim.recognized_key_platform:
        finding.refuse("NOT_RECOGNIZED_KEY_PLATFORM", "未经认定为符合工业互联网产业导向的重点平台或服务商")
    introduced = newly_introduced(finding, app)
    if introduced is None:
        return
    start, end = claim.lease_start, claim.lease_end
    if start is None or end is None:  # never: the codec requires both (fields.required below)
        raise TypeError(f"a rent claim needs lease_start and lease_end, got {start!r} and {end!r}")
    if end < start:
        finding.refuse("LEASE_PERIOD_INVALID", f"租期结束日{end}早于开始日{start}")
        return
    years = params["window_years"]
    window_end = add_years(introduced, years)  # first day no longer counted
    counted_from = max(start, introduced)
    counted_to = min(end, window_end - dt.timedelta(days=1))
    all_days = (end - start).days + 1
    counted_days = max(0, (counted_to - counted_from).days + 1)
    if counted_days == 0:
        finding.refuse(
            "NO_RENT_IN_WINDOW",
            f"租期{start}至{end}不在引进之日{introduced}起{years}年内（至{window_end - dt.timedelta(days=1)}）",
        )
        return
    if claim.rent_paid_fen == 0:
        finding.refuse("ZERO_AMOUNT", "租金为0")
        return
    counted_rent = pro_rata(claim.rent_paid_fen, counted_days, all_days)
    capped(
        finding,
        counted_rent,
        params,
        f"租期{all_days}天中{counted_days}天在引进后{years}年内，计补租金{yuan(claim.rent_paid_fen)}×{counted_days}/{all_days}=",
    )


CLAUSE = Clause(
    claim=RentClaim,
    proto_field_number=10,
    parameters={**ELIGIBLE_KINDS, "rate_percent": "percent", "cap_fen": "fen", "window_years": "years", **SCHEDULE},
    rule=rule,
    fields=ClaimFields(required=("lease_start", "lease_end")),
    # 经认定: the recognition is the district's record, not the firm's word.
    inputs=Inputs(data_platform=("recognized_key_platform",)),
)
