"""Every input that once crashed a fuzz target (tests/fuzz/corpus/<target>/),
replayed in process without the fuzzer, and what each found, said plainly."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

CORPUS = Path(__file__).resolve().parent / "corpus"
INPUTS = sorted(p for p in CORPUS.glob("*/*") if p.is_file())


@pytest.mark.parametrize("path", INPUTS, ids=[f"{p.parent.name}/{p.name}" for p in INPUTS])
def test_a_saved_input_no_longer_crashes_its_target(path):
    target = TARGETS[path.parent.name]
    target.setup()
    target.run(path.read_bytes())


def test_a_lone_surrogate_in_a_feed_change_is_refused_naming_the_field():
    """Found by the fuzzer: JSON's "\\ud800" decodes to a str that has no UTF-8
    form. The feed adapter raised UnicodeEncodeError keeping the change's raw
    bytes, and a FIRM change's name passed validation and raised in
    facts_to_proto: registry-sync stopped on that page, for every firm."""
    from subsidy.services.registry_sync.adapters.feed import _raw, decode_body
    from subsidy.services.registry_sync.model import BadChange, parse_change

    body = (CORPUS / "registry_feed" / "surrogate-in-name").read_bytes()
    change = decode_body("/changes", body)["changes"][0]
    assert b"\\ud800" in _raw(change).raw  # kept for the dead letter, escaped
    with pytest.raises(BadChange) as refused:
        parse_change(change, dt.date(2026, 3, 1))
    assert refused.value.field == "change.data.name"


def test_a_snapshot_firm_with_a_lone_surrogate_is_refused():
    from subsidy.services.registry_sync.handlers import _snapshot_firm
    from subsidy.services.registry_sync.model import BadChange

    firm = {"credit_code": "91310117313Q6C3D6G", "feed_sequence": 3, "name": "\ud83d"}
    with pytest.raises(BadChange, match="surrogate"):
        _snapshot_firm(firm, 0, dt.date(2026, 3, 1))


def test_a_feed_answer_nested_past_the_parsers_limit_is_a_broken_feed():
    from subsidy.services.registry_sync.adapters.feed import decode_body
    from subsidy.services.registry_sync.ports import FeedBroken

    with pytest.raises(FeedBroken, match="nested too deep"):
        decode_body("/changes", (CORPUS / "registry_feed" / "deep-nesting").read_bytes())
    assert decode_body("/changes", json.dumps({"changes": []}).encode()) == {"changes": []}
