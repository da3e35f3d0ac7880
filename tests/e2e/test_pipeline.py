"""End to end on a real broker: intake and eligibility as real processes,
applications in over gRPC, decisions out on Kafka and back through
GetApplication, agreeing with `subsidy simulate` on the same applications."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from subsidy.contracts import cloudevents, topics
from subsidy.contracts.calculator import Simulation
from subsidy.core.policy import load_policy
from subsidy.v1 import application_pb2, decision_pb2, events_pb2, intake_pb2, intake_pb2_grpc
from subsidy_dev.demo import submit_all, wait_decided
from subsidy_dev.kafka import KafkaBroker
from subsidy_dev.stack import LocalStack

pytestmark = pytest.mark.integration
# The first half of the pipeline; tests/e2e/test_whole_pipeline.py runs all four.
FIRST_HALF = ("intake", "eligibility")

REPO = Path(__file__).resolve().parents[2]
DEMO = [
    json.loads(line)
    for line in (REPO / "demo" / "applications.jsonl").read_text(encoding="utf-8").splitlines()
    if line.strip()
]


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    # Its own broker: one test stops and restarts it.
    with KafkaBroker(tmp_path_factory.mktemp("e2e-kafka")) as running:
        yield running


@pytest.fixture(scope="module")
def stack(broker, tmp_path_factory):
    with LocalStack(
        tmp_path_factory.mktemp("e2e-stack"), kafka_bootstrap=broker.bootstrap, services=FIRST_HALF
    ) as running:
        yield running


@pytest.fixture(scope="module")
def intake(stack):
    with grpc.insecure_channel(stack.intake_address) as channel:
        yield intake_pb2_grpc.IntakeServiceStub(channel)


def _read_topic(bootstrap: str, topic: str, timeout: float = 5.0) -> list:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=int(timeout * 1000)
    )
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    end = consumer.end_offsets(partitions)
    records = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(consumer.position(p) < end[p] for p in partitions):
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    consumer.close()
    return records


def _expected_by_simulate() -> dict[str, dict]:
    simulation = Simulation(load_policy())
    expected = {}
    for app in DEMO:
        line = simulation.apply(simulation.decide(app))
        expected.setdefault(app["application_id"], line)
    return expected


def test_the_demo_applications_are_decided_through_kafka_as_the_calculator_decides_them(stack, intake):
    submitted = dict(submit_all(intake, DEMO))
    assert set(submitted.values()) <= {"accepted", "duplicate"}, submitted
    decided = wait_decided(intake, [a["application_id"] for a in DEMO], timeout=120)
    expected = _expected_by_simulate()
    for app_id, status in decided.items():
        want = expected[app_id]
        got = status.decision
        assert (got.clause, got.outcome, got.max_award_fen) == (
            want["clause"],
            want["outcome"],
            want["max_award_fen"],
        ), app_id

    on_kafka = {}
    for record in _read_topic(stack.kafka_bootstrap, topics.DECISIONS.name):
        decision = decision_pb2.Decision.FromString(record.value)
        on_kafka[decision.application_id] = (record, decision)
    for app_id, status in decided.items():
        record, decision = on_kafka[app_id]
        assert record.key == status.application.firm.credit_code.encode()
        headers = cloudevents.as_dict(record.headers)
        assert headers["ce_id"] == decision.decision_id
        assert cloudevents.trace_id_of(headers) == status.receipt.trace_id, "one trace id from submit to decision"
        assert decision.outcome == status.decision.outcome


def test_a_trace_id_can_be_followed_in_the_logs_of_both_services(stack, intake):
    app = {**DEMO[0], "application_id": f"TRACE-{uuid.uuid4().hex[:8]}"}
    submit_all(intake, [app])
    status = wait_decided(intake, [app["application_id"]])[app["application_id"]]
    trace_id = status.receipt.trace_id
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        logs = {name: s.log_path.read_text(encoding="utf-8") for name, s in stack.services.items()}
        if all(trace_id in text for text in logs.values()):
            break
        time.sleep(0.3)
    for name, text in logs.items():
        lines = [json.loads(line) for line in text.splitlines() if trace_id in line]
        assert lines, f"trace id {trace_id} not in the {name} log"
        assert all(line.get("trace_id") == trace_id for line in lines if "trace_id" in line)


def test_a_duplicate_submit_publishes_nothing_new(stack, intake):
    app = {**DEMO[1], "application_id": f"DUP-{uuid.uuid4().hex[:8]}"}
    first = dict(submit_all(intake, [app]))
    wait_decided(intake, [app["application_id"]])
    second = dict(submit_all(intake, [app]))
    assert (first[app["application_id"]], second[app["application_id"]]) == ("accepted", "duplicate")
    time.sleep(1)
    published = [
        r
        for r in _read_topic(stack.kafka_bootstrap, topics.APPLICATIONS.name)
        if application_pb2.Application.FromString(r.value).application_id == app["application_id"]
    ]
    assert len(published) == 1


def test_bad_input_is_refused_at_intake_naming_the_field(intake):
    bad = json.loads(json.dumps(DEMO[0]))
    bad["firm"]["credit_code"] = bad["firm"]["credit_code"][:-1] + (
        "0" if bad["firm"]["credit_code"][-1] != "0" else "1"
    )
    with pytest.raises(grpc.RpcError) as refused:
        intake.SubmitApplication(
            intake_pb2.SubmitApplicationRequest(application=json_format.ParseDict(bad, application_pb2.Application())),
            timeout=10,
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "firm.credit_code" in refused.value.details()


def test_garbage_on_the_applications_topic_is_dead_lettered_while_good_messages_flow(stack, intake):
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    garbage = b"\xff\x00 not a protobuf " + uuid.uuid4().bytes
    producer.send(topics.APPLICATIONS.name, key=b"913101170000000000", value=garbage).get(timeout=10)
    producer.close()
    good = {**DEMO[2], "application_id": f"AFTER-GARBAGE-{uuid.uuid4().hex[:8]}"}
    submit_all(intake, [good])
    wait_decided(intake, [good["application_id"]])
    deadline = time.monotonic() + 20
    found = []
    while time.monotonic() < deadline and not found:
        found = [
            letter
            for letter in (
                events_pb2.DeadLetter.FromString(r.value)
                for r in _read_topic(stack.kafka_bootstrap, topics.APPLICATIONS_DLQ.name)
            )
            if letter.value == garbage
        ]
        time.sleep(0.5)
    assert found, "the garbage message is on the dead-letter topic with its raw bytes"
    assert found[0].source_topic == topics.APPLICATIONS.name and found[0].error


def test_applications_accepted_while_the_broker_is_down_are_decided_after_it_returns(broker, stack, intake):
    apps = [{**app, "application_id": f"OUTAGE-{n}-{uuid.uuid4().hex[:6]}"} for n, app in enumerate(DEMO[:5])]
    broker.stop()
    try:
        results = dict(submit_all(intake, apps))
        assert set(results.values()) == {"accepted"}, "intake keeps accepting while Kafka is down"
    finally:
        broker.start()
    decided = wait_decided(intake, [a["application_id"] for a in apps], timeout=180)
    assert len(decided) == len(apps)


def test_both_services_stop_cleanly_on_sigterm(broker, tmp_path):
    with LocalStack(tmp_path / "stack", kafka_bootstrap=broker.bootstrap, services=FIRST_HALF) as stack:
        pass
    assert all(service.process.returncode == 0 for service in stack.services.values()), {
        name: s.process.returncode for name, s in stack.services.items()
    }
