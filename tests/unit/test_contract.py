"""The contract is one: proto/, the domain values, and the JSON the calculator prints."""

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from subsidy.core import domain
from subsidy.v1 import application_pb2, decision_pb2, payout_pb2
from subsidy_dev import protogen

REPO = Path(__file__).resolve().parents[2]


def test_generated_protobuf_code_is_not_stale():
    stale = protogen.stale_files()
    assert not stale, f"subsidy/v1 is stale for {stale}: run `make proto`"


def test_no_generated_file_is_left_over_from_a_removed_proto():
    expected = {p.stem for p in protogen.proto_files()}
    for generated in (REPO / "subsidy" / "v1").glob("*_pb2*.py*"):
        assert generated.name.split("_pb2")[0] in expected, f"{generated} has no proto: run `make clean proto`"


def test_buf_lint_passes():
    buf = shutil.which("buf", path=str(REPO / ".venv" / "bin")) or shutil.which("buf")
    assert buf, "buf (PyPI buf-bin) is a test dependency"
    result = subprocess.run([buf, "lint"], cwd=REPO / "proto", capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def _proto_fields(message) -> list[str]:
    return [f.name for f in message.DESCRIPTOR.fields]


@pytest.mark.parametrize("claim", domain.CLAIM_TYPES, ids=lambda c: c.KEY)
def test_each_claim_has_the_same_fields_in_proto_and_domain(claim):
    oneof = application_pb2.Application.DESCRIPTOR.oneofs_by_name["claim"]
    by_name = {f.name: f for f in oneof.fields}
    assert claim.KEY in by_name, f"claim {claim.KEY} missing from the proto oneof"
    proto_fields = [f.name for f in by_name[claim.KEY].message_type.fields]
    assert proto_fields == [f.name for f in dataclasses.fields(claim)]


def test_the_oneof_holds_exactly_the_domain_claims():
    oneof = application_pb2.Application.DESCRIPTOR.oneofs_by_name["claim"]
    assert [f.name for f in oneof.fields] == list(domain.CLAIM_BY_KEY)


def test_firm_and_decision_fields_match():
    assert _proto_fields(application_pb2.Firm) == [f.name for f in dataclasses.fields(domain.Firm)]
    assert set(_proto_fields(decision_pb2.Decision)) == {f.name for f in dataclasses.fields(domain.Decision)}
    assert _proto_fields(decision_pb2.Reason) == [f.name for f in dataclasses.fields(domain.Reason)]


def test_money_is_int64_fen_everywhere():
    seen: set[str] = set()

    def walk(descriptor):
        if descriptor.full_name in seen:
            return
        seen.add(descriptor.full_name)
        for f in descriptor.fields:
            if f.name.endswith("_fen"):
                target = f.message_type.fields_by_name["value"] if f.message_type else f
                assert target.type == target.TYPE_INT64, f"{descriptor.full_name}.{f.name} must be int64"
            if f.message_type:
                walk(f.message_type)

    walk(application_pb2.Application.DESCRIPTOR)
    walk(decision_pb2.Decision.DESCRIPTOR)


def test_every_tranche_event_says_which_application_and_clause_it_is_about():
    """docs/finance-events.md: consumers read these instead of parsing the tranche id."""
    oneof = payout_pb2.PayoutEvent.DESCRIPTOR.oneofs_by_name["event"]
    tranche_events = [f.message_type for f in oneof.fields if f.message_type.name.startswith("Tranche")]
    assert [m.name for m in tranche_events] == [
        "TrancheScheduled",
        "TrancheDue",
        "TrancheCancelled",
        "TranchePaid",
        "TrancheHeld",
        "TrancheReleased",
    ]
    for message in tranche_events:
        for name in ("tranche_id", "application_id", "clause"):
            field = message.fields_by_name.get(name)
            assert field is not None and field.type == field.TYPE_STRING, f"{message.name}.{name}"


def _buf() -> str:
    buf = shutil.which("buf", path=str(REPO / ".venv" / "bin")) or shutil.which("buf")
    assert buf, "buf (PyPI buf-bin) is a test dependency"
    return buf


RELEASED = REPO / "contracts" / "subsidy-v1-release.binpb"


def test_proto_is_not_breaking_against_the_released_contract():
    result = subprocess.run(
        [_buf(), "breaking", "--against", str(RELEASED)],
        cwd=REPO / "proto",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, "breaking change against contracts/:\n" + result.stdout + result.stderr


def test_a_breaking_change_would_be_caught(tmp_path):
    shutil.copytree(REPO / "proto", tmp_path / "proto")
    decision = tmp_path / "proto" / "subsidy" / "v1" / "decision.proto"
    decision.write_text(decision.read_text().replace("int64 max_award_fen = 6;", "int32 max_award_fen = 6;"))
    result = subprocess.run(
        [_buf(), "breaking", "--against", str(RELEASED)],
        cwd=tmp_path / "proto",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "max_award_fen" in result.stdout + result.stderr
