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


class Comparison:
    """The same applications, in the same order, through two policy versions:
    each its own eligibility and its own in-memory ledger (caps, one-time
    awards, tranches), as ``subsidy simulate`` runs one. Amounts are integer
    fen; the per-year difference is new minus old."""

    def __init__(self, old: Policy, new: Policy):
        self.old = Simulation(old)
        self.new = Simulation(new)
        self.rows: list[dict[str, Any]] = []

    def add(self, obj: Any) -> dict[str, Any]:
        """One application under both versions; raises BadInput (nothing
        applied to either ledger) if it breaks the contract."""
        app = parse_application(obj)
        old_decision, new_decision = evaluate(app, self.old.policy), evaluate(app, self.new.policy)
        old_line, new_line = self.old.apply(old_decision), self.new.apply(new_decision)
        years = sorted({t["year"] for t in old_line["tranches"]} | {t["year"] for t in new_line["tranches"]})

        def by_year(line: dict[str, Any]) -> dict[int, int]:
            found = dict.fromkeys(years, 0)
            for tranche in line["tranches"]:
                found[tranche["year"]] += tranche["amount_fen"]
            return found

        old_years, new_years = by_year(old_line), by_year(new_line)
        row = {
            "application_id": app.application_id,
            "credit_code": app.firm.credit_code,
            "firm": app.firm.name,
            "clause": app.claim.CLAUSE,
            "old": _side(old_line, old_decision),
            "new": _side(new_line, new_decision),
            "difference_fen": new_line["granted_fen"] - old_line["granted_fen"],
            "difference_by_year_fen": {str(y): new_years[y] - old_years[y] for y in years},
        }
        row["differs"] = (
            row["old"]["outcome"] != row["new"]["outcome"]
            or row["difference_fen"] != 0
            or any(row["difference_by_year_fen"].values())
        )
        self.rows.append(row)
        return row

    def by_firm(self) -> list[dict[str, Any]]:
        """Per firm (credit code): granted under each version and the
        difference, from the rows; the firms that gain or lose first by the
        size of the difference, then the others, by credit code."""
        firms: dict[str, dict[str, Any]] = {}
        for row in self.rows:
            firm = firms.setdefault(
                row["credit_code"],
                {"credit_code": row["credit_code"], "firm": row["firm"], "old_fen": 0, "new_fen": 0},
            )
            firm["old_fen"] += row["old"]["granted_fen"]
            firm["new_fen"] += row["new"]["granted_fen"]
        listed = [{**f, "difference_fen": f["new_fen"] - f["old_fen"]} for f in firms.values()]
        return sorted(listed, key=lambda f: (-abs(f["difference_fen"]), f["credit_code"]))

    def by_year(self) -> list[dict[str, Any]]:
        """Per budget year: the outlay under each version and the difference
        (from each ledger's own totals, not from the rows)."""
        old, new = self.old.by_year_fen, self.new.by_year_fen
        return [
            {
                "year": year,
                "old_fen": old.get(year, 0),
                "new_fen": new.get(year, 0),
                "difference_fen": new.get(year, 0) - old.get(year, 0),
            }
            for year in sorted(old.keys() | new.keys())
        ]


def _side(line: dict[str, Any], decision: Decision) -> dict[str, Any]:
    return {
        "outcome": line["outcome"],
        "max_award_fen": line["max_award_fen"],
        "granted_fen": line["granted_fen"],
        "tranches": line["tranches"],
        "policy_version": decision.policy_version,
        "reasons": [r["code"] for r in line["reasons"]],
    }
