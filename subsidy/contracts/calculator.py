"""The calculator's use cases, without Kafka: evaluate one application, or
simulate a sequence through eligibility and the payout ledger exactly as the
running services do. Inputs are the contract's JSON objects; outputs are the
contract's JSON objects (docs/contract.md)."""

from __future__ import annotations

from typing import Any

from subsidy.contracts.codec import decision_to_json, parse_application, reason_to_json
from subsidy.core.domain import Decision
from subsidy.core.eligibility import evaluate
from subsidy.core.ledger import GrantPlan, InMemoryLedger
from subsidy.core.policy import Policy


def evaluate_application(obj: Any, policy: Policy) -> dict[str, Any]:
    """One decision, clause rules only (no history), as its protobuf JSON."""
    return decision_to_json(evaluate(parse_application(obj), policy))


class Simulation:
    """Applications in order through eligibility and one in-memory ledger."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self.ledger = InMemoryLedger()
        self.by_year_fen: dict[int, int] = {}

    def decide(self, obj: Any) -> Decision:
        """Validate and evaluate; raises BadInput and changes nothing if bad."""
        return evaluate(parse_application(obj), self.policy)

    def apply(self, decision: Decision) -> dict[str, Any]:
        plan = self.ledger.apply(decision)
        for tranche in plan.tranches:
            self.by_year_fen[tranche.year] = self.by_year_fen.get(tranche.year, 0) + tranche.amount_fen
        return simulation_line(decision, plan)

    def summary(self) -> dict[str, Any]:
        return {
            "summary": {
                "by_year_fen": {str(year): self.by_year_fen[year] for year in sorted(self.by_year_fen)},
                "total_fen": sum(self.by_year_fen.values()),
            }
        }


def simulation_line(decision: Decision, plan: GrantPlan) -> dict[str, Any]:
    line: dict[str, Any] = {
        "application_id": decision.application_id,
        "clause": decision.clause,
        "outcome": decision.outcome,
        "max_award_fen": decision.max_award_fen,
    }
    if plan.duplicate:
        line["duplicate"] = True
    line["granted_fen"] = plan.granted_fen
    line["tranches"] = [{"year": t.year, "amount_fen": t.amount_fen} for t in plan.tranches]
    line["reasons"] = [reason_to_json(r) for r in decision.reasons + plan.reasons]
    return line
