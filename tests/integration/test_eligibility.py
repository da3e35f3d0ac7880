"""The eligibility service as a process (``python -m subsidy.services.eligibility``)
against the real broker: applications in, decisions and dead letters out."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from subsidy.contracts import cloudevents, codec, topics
from subsidy.core import eligibility as rules
from subsidy.core.policy import load_policy
from subsidy.core.workflow import review as review_rules
from subsidy.core.workflow.settings import load_workflow
from subsidy.platform import topics as platform_topics
from subsidy.v1 import decision_pb2, events_pb2
from subsidy_dev import free_port, project_root, tail

pytestmark = pytest.mark.integration

ROOT = project_root()
POLICY = load_policy()
WORKFLOW = load_workflow()


def decided(app):
    """What eligibility publishes: the rules' decision, stamped for review
    under the workflow settings in force on its submission day."""
    decision = rules.evaluate(app, POLICY)
    return review_rules.stamp(decision, WORKFLOW.on(decision.submitted_on))


def demo_applications(tag: str):
    """The 33 demo applications, with ids unique to this test run (the demo
    repeats one id on purpose, for the ledger's duplicate check)."""
    apps = []
    lines = [
        line for line in (ROOT / "demo" / "applications.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    for i, line in enumerate(lines):
        obj = json.loads(line)
        obj["application_id"] = f"{obj['application_id']}-{tag}-{i}"
        apps.append(codec.parse_application(obj))
    return apps


class Eligibility:
    """One run of ``python -m subsidy.services.eligibility``."""

    def __init__(self, bootstrap: str, tmp: Path, name: str = "eligibility"):
        self.grpc_port = free_port()
        self.log_path = tmp / f"{name}.log"
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "SUBSIDY_ELIGIBILITY_GRPC_ADDRESS": f"127.0.0.1:{self.grpc_port}",
            "SUBSIDY_ELIGIBILITY_METRICS_PORT": str(free_port()),
            "SUBSIDY_ELIGIBILITY_METRICS_ADDRESS": "127.0.0.1",
            "SUBSIDY_ELIGIBILITY_DATA_DIR": str(tmp / "data"),
            "SUBSIDY_ELIGIBILITY_SESSION_TIMEOUT_SECONDS": "6",
            "PYTHONUNBUFFERED": "1",
        }
        self.proc: subprocess.Popen | None = None

    def start(self) -> Eligibility:
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "subsidy.services.eligibility"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        return self

    def wait_serving(self, timeout: float = 45.0) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, f"eligibility exited {self.proc.returncode}:\n{tail(self.log_path)}"
                try:
                    if (
                        stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                        == health_pb2.HealthCheckResponse.SERVING
                    ):
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.2)
        raise AssertionError(f"eligibility not SERVING after {timeout}s:\n{tail(self.log_path)}")

    def wait_answering(self, timeout: float = 45.0) -> None:
        """Until its gRPC health answers at all: the faust app is then still starting."""
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, f"eligibility exited {self.proc.returncode}:\n{tail(self.log_path)}"
                try:
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    return
                except grpc.RpcError:
                    time.sleep(0.05)
        raise AssertionError(f"eligibility's gRPC not answering after {timeout}s:\n{tail(self.log_path)}")

    def terminate(self, timeout: float = 20.0) -> tuple[int, float]:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"eligibility did not stop within {timeout}s:\n{tail(self.log_path)}") from None
        finally:
            self.log.close()
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def run_eligibility(kafka_bootstrap, tmp_path):
    started: list[Eligibility] = []

    def start(name: str = "eligibility") -> Eligibility:
        service = Eligibility(kafka_bootstrap, tmp_path, name).start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.kill()


class Topics:
    """Produce applications; read decisions and dead letters from where they ended at the start."""

    def __init__(self, bootstrap: str):
        platform_topics.ensure_all(bootstrap)
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        tps = [
            TopicPartition(name, p)
            for name in (topics.DECISIONS.name, topics.APPLICATIONS_DLQ.name)
            for p in self.consumer.partitions_for_topic(name)
        ]
        self.consumer.assign(tps)
        self.consumer.seek_to_end()
        for tp in tps:
            self.consumer.position(tp)
        self.decisions: dict[str, tuple] = {}
        self.decision_counts: collections.Counter[str] = collections.Counter()
        self.dead_letters: list[tuple] = []

    def send_application(self, app, trace_id: str) -> None:
        headers = cloudevents.headers(
            app.application_id, cloudevents.TYPE_APPLICATION_SUBMITTED, "/songjiang/subsidy/intake", trace_id
        )
        self.producer.send(
            topics.APPLICATIONS.name,
            key=app.firm.credit_code.encode(),
            value=codec.application_to_proto(app).SerializeToString(),
            headers=headers,
        )

    def send_raw(self, key: bytes, value: bytes | None) -> None:
        self.producer.send(topics.APPLICATIONS.name, key=key, value=value)

    def flush(self) -> None:
        self.producer.flush(30)

    def collect(self, application_ids: set[str], dead_keys: set[bytes] = frozenset(), timeout: float = 45.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if application_ids <= set(self.decisions) and dead_keys <= {d[0] for d in self.dead_letters}:
                return
            self._poll()
        missing = sorted(application_ids - set(self.decisions))
        raise AssertionError(
            f"no decision for {missing[:5]} ({len(missing)} missing), "
            f"dead letters {[d[0] for d in self.dead_letters]} within {timeout}s"
        )

    def _poll(self) -> None:
        for records in self.consumer.poll(timeout_ms=500).values():
            for r in records:
                if r.topic == topics.DECISIONS.name:
                    decision = decision_pb2.Decision.FromString(r.value)
                    self.decisions.setdefault(decision.application_id, (r.key, decision, dict(r.headers)))
                    self.decision_counts[decision.application_id] += 1
                else:
                    self.dead_letters.append((r.key, events_pb2.DeadLetter.FromString(r.value), dict(r.headers)))

    def drain(self, seconds: float) -> None:
        """Keep reading for a while (to see what should NOT arrive)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._poll()

    def close(self) -> None:
        self.producer.close(10)
        self.consumer.close()


@pytest.fixture
def kafka(kafka_bootstrap):
    t = Topics(kafka_bootstrap)
    yield t
    t.close()


def test_demo_applications_are_decided_as_the_rules_decide_and_garbage_goes_to_the_dead_letter_topic(
    run_eligibility, kafka
):
    tag = uuid.uuid4().hex[:8]
    apps = demo_applications(tag)
    traces = {a.application_id: cloudevents.new_trace_id() for a in apps}
    garbage_key, empty_key = f"garbage-{tag}".encode(), f"empty-{tag}".encode()

    service = run_eligibility()
    service.wait_serving()
    half = len(apps) // 2
    for app in apps[:half]:
        kafka.send_application(app, traces[app.application_id])
    kafka.send_raw(garbage_key, b"\xff\xfe\x00 this is not protobuf")
    kafka.send_raw(empty_key, b"")
    for app in apps[half:]:  # the same firms' partitions keep moving after the garbage
        kafka.send_application(app, traces[app.application_id])
    kafka.flush()
    kafka.collect({a.application_id for a in apps}, {garbage_key, empty_key})

    for app in apps:
        key, decision, headers = kafka.decisions[app.application_id]
        expected = decided(app)
        assert codec.decision_from_proto(decision) == expected
        assert key == app.firm.credit_code.encode()
        assert headers["ce_id"] == expected.decision_id.encode()
        assert headers["ce_type"] == cloudevents.TYPE_DECISION_MADE.encode()
        assert cloudevents.trace_id_of(list(headers.items())) == traces[app.application_id]
    letters = {key: (letter, headers) for key, letter, headers in kafka.dead_letters if key in (garbage_key, empty_key)}
    garbage, garbage_headers = letters[garbage_key]
    assert garbage.value == b"\xff\xfe\x00 this is not protobuf"
    assert garbage.source_topic == topics.APPLICATIONS.name
    assert garbage.consumer == "eligibility"
    # The shared encoding (subsidy/platform/dead_letters.py): the id names the consumer and the record's place.
    assert garbage_headers["ce_id"] == (
        f"eligibility:{topics.APPLICATIONS.name}/{garbage.source_partition}/{garbage.source_offset}".encode()
    )
    assert garbage_headers["ce_type"] == cloudevents.TYPE_DEAD_LETTER.encode()
    assert letters[empty_key][0].error.startswith("empty value")

    with urlopen_metrics(service) as text:
        assert 'subsidy_dead_letters_total{consumer="eligibility",topic="subsidy.applications.v1"}' in text

    code, seconds = service.terminate()
    assert code == 0, tail(service.log_path)
    assert seconds < 10


def urlopen_metrics(service: Eligibility):
    import contextlib
    import urllib.request

    @contextlib.contextmanager
    def opened():
        port = service.env["SUBSIDY_ELIGIBILITY_METRICS_PORT"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            yield response.read().decode()

    return opened()


def test_a_restart_loses_no_application_and_sigterm_exits_cleanly(run_eligibility, kafka):
    tag = uuid.uuid4().hex[:8]
    apps = demo_applications(tag)[:12]
    first, second = apps[:6], apps[6:]

    service = run_eligibility("first")
    service.wait_serving()
    for app in first:
        kafka.send_application(app, cloudevents.new_trace_id())
    kafka.flush()
    kafka.collect({a.application_id for a in first})
    code, seconds = service.terminate()
    assert code == 0, tail(service.log_path)
    assert seconds < 10, f"SIGTERM took {seconds:.1f}s"

    # Produced while nobody consumes: picked up from the committed offsets.
    for app in second:
        kafka.send_application(app, cloudevents.new_trace_id())
    kafka.flush()
    service = run_eligibility("second")
    service.wait_serving()
    kafka.collect({a.application_id for a in apps})
    for app in apps:
        assert codec.decision_from_proto(kafka.decisions[app.application_id][1]) == decided(app)
    # SIGTERM drained and committed: the first run's records were not decided again.
    kafka.drain(2.0)
    assert {kafka.decision_counts[a.application_id] for a in apps} == {1}
    code, _ = service.terminate()
    assert code == 0, tail(service.log_path)


def test_sigterm_in_the_middle_of_the_start_beside_a_running_member_still_exits_cleanly(run_eligibility, kafka):
    """SIGTERM as soon as gRPC answers, while faust is still starting, with
    another member in the group: the consumer subscribes and joins during the
    shutdown and the assignment reaches a stopping app. It must still exit 0,
    within the join's rebalance timeout (10 s), not hang until killed (faust
    closed the consumer from the wrong event loop then;
    docs/adr/0011-faust-in-eligibility.md). Three times: without the fix the
    hang came in about one such stop in forty."""
    member = run_eligibility("member")
    member.wait_serving()
    for n in range(3):
        starting = run_eligibility(f"starting-{n}")
        starting.wait_answering()
        code, seconds = starting.terminate(timeout=40)
        assert code == 0, tail(starting.log_path)
        assert seconds < 25, f"SIGTERM took {seconds:.1f}s:\n{tail(starting.log_path)}"
    code, _ = member.terminate()
    assert code == 0, tail(member.log_path)


def test_a_malformed_policy_is_refused_at_start_naming_the_file_and_field(tmp_path):
    import shutil

    policy_dir = tmp_path / "policy"
    shutil.copytree(ROOT / "policy", policy_dir)
    index = policy_dir / "policy.yaml"
    index.write_text(
        index.read_text(encoding="utf-8").replace("effective_from: 2022-01-01", "effective_from: 2022-02-30"),
        encoding="utf-8",
    )
    env = {**os.environ, "SUBSIDY_POLICY_DIR": str(policy_dir), "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    result = subprocess.run(
        [sys.executable, "-m", "subsidy.services.eligibility"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert f"{index}: effective_from: must be a date" in result.stderr


def test_after_a_crash_the_uncommitted_records_are_decided_again_under_the_same_ids(run_eligibility, kafka):
    tag = uuid.uuid4().hex[:8]
    apps = demo_applications(tag)[12:20]
    first, second = apps[:4], apps[4:]

    service = run_eligibility("crashing")
    service.wait_serving()
    for app in first:
        kafka.send_application(app, cloudevents.new_trace_id())
    kafka.flush()
    kafka.collect({a.application_id for a in first})
    service.kill()  # SIGKILL: no drain, no final commit
    for app in second:
        kafka.send_application(app, cloudevents.new_trace_id())
    kafka.flush()

    service = run_eligibility("after-crash")
    service.wait_serving()
    kafka.collect({a.application_id for a in apps}, timeout=60)
    for app in apps:
        _, decision, headers = kafka.decisions[app.application_id]
        assert headers["ce_id"] == f"{app.application_id}@{POLICY.version}".encode()
    # Replays (if any) are the same decision, so consumers downstream skip them.
    assert all(kafka.decision_counts[a.application_id] >= 1 for a in apps)
    code, _ = service.terminate()
    assert code == 0, tail(service.log_path)


def _max_message_bytes(bootstrap: str, value: str | None) -> None:
    """Override (``value``) or restore (None) subsidy.decisions.v1's
    max.message.bytes, and wait until the broker reports it."""
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    name, key = topics.DECISIONS.name, "max.message.bytes"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        change = value if value is not None else ("DELETE", None)
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs={key: change})], incremental=True)
        deadline = time.monotonic() + 30
        while True:
            described = admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name)], config_filter="modified"
            )
            current = next(iter(described.values()))[name].get(key)
            if (current is None) if value is None else (current is not None and current["value"] == value):
                return
            assert time.monotonic() < deadline, f"{key} of {name} still {current} after 30s"
            time.sleep(0.1)  # polling the broker's answer, not waiting for a guess
    finally:
        admin.close()


def _committed(bootstrap: str, group: str) -> dict[int, int | None]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        name = topics.APPLICATIONS.name
        return {p: consumer.committed(TopicPartition(name, p)) for p in consumer.partitions_for_topic(name)}
    finally:
        consumer.close()


def test_a_decision_the_broker_refuses_is_never_committed_past_and_is_decided_after_the_restart(
    run_eligibility, kafka, kafka_bootstrap
):
    """At least once with pipelined produces: the broker refuses the decisions
    (the topic's max.message.bytes is made smaller than a decision), the
    service crashes instead of moving on, the group's committed offset on each
    partition stays at or before the first refused record's offset, and the
    next run decides those records."""
    tag = uuid.uuid4().hex[:8]
    apps = demo_applications(tag)[20:30]
    warm, refused = apps[:3], apps[3:]

    service = run_eligibility("refused")
    service.wait_serving()
    for app in warm:
        kafka.send_application(app, cloudevents.new_trace_id())
    kafka.flush()
    kafka.collect({a.application_id for a in warm})

    _max_message_bytes(kafka_bootstrap, "64")
    try:
        first_offset: dict[int, int] = {}
        for app in refused:
            headers = cloudevents.headers(
                app.application_id,
                cloudevents.TYPE_APPLICATION_SUBMITTED,
                "/songjiang/subsidy/intake",
                cloudevents.new_trace_id(),
            )
            meta = kafka.producer.send(
                topics.APPLICATIONS.name,
                key=app.firm.credit_code.encode(),
                value=codec.application_to_proto(app).SerializeToString(),
                headers=headers,
            ).get(30)
            first_offset.setdefault(meta.partition, meta.offset)
        try:
            code = service.proc.wait(60)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"eligibility did not stop after the broker refused a decision:\n{tail(service.log_path)}"
            ) from None
        assert code != 0
        log_text = service.log_path.read_text(encoding="utf-8", errors="replace")
        assert "producing to subsidy.decisions.v1 failed; stopping" in log_text
        committed = _committed(kafka_bootstrap, "subsidy-eligibility")
        for partition, offset in first_offset.items():
            assert committed[partition] is not None and committed[partition] <= offset, (
                f"partition {partition}: committed {committed[partition]} past the refused record at {offset}"
            )
        assert not {a.application_id for a in refused} & set(kafka.decisions)
    finally:
        _max_message_bytes(kafka_bootstrap, None)

    service = run_eligibility("after-refusal")
    service.wait_serving()
    kafka.collect({a.application_id for a in refused}, timeout=60)
    for app in refused:
        assert codec.decision_from_proto(kafka.decisions[app.application_id][1]) == decided(app)
    code, _ = service.terminate()
    assert code == 0, tail(service.log_path)


def test_shadow_decisions_reach_only_the_shadow_topic_on_the_real_broker(kafka, kafka_bootstrap, tmp_path):
    """Issue 14, item 3: with SUBSIDY_ELIGIBILITY_SHADOW_VERSION the candidate's
    decisions are on subsidy.decisions.shadow.v1 and nowhere else: the
    decisions topic (which review, payout's ledger, intake and notify read)
    carries the adopted version's decisions only, once each; GetShadowDifference
    reports the difference over what was decided."""
    from subsidy.core.versions import load_versions
    from subsidy.v1 import policy_service_pb2, policy_service_pb2_grpc

    candidate = load_versions().get("fictional-final-2023").policy
    tag = uuid.uuid4().hex[:8]
    apps = demo_applications(tag)[10:22]  # 2024: the final is in force, 11.identifiers retired
    reader = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    name = topics.SHADOW_DECISIONS.name
    tps = [TopicPartition(name, p) for p in reader.partitions_for_topic(name)]
    reader.assign(tps)
    reader.seek_to_end()
    for tp in tps:
        reader.position(tp)
    service = Eligibility(kafka_bootstrap, tmp_path, "shadowing")
    service.env["SUBSIDY_ELIGIBILITY_SHADOW_VERSION"] = "fictional-final-2023"
    service.start()
    try:
        service.wait_serving()
        for app in apps:
            kafka.send_application(app, cloudevents.new_trace_id())
        kafka.flush()
        kafka.collect({a.application_id for a in apps})
        shadowed: dict[str, decision_pb2.Decision] = {}
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and len(shadowed) < len(apps):
            for records in reader.poll(timeout_ms=500).values():
                for r in records:
                    decision = decision_pb2.Decision.FromString(r.value)
                    if f"-{tag}-" in decision.application_id:
                        shadowed[decision.application_id] = decision
        kafka.drain(2.0)
        for app in apps:
            _, decision, _ = kafka.decisions[app.application_id]
            assert decision.policy_version == POLICY.version
            assert kafka.decision_counts[app.application_id] == 1
            assert codec.decision_from_proto(shadowed[app.application_id]) == review_rules.stamp(
                rules.evaluate(app, candidate), WORKFLOW.on(app.submitted_on)
            )
        with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
            stub = policy_service_pb2_grpc.PolicyServiceStub(channel)
            response = stub.GetShadowDifference(policy_service_pb2.GetShadowDifferenceRequest(), timeout=5)
        assert response.applications == len(apps)
        assert (response.adopted_version, response.shadow_version) == (POLICY.version, candidate.version)
        assert any(c.clause == "11.identifiers" and c.differences == 1 for c in response.clauses)
        code, _ = service.terminate()
        assert code == 0, tail(service.log_path)
    finally:
        service.kill()
        reader.close()
