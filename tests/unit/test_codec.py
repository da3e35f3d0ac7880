import copy
import json
from pathlib import Path

import pytest

from subsidy.contracts.codec import BadInput, application_to_json, parse_application

EXAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "applications.jsonl"
RENT = {
    "application_id": "T-1",
    "submitted_on": "2024-07-10",
    "firm": {
        "credit_code": "913101173AGYGLUY2P",
        "name": "上海示例工业互联网平台有限公司",
        "kinds": ["PLATFORM"],
        "registered_in_district": True,
        "tax_registered_in_district": True,
        "independent_legal_person": True,
        "introduced_on": "2021-04-01",
    },
    "rent": {
        "recognized_key_platform": True,
        "lease_start": "2023-07-01",
        "lease_end": "2024-06-30",
        "rent_paid_fen": 732000000,
    },
}


def _with(path: str, value):
    app = copy.deepcopy(RENT)
    *parents, last = path.split(".")
    target = app
    for part in parents:
        target = target[part]
    if value is _DROP:
        del target[last]
    else:
        target[last] = value
    return app


_DROP = object()


def test_the_json_form_round_trips():
    app = parse_application(RENT)
    assert parse_application(application_to_json(app)) == app


def test_lower_camel_case_and_int64_strings_are_read_as_protobuf_json_reads_them():
    camel = {
        "applicationId": "T-1",
        "submittedOn": "2024-07-10",
        "firm": {**{k: v for k, v in RENT["firm"].items() if k != "credit_code"}, "creditCode": "913101173AGYGLUY2P"},
        "rent": {"recognizedKeyPlatform": True, "leaseStart": "2023-07-01", "leaseEnd": "2024-06-30", "rentPaidFen": "732000000"},
    }
    assert parse_application(camel) == parse_application(RENT)


def test_a_missing_bool_is_false_and_a_missing_number_is_zero():
    claim = parse_application(_with("rent.rent_paid_fen", _DROP)).claim
    assert claim.rent_paid_fen == 0
    claim = parse_application(_with("rent.recognized_key_platform", None)).claim
    assert claim.recognized_key_platform is False


@pytest.mark.parametrize(
    "path,value,field,problem",
    [
        ("rent.rent_paid_fen", -1, "rent.rent_paid_fen", "negative"),
        ("rent.rent_paid_fen", 1.5, "rent.rent_paid_fen", "whole number"),
        ("rent.rent_paid_fen", True, "rent.rent_paid_fen", "whole number"),
        ("rent.rent_paid_fen", 2**63, "rent.rent_paid_fen", "too large"),
        ("rent.lease_start", "2023-02-29", "rent.lease_start", "not a real date"),
        ("rent.lease_start", "2023/07/01", "rent.lease_start", "YYYY-MM-DD"),
        ("rent.lease_start", _DROP, "rent.lease_start", "required"),
        ("rent.recognized_key_platform", "yes", "rent.recognized_key_platform", "true or false"),
        ("rent.rent", 1, "rent.rent", "unknown field"),
        ("firm.credit_code", "913101173AGYGLUY2Q", "firm.credit_code", "18th"),
        ("firm.credit_code", _DROP, "firm.credit_code", "required"),
        ("firm.kinds", ["PLATFORM", "ROBOT"], "firm.kinds[1]", "unknown value 'ROBOT'"),
        ("firm.introduced_on", "2021-13-01", "firm.introduced_on", "not a real date"),
        ("submitted_on", _DROP, "submitted_on", "required"),
        ("application_id", "", "application_id", "required"),
        ("application_id", "x" * 65, "application_id", "longer than 64"),
        ("firm", "ACME", "firm", "must be an object"),
        ("colour", "red", "colour", "unknown field"),
    ],
)
def test_bad_input_is_refused_naming_the_field(path, value, field, problem):
    with pytest.raises(BadInput) as refused:
        parse_application(_with(path, value))
    assert refused.value.path == field
    assert problem in str(refused.value)


def test_no_claim_and_two_claims_are_refused():
    no_claim = {k: v for k, v in RENT.items() if k != "rent"}
    with pytest.raises(BadInput, match="no claim"):
        parse_application(no_claim)
    with pytest.raises(BadInput, match="exactly one claim allowed, got 2: rent, dcmm"):
        parse_application({**RENT, "dcmm": {"level": 3}})


@pytest.mark.parametrize(
    "claim,problem",
    [
        ({"benchmark_platform": {"platform_id": "P", "level": "provincial"}}, "benchmark_platform.level: unknown value"),
        ({"innovation_carrier": {"carrier_type": "incubator", "level": "national"}}, "carrier_type: unknown value"),
        ({"benchmark_recognition": {"recognition": "national_star"}}, "recognition: unknown value"),
        ({"integration_certification": {"version": "2.0", "grade": "B"}}, "grade: unknown value"),
        ({"dcmm": {"level": 7}}, "dcmm.level: unknown value 7"),
        ({"dcmm": {}}, "dcmm.level: is required"),
        ({"revenue_milestone": {"year": 2024, "revenue_by_year_fen": {"24": 1}}}, "not a four-digit year"),
        ({"cloud_adoption": {"provider_credit_code": "91310117XXXXXXXXXX"}}, "provider_credit_code"),
    ],
)
def test_enumerated_values_are_checked_against_their_lists(claim, problem):
    app = {k: v for k, v in RENT.items() if k != "rent"} | claim
    with pytest.raises(BadInput, match=problem):
        parse_application(app)


def test_every_worked_example_parses():
    for line in EXAMPLES.read_text(encoding="utf-8").splitlines():
        parse_application(json.loads(line))
