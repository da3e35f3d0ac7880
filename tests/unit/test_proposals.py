"""免申即享 in the core (subsidy/core/proposals.py, policy/proposals.yaml):
which facts make which proposable claims, one derived id per fact, evaluated
like any application, and the refusals of a malformed rules file."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
import yaml

from subsidy.core.clauses.dcmm import DcmmClaim
from subsidy.core.domain import Firm
from subsidy.core.eligibility import evaluate
from subsidy.core.policy import load_policy
from subsidy.core.proposals import (
    Facts,
    ProposalRulesError,
    Recognition,
    application_of,
    candidates,
    load_proposals,
    parse_proposals,
    proposal_id,
    proposals,
    same_claim,
)

ON = dt.date(2026, 3, 2)
CODE = "91310117DLWJ0QAU76"
FIRM = Firm(CODE, "上海佘山软件", ("SOFTWARE",), True, True, True)
RULES = load_proposals()
POLICY = load_policy()


def dcmm(level: str = "3", reference: str = "DCMM-2026-0042") -> Recognition:
    return Recognition("DCMM_LEVEL", level, reference, dt.date(2026, 3, 1))


def test_every_clause_the_workflow_names_is_proposable_and_no_other():
    assert sorted(RULES.rules) == sorted(["3", "4", "7", "8", "9", "10.park", "11.node", "11.identifiers", "12"])
    assert all(rule.proposable_on(ON) for rule in RULES.rules.values())
    assert not RULES.rules["9"].proposable_on(dt.date(2021, 12, 31))


def test_a_dcmm_level_3_certification_makes_one_eligible_proposal_with_the_simulated_amount():
    found = proposals(Facts(FIRM, (dcmm(),)), RULES, POLICY, ON)
    assert len(found) == 1
    candidate, decision = found[0]
    assert candidate.clause == "9" and candidate.claim == DcmmClaim(certificate_id="DCMM-2026-0042", level=3)
    assert candidate.fact_reference == "DCMM_LEVEL:DCMM-2026-0042"
    assert candidate.proposal_id == proposal_id(CODE, "9", "DCMM_LEVEL:DCMM-2026-0042")
    # the amount `subsidy simulate` gives for the same claim: the eligibility core's
    same = evaluate(application_of(candidate, FIRM, ON), POLICY, ON)
    assert decision.max_award_fen == same.max_award_fen == 20_000_000


def test_the_same_fact_twice_is_the_same_proposal_id():
    one = candidates(Facts(FIRM, (dcmm(),)), RULES, ON)
    two = candidates(Facts(FIRM, (dcmm(), dcmm())), RULES, ON)
    assert {c.proposal_id for c in two} == {c.proposal_id for c in one}
    assert len(proposal_id(CODE, "11.identifiers", "identifier_usage:2025")) <= 64


def test_no_proposal_for_a_level_not_listed_an_ineligible_firm_or_a_firm_out_of_scope():
    assert candidates(Facts(FIRM, (dcmm("9"),)), RULES, ON) == []
    assert proposals(Facts(FIRM, (dcmm("1"),)), RULES, POLICY, ON) == []  # listed, but pays nothing
    industrial = Firm(CODE, "x", ("INDUSTRIAL",), True, True, True)
    assert proposals(Facts(industrial, (dcmm(),)), RULES, POLICY, ON) == []  # DCMM pays software firms
    moved_out = Firm(CODE, "x", ("SOFTWARE",), False, True, True)
    assert proposals(Facts(moved_out, (dcmm(),)), RULES, POLICY, ON) == []


def test_an_award_dated_after_the_day_is_not_proposed_yet():
    later = Recognition("DCMM_LEVEL", "3", "D-9", dt.date(2026, 3, 3))
    assert candidates(Facts(FIRM, (later,)), RULES, ON) == []


def test_revenue_from_tax_data_and_identifier_usage_make_claims_per_year():
    facts = Facts(
        FIRM,
        revenues={2024: 40_000_000_000, 2025: 60_000_000_000, 2026: 1},
        identifier_usage={2025: (2_000_000, 2_400_000)},
    )
    found = {c.fact_reference: c for c in candidates(facts, RULES, ON)}
    assert set(found) == {"revenue:2024", "revenue:2025", "identifier_usage:2025"}, "2026 is not over"
    assert found["revenue:2025"].claim.year == 2025
    assert found["identifier_usage:2025"].claim.monthly_avg_resolutions == 200_000


def test_an_application_for_the_same_claim_is_the_same_claim():
    proposed = DcmmClaim(certificate_id="DCMM-2026-0042", level=3)
    assert same_claim(DcmmClaim(certificate_id="OTHER-ID", level=3), proposed, FIRM, POLICY, ON)
    assert not same_claim(DcmmClaim(certificate_id="DCMM-2025-1", level=2), proposed, FIRM, POLICY, ON)


def rules_with(**changes):
    data = yaml.safe_load(Path("policy/proposals.yaml").read_text(encoding="utf-8"))
    for clause, spec in changes.items():
        data["proposals"][clause] = spec
    return data


@pytest.mark.parametrize(
    ("spec", "where"),
    [
        ({"claim": "nope", "source": "recognition"}, "proposals.9.claim"),
        ({"claim": "benchmark_park", "source": "recognition"}, "proposals.9.claim"),
        ({"claim": "dcmm", "source": "gossip"}, "proposals.9.source"),
        (
            {
                "claim": "dcmm",
                "source": "recognition",
                "kind": "NOBEL",
                "reference_field": "certificate_id",
                "proposable": [{"from": dt.date(2022, 1, 1), "value": True, "cites": "x"}],
            },
            "proposals.9.kind",
        ),
        (
            {
                "claim": "dcmm",
                "source": "recognition",
                "kind": "DCMM_LEVEL",
                "reference_field": "certificate_id",
                "by_level": {"3": {"grade": 3}},
                "proposable": [{"from": dt.date(2022, 1, 1), "value": True, "cites": "x"}],
            },
            "proposals.9.by_level.3.grade",
        ),
        (
            {
                "claim": "dcmm",
                "source": "recognition",
                "kind": "DCMM_LEVEL",
                "reference_field": "certificate_id",
                "by_level": {"3": {"level": 3}},
                "proposable": [{"from": dt.date(2022, 1, 1), "value": "yes", "cites": "x"}],
            },
            "proposals.9.proposable[0].value",
        ),
    ],
)
def test_a_malformed_rules_file_is_refused_naming_the_field(spec, where):
    with pytest.raises(ProposalRulesError, match=re.escape(f": {where}: ")):
        parse_proposals(rules_with(**{"9": spec}), "proposals.yaml")


def test_an_unknown_clause_is_refused():
    with pytest.raises(ProposalRulesError, match=r"proposals\.99: unknown clause"):
        parse_proposals(rules_with(**{"99": {"claim": "dcmm"}}), "proposals.yaml")
