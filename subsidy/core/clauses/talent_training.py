"""第13条: industrial-internet training for middle managers and technical staff
— a share set by the district HR bureau's rules, not by this text, so a
reviewer sets the amount (NEEDS_REVIEW)."""

from __future__ import annotations

from typing import ClassVar

from subsidy.core.clauses._base import AWARD_SET_BY_REVIEWER, ELIGIBLE_KINDS, ClaimFields, Clause, Inputs, needs_review
from subsidy.core.domain import value


@value
class TalentTrainingClaim:
    KEY: ClassVar[str] = "talent_training"
    CLAUSE: ClassVar[str] = "13"
    program_id: str = ""
    training_cost_fen: int = 0


CLAUSE = Clause(
    claim=TalentTrainingClaim,
    proto_field_number=24,
    parameters={**ELIGIBLE_KINDS},
    rule=needs_review("补贴比例参照区人社局有关人才政策确定，本政策未规定金额，转人工审核"),
    fields=ClaimFields(identifiers=("program_id",)),
    # The reviewer applies the HR bureau's share to the costs that count.
    inputs=Inputs(award=AWARD_SET_BY_REVIEWER, reviewer_amounts=("training_cost_fen",)),
)
