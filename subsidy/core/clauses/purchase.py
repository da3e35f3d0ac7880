"""第1条 (购置): purchase of premises for own use by a newly introduced key
platform or solution provider — 30% of the price, cumulative cap 1000万 per
firm, paid over three years (40%, 30%, 30%)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, ClassVar

from subsidy.core.clauses._base import (
    ELIGIBLE_KINDS,
    SCHEDULE,
    Clause,
    Finding,
    Inputs,
    capped,
    claim_of,
    newly_introduced,
)
from subsidy.core.domain import Application, value


@value
class PurchaseClaim:
    KEY: ClassVar[str] = "purchase"
    CLAUSE: ClassVar[str] = "1.purchase"
    recognized_key_platform: bool = False
    for_own_use: bool = False
    purchase_date: dt.date | None = None
    purchase_price_fen: int = 0


def rule(finding: Finding, app: Application, params: Mapping[str, Any]) -> None:
    claim = claim_of(app, PurchaseClaim)
    if not claim.recognized_key_platform:
        finding.refuse("NOT_RECOGNIZED_KEY_PLATFORM", "未经认定为符合工业互联网产业导向的重点平台或服务商")
    newly_introduced(finding, app)
    if not claim.for_own_use:
        finding.refuse("NOT_FOR_OWN_USE", "所购房产不是自用生产办公用房")
    if claim.purchase_price_fen == 0:
        finding.refuse("ZERO_AMOUNT", "购房金额为0")
    if not finding.against:
        capped(finding, claim.purchase_price_fen, params, "购房金额")


CLAUSE = Clause(
    claim=PurchaseClaim,
    proto_field_number=11,
    parameters={**ELIGIBLE_KINDS, "rate_percent": "percent", "cap_fen": "fen", **SCHEDULE},
    rule=rule,
    inputs=Inputs(data_platform=("recognized_key_platform",)),
)
