"""processor.process: one application record in, one decision or dead letter out."""

from __future__ import annotations

import datetime as dt

import pytest
from eligibility_support import POLICY, application_record, demo_applications
from hypothesis import given, settings
from hypothesis import strategies as st

from subsidy.services.eligibility import handlers as processor
from subsidy.core import eligibility as rules
from subsidy.services.eligibility.handlers import Decided, DeadLettered, Origin, process
from subsidy.contracts import cloudevents, codec, topics
from subsidy.v1 import application_pb2, decision_pb2, events_pb2

ORIGIN = Origin(topics.APPLICATIONS.name, 3, 41)
NOW = dt.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=dt.timezone.utc)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
DEMO = demo_applications()


def run(key, value, headers=None, **kwargs):
    return process(key, value, headers, policy=POLICY, origin=ORIGIN, now=NOW, **kwargs)


def letter_of(outcome: DeadLettered) -> events_pb2.DeadLetter:
    return events_pb2.DeadLetter.FromString(outcome.value)


def test_a_valid_application_becomes_a_decision_for_the_decisions_topic_keyed_by_the_credit_code():
    app = DEMO[0]
    outcome = run(*application_record(app))
    assert isinstance(outcome, Decided)
    assert outcome.topic == topics.DECISIONS.name
    assert outcome.key == app.firm.credit_code.encode()
    decision = decision_pb2.Decision.FromString(outcome.value)
    assert decision == codec.decision_to_proto(rules.evaluate(app, POLICY))


def test_every_demo_application_is_decided_exactly_as_the_rules_decide_it_directly():
    for app in DEMO:
        outcome = run(*application_record(app))
        assert isinstance(outcome, Decided), app.application_id
        assert codec.decision_from_proto(decision_pb2.Decision.FromString(outcome.value)) == rules.evaluate(app, POLICY)


def test_the_decision_carries_the_same_trace_id_as_the_application():
    outcome = run(*application_record(DEMO[1], trace_id=TRACE))
    assert outcome.trace_id == TRACE
    assert cloudevents.trace_id_of(outcome.headers) == TRACE


def test_the_decision_headers_are_cloudevents_naming_the_decision_and_this_service():
    app = DEMO[2]
    outcome = run(*application_record(app))
    headers = cloudevents.as_dict(outcome.headers)
    assert headers["ce_id"] == f"{app.application_id}@{POLICY.version}"
    assert headers["ce_type"] == cloudevents.TYPE_DECISION_MADE
    assert headers["ce_source"] == "/songjiang/subsidy/eligibility"
    assert headers["ce_specversion"] == "1.0"
    assert headers["content-type"] == "application/protobuf"
    assert headers["ce_time"] == "2024-05-06T07:08:09.123Z"


def test_an_application_without_a_traceparent_gets_a_new_trace_id():
    key, value, _ = application_record(DEMO[0], trace_id=None)
    outcome = run(key, value, [("ce_traceparent", b"not-a-traceparent")])
    assert isinstance(outcome, Decided)
    assert len(outcome.trace_id) == 32 and outcome.trace_id != TRACE
    assert cloudevents.trace_id_of(outcome.headers) == outcome.trace_id


def test_a_replayed_record_lands_on_the_same_decision_id():
    record = application_record(DEMO[3])
    first, again = run(*record), run(*record)
    assert cloudevents.as_dict(first.headers)["ce_id"] == cloudevents.as_dict(again.headers)["ce_id"]
    assert first.value == again.value


def test_headers_given_as_a_mapping_or_with_text_values_are_accepted():
    key, value, headers = application_record(DEMO[0])
    outcome = run(key, value, {k: v.decode() for k, v in headers})
    assert isinstance(outcome, Decided) and outcome.trace_id == TRACE


def test_garbage_bytes_become_a_dead_letter_holding_the_record_as_received():
    headers = [("ce_id", b"x-1"), ("ce_traceparent", f"00-{TRACE}-00f067aa0ba902b7-01".encode())]
    outcome = run(b"913101170BCJ72CC83", b"\xff\xfe not protobuf", headers)
    assert isinstance(outcome, DeadLettered)
    assert outcome.topic == topics.APPLICATIONS_DLQ.name
    assert outcome.key == b"913101170BCJ72CC83"
    assert not outcome.unexpected
    letter = letter_of(outcome)
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (ORIGIN.topic, 3, 41)
    assert letter.key == b"913101170BCJ72CC83"
    assert letter.value == b"\xff\xfe not protobuf"
    assert [(h.key, h.value) for h in letter.headers] == headers
    assert letter.consumer == "eligibility"
    assert letter.failed_at == "2024-05-06T07:08:09.123Z"
    assert "not a subsidy.v1.Application" in letter.error


def test_the_dead_letter_is_a_cloudevent_with_an_id_derived_from_where_the_record_was():
    outcome = run(None, b"\xff")
    headers = cloudevents.as_dict(outcome.headers)
    assert headers["ce_id"] == "eligibility:subsidy.applications.v1/3/41"
    assert headers["ce_type"] == cloudevents.TYPE_DEAD_LETTER
    assert outcome.key is None


def test_a_dead_letter_keeps_the_trace_id_of_the_record_it_holds():
    outcome = run(b"k", b"\xff", [("ce_traceparent", f"00-{TRACE}-00f067aa0ba902b7-01".encode())])
    assert cloudevents.trace_id_of(outcome.headers) == TRACE


def test_an_empty_value_is_dead_lettered():
    outcome = run(b"k", b"")
    assert isinstance(outcome, DeadLettered)
    assert letter_of(outcome).error == "empty value: expected a subsidy.v1.Application"


def test_a_tombstone_is_dead_lettered():
    outcome = run(b"k", None)
    assert isinstance(outcome, DeadLettered)
    assert "tombstone" in letter_of(outcome).error
    assert letter_of(outcome).value == b""


def test_an_application_breaking_the_contract_is_dead_lettered_naming_the_field():
    message = codec.application_to_proto(DEMO[0])
    message.firm.credit_code = "913101170BCJ72CC84"  # wrong check character
    outcome = run(b"913101170BCJ72CC84", message.SerializeToString())
    assert isinstance(outcome, DeadLettered) and not outcome.unexpected
    assert letter_of(outcome).error.startswith("invalid application: firm.credit_code: not a valid unified social credit code")
    assert outcome.application_id == DEMO[0].application_id


def test_an_application_without_a_claim_is_dead_lettered():
    message = application_pb2.Application(application_id="A-1", submitted_on="2024-01-01")
    outcome = run(b"k", message.SerializeToString())
    assert isinstance(outcome, DeadLettered)
    assert letter_of(outcome).error.startswith("invalid application: claim: no claim given")


def test_an_impossible_date_is_dead_lettered_naming_the_field():
    message = codec.application_to_proto(DEMO[0])
    message.submitted_on = "2023-02-30"
    outcome = run(b"k", message.SerializeToString())
    assert letter_of(outcome).error == "invalid application: submitted_on: is not a real date: 2023-02-30"


def test_a_failure_inside_evaluate_is_dead_lettered_as_unexpected_instead_of_raising(monkeypatch):
    def broken(app, policy, on=None):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(processor.rules, "evaluate", broken)
    outcome = run(*application_record(DEMO[0]))
    assert isinstance(outcome, DeadLettered)
    assert outcome.unexpected
    assert isinstance(outcome.exception, ZeroDivisionError)
    assert letter_of(outcome).error == "evaluating failed unexpectedly: ZeroDivisionError: division by zero"
    assert outcome.application_id == DEMO[0].application_id


@settings(max_examples=300, deadline=None)
@given(key=st.one_of(st.none(), st.binary(max_size=40)), value=st.one_of(st.none(), st.binary(max_size=200)))
def test_no_bytes_whatsoever_make_process_raise(key, value):
    outcome = run(key, value, [("ce_traceparent", b"\x00\xff")])
    assert isinstance(outcome, (Decided, DeadLettered))
    if isinstance(outcome, DeadLettered):
        assert letter_of(outcome).value == (value or b"")


@pytest.mark.parametrize("raw", [None, [], {}])
def test_missing_headers_are_no_problem(raw):
    key, value, _ = application_record(DEMO[0])
    assert isinstance(run(key, value, raw), Decided)
