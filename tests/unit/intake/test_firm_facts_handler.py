"""Intake's reader of subsidy.firms.v1 (免申即享 proposals): what it refuses
before any rule runs. Every record of the topic is keyed by a firm; anything
else is dead-lettered, a tombstone included (found by the fault suite's
hostile phase: a tombstone under a key that is no credit code was skipped)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from subsidy.core.credit_code import complete
from subsidy.platform.consumer import RecordRejected
from subsidy.services.intake.adapters.kafka import FirmFactsHandler
from subsidy.v1 import firm_facts_pb2

FIRM = complete("9131011712345678")


def record(key, value):
    return SimpleNamespace(key=key, value=value, headers=[], topic="subsidy.firms.v1", partition=0, offset=0)


def test_a_tombstone_of_a_firm_proposes_nothing():
    assert FirmFactsHandler(deps=None)(record(FIRM.encode(), None)) == "tombstone"


@pytest.mark.parametrize("key", [b"hostile-1-13", None, b"\xff\xfe", FIRM[:-1].encode() + b"0"])
def test_a_record_whose_key_is_no_credit_code_is_dead_lettered_tombstone_or_not(key):
    with pytest.raises(RecordRejected, match="^key: .* is not a unified social credit code$"):
        FirmFactsHandler(deps=None)(record(key, None))
    with pytest.raises(RecordRejected, match="^key: "):
        FirmFactsHandler(deps=None)(record(key, firm_facts_pb2.FirmFacts(credit_code=FIRM).SerializeToString()))


def test_facts_under_another_firms_key_are_dead_lettered():
    other = complete("9131011787654321")
    value = firm_facts_pb2.FirmFacts(credit_code=other).SerializeToString()
    with pytest.raises(RecordRejected, match="credit_code: .* is not the record's key"):
        FirmFactsHandler(deps=None)(record(FIRM.encode(), value))
