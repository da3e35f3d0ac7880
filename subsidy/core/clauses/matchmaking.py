"""第15条: supply-demand matchmaking by an industry association — subsidy or
procurement of services, amount not set by the text, so a reviewer sets it
(NEEDS_REVIEW)."""

from __future__ import annotations

from typing import ClassVar

from subsidy.core.clauses._base import AWARD_SET_BY_REVIEWER, ELIGIBLE_KINDS, ClaimFields, Clause, Inputs, needs_review
from subsidy.core.domain import value


@value
class MatchmakingClaim:
    KEY: ClassVar[str] = "matchmaking"
    CLAUSE: ClassVar[str] = "15"
    event_id: str = ""
    cost_fen: int = 0


CLAUSE = Clause(
    claim=MatchmakingClaim,
    proto_field_number=26,
    parameters={**ELIGIBLE_KINDS},
    rule=needs_review("资助补贴或政府购买服务的金额本政策未规定，转人工审核"),
    fields=ClaimFields(identifiers=("event_id",)),
    inputs=Inputs(award=AWARD_SET_BY_REVIEWER, reviewer_amounts=("cost_fen",)),
)
