"""codec.application_to_proto builds the message field by field; it must be
byte for byte what the contract's JSON form parsed by protobuf's own
json_format gives, since intake hashes and stores those bytes."""

from __future__ import annotations

import datetime as dt

from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import DATES, applications

from subsidy.contracts.codec import (
    application_from_proto,
    application_to_json,
    application_to_proto,
    parse_application,
)
from subsidy.v1 import application_pb2


def _via_json(app) -> bytes:
    return json_format.ParseDict(application_to_json(app), application_pb2.Application()).SerializeToString(
        deterministic=True
    )


@settings(max_examples=300, deadline=None)  # a loaded machine must not fail it
@given(applications(), st.none() | DATES)
def test_the_protobuf_built_directly_is_the_json_form_parsed_by_protobuf(raw, decided_on):
    if decided_on is not None:
        raw = {**raw, "decided_on": decided_on.isoformat()}
    app = parse_application(raw)
    message = application_to_proto(app)
    assert message.SerializeToString(deterministic=True) == _via_json(app)
    assert application_from_proto(message) == app


def test_an_empty_claim_is_kept_as_the_chosen_claim():
    app = parse_application(
        {
            "application_id": "T-1",
            "submitted_on": "2024-07-10",
            "firm": {"credit_code": "913101173AGYGLUY2P"},
            "financing": {},
        }
    )
    message = application_to_proto(app)
    assert message.WhichOneof("claim") == "financing"
    assert message.SerializeToString(deterministic=True) == _via_json(app)
    assert application_from_proto(message) == app


def test_dates_and_year_maps_are_written_as_the_contract_spells_them():
    app = parse_application(
        {
            "application_id": "T-2",
            "submitted_on": "2024-07-10",
            "firm": {"credit_code": "913101173AGYGLUY2P", "introduced_on": "2021-04-01"},
            "revenue_milestone": {"year": 2024, "revenue_by_year_fen": {"2023": 5, "2024": 0}},
        }
    )
    message = application_to_proto(app)
    assert message.firm.introduced_on == "2021-04-01" and message.submitted_on == "2024-07-10"
    assert dict(message.revenue_milestone.revenue_by_year_fen) == {"2023": 5, "2024": 0}
    assert application_from_proto(message).submitted_on == dt.date(2024, 7, 10)
