"""The eligibility core, sentence by sentence. Clause-by-clause amounts live in
tests/policy_cases/*.yaml; these are the rules around them."""

import datetime as dt

from subsidy.contracts.codec import parse_application
from subsidy.core.clauses._base import add_years
from subsidy.core.eligibility import evaluate
from subsidy.core.policy import load_policy

POLICY = load_policy()
FIRM = {
    "credit_code": "913101173AGYGLUY2P",
    "name": "上海示例工业互联网平台有限公司",
    "kinds": ["PLATFORM"],
    "registered_in_district": True,
    "tax_registered_in_district": True,
    "independent_legal_person": True,
    "introduced_on": "2020-02-29",
}


def decide(claim_key, claim, submitted_on="2023-06-01", **firm):
    app = {"application_id": "T-1", "submitted_on": submitted_on, "firm": {**FIRM, **firm}, claim_key: claim}
    return evaluate(parse_application(app), POLICY)


def test_the_window_of_a_firm_introduced_on_29_february_ends_before_1_march_three_years_on():
    assert add_years(dt.date(2020, 2, 29), 3) == dt.date(2023, 3, 1)
    # Lease 2023-02-27 .. 2023-03-02: 4 days, 2 of them (27th, 28th) inside the window.
    decision = decide(
        "rent",
        {"recognized_key_platform": True, "lease_start": "2023-02-27", "lease_end": "2023-03-02", "rent_paid_fen": 400},
    )
    assert decision.outcome == "ELIGIBLE" and decision.max_award_fen == 100  # floor(400*2/4)=200, 50%


def test_every_missing_registry_fact_is_a_reason_citing_the_scope():
    decision = decide(
        "dcmm", {"level": 3}, registered_in_district=False, independent_legal_person=False, kinds=["SOFTWARE"]
    )
    assert decision.outcome == "INELIGIBLE"
    assert [r.code for r in decision.reasons] == ["NOT_REGISTERED_IN_DISTRICT", "NOT_INDEPENDENT_LEGAL_PERSON"]
    assert all(r.clause == "一" and "适用范围" in r.message for r in decision.reasons)


def test_a_firm_of_the_wrong_kind_is_told_which_kinds_may_apply():
    decision = decide("dcmm", {"level": 3})
    assert decision.outcome == "INELIGIBLE"
    assert decision.reasons[0].code == "KIND_NOT_ELIGIBLE" and "软件企业" in decision.reasons[0].message


def test_an_application_before_the_policy_applies_is_refused_with_the_date():
    decision = decide(
        "identifier_node", {"node_id": "N-1", "connected_to_national_top_node": True}, submitted_on="2021-12-31"
    )
    assert decision.outcome == "INELIGIBLE" and decision.reasons[0].code == "POLICY_NOT_IN_FORCE"
    assert "2022-01-01" in decision.reasons[0].message


def test_a_ceiling_that_floors_to_zero_is_ineligible_not_eligible_for_nothing():
    decision = decide(
        "rent",
        {"recognized_key_platform": True, "lease_start": "2022-01-01", "lease_end": "2022-01-01", "rent_paid_fen": 1},
    )
    assert decision.outcome == "INELIGIBLE" and decision.reasons[0].code == "ZERO_CEILING"


def test_the_decision_records_the_policy_version_and_a_derived_id():
    decision = decide("identifier_node", {"node_id": "N-1", "connected_to_national_top_node": True})
    assert decision.policy_version == POLICY.version
    assert decision.decision_id == f"T-1@{POLICY.version}"
    assert decide("identifier_node", {"node_id": "N-1", "connected_to_national_top_node": True}) == decision


def test_a_reviewers_decision_date_sets_the_decision_year():
    app = {
        "application_id": "T-2",
        "submitted_on": "2023-12-20",
        "decided_on": "2024-01-15",
        "firm": FIRM,
        "identifier_node": {"node_id": "N-1", "connected_to_national_top_node": True},
    }
    assert evaluate(parse_application(app), POLICY).decision_year == 2024


def test_revenue_milestones_become_one_entitlement_per_threshold():
    decision = decide(
        "revenue_milestone",
        {"year": 2024, "revenue_by_year_fen": {"2023": 60000000000, "2024": 250000000000}},
    )
    assert decision.max_award_fen == 300_0000_00  # 100万 + 200万: 5亿 was crossed in 2023
    assert [e.scope for e in decision.entitlements] == ["4/threshold=100000000000", "4/threshold=200000000000"]
