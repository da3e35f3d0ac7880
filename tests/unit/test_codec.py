import copy
import json
import shutil
from pathlib import Path

import pytest

from subsidy.contracts.codec import (
    REQUIRED_FIELDS,
    BadInput,
    application_to_json,
    check_claims_in_proto,
    parse_application,
)
from subsidy.core.clauses import ClauseError

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
        "rent": {
            "recognizedKeyPlatform": True,
            "leaseStart": "2023-07-01",
            "leaseEnd": "2024-06-30",
            "rentPaidFen": "732000000",
        },
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
        (
            {"benchmark_platform": {"platform_id": "P", "level": "provincial"}},
            "benchmark_platform.level: unknown value",
        ),
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


# ------------------------------------------------ clauses against the proto

REPO = Path(__file__).resolve().parents[2]


def _application_descriptor(tmp_path: Path, old: str = "", new: str = ""):
    """The Application descriptor of proto/ with one edit, compiled by protoc."""
    from google.protobuf import descriptor_pb2, descriptor_pool
    from grpc_tools import protoc

    proto = tmp_path / "proto"
    shutil.copytree(REPO / "proto", proto)
    path = proto / "subsidy" / "v1" / "application.proto"
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in application.proto"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    out = tmp_path / "application.binpb"
    assert protoc.main(["protoc", f"-I{proto}", f"--descriptor_set_out={out}", "subsidy/v1/application.proto"]) == 0
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.AddSerializedFile(file.SerializeToString())
    return pool.FindMessageTypeByName("subsidy.v1.Application")


def test_the_shipped_proto_holds_every_clause(tmp_path):
    check_claims_in_proto(_application_descriptor(tmp_path))


@pytest.mark.parametrize(
    "old,new,message",
    [
        (
            "    IdentifierNodeClaim identifier_node = 21;\n",
            "",
            "clause 11.node (subsidy.core.clauses.identifier_node): claim not in proto: the Application.claim oneof in "
            "proto/subsidy/v1/application.proto has no message field 'identifier_node'; "
            "add `IdentifierNodeClaim identifier_node = 21;`",
        ),
        (
            "IdentifierNodeClaim identifier_node = 21;",
            "IdentifierNodeClaim identifier_node = 29;",
            "clause 11.node (subsidy.core.clauses.identifier_node): claim not in proto: identifier_node is field 29 of the oneof, "
            "the module declares proto_field_number=21",
        ),
        (
            "  string node_id = 1;\n  bool connected_to_national_top_node = 2;",
            "  bool connected_to_national_top_node = 2;\n  string node_id = 1;",
            "clause 11.node (subsidy.core.clauses.identifier_node): claim not in proto: message IdentifierNodeClaim has fields "
            "['connected_to_national_top_node', 'node_id'], the claim IdentifierNodeClaim has ['node_id', 'connected_to_national_top_node']",
        ),
        (
            "  string node_id = 1;\n  bool connected_to_national_top_node = 2;",
            "  string node_id = 1;\n  string connected_to_national_top_node = 2;",
            "clause 11.node (subsidy.core.clauses.identifier_node): claim not in proto: "
            "IdentifierNodeClaim.connected_to_national_top_node is string in proto, the claim field holds bool",
        ),
        (
            "int64 spend_fen = 4;",
            "int32 spend_fen = 4;",
            "clause 10.cloud (subsidy.core.clauses.cloud_adoption): claim not in proto: CloudAdoptionClaim.spend_fen is int32 in proto: "
            "list it in ClaimFields(int32=...)",
        ),
        (
            "    MatchmakingClaim matchmaking = 26;\n",
            "    MatchmakingClaim matchmaking = 26;\n    FinancingClaim loan = 27;\n",
            "Application.claim field(s) loan have no clause module under subsidy/core/clauses/",
        ),
    ],
)
def test_a_clause_the_proto_does_not_carry_as_declared_is_refused_naming_it(tmp_path, old, new, message):
    with pytest.raises(ClauseError) as refused:
        check_claims_in_proto(_application_descriptor(tmp_path, old, new))
    assert message in str(refused.value)


def test_what_a_clause_declares_about_its_fields_is_what_the_codec_checks():
    # Declared per clause (ClaimFields), not in lists of the codec's own.
    too_long = {k: v for k, v in RENT.items() if k != "rent"} | {"identifier_node": {"node_id": "N" * 65}}
    with pytest.raises(BadInput, match="identifier_node.node_id: is longer than 64"):
        parse_application(too_long)
    need = {k: v for k, v in RENT.items() if k != "rent"} | {"financing": {"need": "N" * 65}}
    assert parse_application(need).claim.need == "N" * 65
    year = {k: v for k, v in RENT.items() if k != "rent"} | {"cloud_adoption": {"service_year": 2**31}}
    with pytest.raises(BadInput, match="cloud_adoption.service_year: is too large"):
        parse_application(year)
    assert REQUIRED_FIELDS["rent"] == ("lease_start", "lease_end") and "financing" not in REQUIRED_FIELDS
