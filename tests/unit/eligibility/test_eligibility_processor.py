"""The eligibility handler (subsidy/services/eligibility/handlers.py): one
application record in, its decision out, or Rejected raised -- the shape of
every consumer's handler."""

from __future__ import annotations

import datetime as dt

import pytest
from eligibility_support import POLICY, application_record, demo_applications, record
from hypothesis import given, settings
from hypothesis import strategies as st

from subsidy.contracts import cloudevents, codec, topics
from subsidy.core import eligibility as rules
from subsidy.core.workflow import review
from subsidy.core.workflow.settings import load_workflow
from subsidy.platform.consumer import RecordRejected
from subsidy.services.eligibility import handlers
from subsidy.services.eligibility.handlers import Decided, Handler, Rejected
from subsidy.v1 import application_pb2, decision_pb2

NOW = dt.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=dt.UTC)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
DEMO = demo_applications()
handle = Handler(POLICY, clock=lambda: NOW)
WORKFLOW = load_workflow()


def expected(app):
    """The rules' decision, stamped for review by the workflow settings (policy/workflow.yaml)."""
    return review.stamp(rules.evaluate(app, POLICY), WORKFLOW.on(app.submitted_on))


def run(key, value, headers=None):
    return handle(record(key, value, headers))


def rejection(key, value, headers=None) -> Rejected:
    with pytest.raises(Rejected) as raised:
        run(key, value, headers)
    return raised.value


def test_a_valid_application_becomes_a_decision_for_the_decisions_topic_keyed_by_the_credit_code():
    app = DEMO[0]
    outcome = run(*application_record(app))
    assert isinstance(outcome, Decided)
    assert outcome.topic == topics.DECISIONS.name
    assert outcome.key == app.firm.credit_code.encode()
    decision = decision_pb2.Decision.FromString(outcome.value)
    assert decision == codec.decision_to_proto(expected(app))


def test_every_demo_application_is_decided_exactly_as_the_rules_decide_it_directly():
    for app in DEMO:
        outcome = run(*application_record(app))
        assert codec.decision_from_proto(decision_pb2.Decision.FromString(outcome.value)) == expected(app)


def test_decisions_needing_people_are_stamped_and_the_others_are_not():
    stamped = {}
    for app in DEMO:
        decision = codec.decision_from_proto(decision_pb2.Decision.FromString(run(*application_record(app)).value))
        computed = rules.evaluate(app, POLICY)
        if computed.outcome == "NEEDS_REVIEW":
            assert decision.review_reasons == (review.NEEDS_REVIEW_OUTCOME,)
        elif computed.outcome == "ELIGIBLE" and computed.max_award_fen >= 100_000_000:
            assert decision.review_reasons == (review.ABOVE_FOUR_EYES_THRESHOLD,)
        else:
            assert not decision.review_required and decision.review_reasons == ()
        stamped[app.application_id] = decision.review_required
    assert any(stamped.values()) and not all(stamped.values())


def test_the_decision_carries_the_same_trace_id_as_the_application():
    outcome = run(*application_record(DEMO[1], trace_id=TRACE))
    assert outcome.trace_id == TRACE
    assert cloudevents.trace_id_of(outcome.headers) == TRACE


def test_the_decision_headers_are_cloudevents_naming_the_decision_this_service_and_the_injected_time():
    app = DEMO[2]
    outcome = run(*application_record(app))
    headers = cloudevents.as_dict(outcome.headers)
    assert headers["ce_id"] == f"{app.application_id}@{POLICY.version}"
    assert headers["ce_type"] == cloudevents.TYPE_DECISION_MADE
    assert headers["ce_source"] == "/songjiang/subsidy/eligibility"
    assert headers["ce_specversion"] == "1.0"
    assert headers["content-type"] == "application/protobuf"
    assert headers["ce_time"] == "2024-05-06T07:08:09.123Z"


def test_the_handler_reads_its_clock_for_each_record():
    moments = iter([NOW, NOW + dt.timedelta(seconds=1)])
    ticking = Handler(POLICY, clock=lambda: next(moments))
    first, second = (ticking(record(*application_record(DEMO[0])[:2])) for _ in range(2))
    assert cloudevents.as_dict(first.headers)["ce_time"] == "2024-05-06T07:08:09.123Z"
    assert cloudevents.as_dict(second.headers)["ce_time"] == "2024-05-06T07:08:10.123Z"


def test_an_application_without_a_traceparent_gets_a_new_trace_id():
    key, value, _ = application_record(DEMO[0], trace_id=None)
    outcome = run(key, value, [("ce_traceparent", b"not-a-traceparent")])
    assert len(outcome.trace_id) == 32 and outcome.trace_id != TRACE
    assert cloudevents.trace_id_of(outcome.headers) == outcome.trace_id


def test_a_replayed_record_lands_on_the_same_decision_id():
    rec = application_record(DEMO[3])
    first, again = run(*rec), run(*rec)
    assert cloudevents.as_dict(first.headers)["ce_id"] == cloudevents.as_dict(again.headers)["ce_id"]
    assert first.value == again.value


def test_headers_given_as_a_mapping_or_with_text_values_are_accepted():
    key, value, headers = application_record(DEMO[0])
    outcome = run(key, value, {k: v.decode() for k, v in headers})
    assert outcome.trace_id == TRACE


def test_a_rejection_is_a_record_rejected_as_every_consumer_handler_raises():
    assert issubclass(Rejected, RecordRejected)
    assert str(rejection(b"k", b"\xff\xfe not protobuf")).startswith("not a subsidy.v1.Application protobuf")


def test_garbage_bytes_are_rejected_as_not_an_application_and_not_as_a_bug():
    refused = rejection(b"913101170BCJ72CC83", b"\xff\xfe not protobuf")
    assert refused.error.startswith("not a subsidy.v1.Application protobuf")
    assert not refused.unexpected and refused.application_id is None


def test_an_empty_value_is_rejected():
    assert rejection(b"k", b"").error == "empty value: expected a subsidy.v1.Application"


def test_a_tombstone_is_rejected():
    assert "tombstone" in rejection(b"k", None).error


def test_an_application_breaking_the_contract_is_rejected_naming_the_field_and_the_application():
    message = codec.application_to_proto(DEMO[0])
    message.firm.credit_code = "913101170BCJ72CC84"  # wrong check character
    refused = rejection(b"913101170BCJ72CC84", message.SerializeToString())
    assert refused.error.startswith("invalid application: firm.credit_code: not a valid unified social credit code")
    assert refused.application_id == DEMO[0].application_id and not refused.unexpected


def test_an_application_without_a_claim_is_rejected():
    message = application_pb2.Application(application_id="A-1", submitted_on="2024-01-01")
    assert rejection(b"k", message.SerializeToString()).error.startswith("invalid application: claim: no claim given")


def test_an_impossible_date_is_rejected_naming_the_field():
    message = codec.application_to_proto(DEMO[0])
    message.submitted_on = "2023-02-30"
    assert rejection(b"k", message.SerializeToString()).error == (
        "invalid application: submitted_on: is not a real date: 2023-02-30"
    )


def test_a_failure_inside_evaluate_is_rejected_as_unexpected_with_its_cause(monkeypatch):
    def broken(app, policy, on=None):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(handlers.rules, "evaluate", broken)
    refused = rejection(*application_record(DEMO[0]))
    assert refused.unexpected
    assert isinstance(refused.__cause__, ZeroDivisionError)
    assert refused.error == "evaluating failed unexpectedly: ZeroDivisionError: division by zero"
    assert refused.application_id == DEMO[0].application_id


@settings(max_examples=300, deadline=None)
@given(key=st.one_of(st.none(), st.binary(max_size=40)), value=st.one_of(st.none(), st.binary(max_size=200)))
def test_no_bytes_whatsoever_make_the_handler_fail_other_than_by_rejecting(key, value):
    try:
        outcome = run(key, value, [("ce_traceparent", b"\x00\xff")])
    except Rejected as refused:
        assert refused.error and not refused.unexpected
    else:
        assert isinstance(outcome, Decided)


@pytest.mark.parametrize("raw", [None, [], {}])
def test_missing_headers_are_no_problem(raw):
    key, value, _ = application_record(DEMO[0])
    assert isinstance(run(key, value, raw), Decided)
