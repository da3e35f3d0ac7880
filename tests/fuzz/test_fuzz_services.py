"""Fuzzing the running services (real processes, a broker of this module's
own, SQLite stores): the gRPC APIs with raw payloads, and every consumer with
raw records. Expected, always: a clear error (INVALID_ARGUMENT and friends) or
a dead letter on the right DLQ topic, counted in subsidy_dead_letters_total;
never a crash (the process alive, health SERVING), never partial state.

And schema evolution: a newer producer's message (unknown fields) is
processed normally; an older producer's message (fields missing) is handled
as the contract says (defaults, or a validation error -> dead letter)."""

from __future__ import annotations

import re
import sqlite3
import time
import urllib.request
import uuid
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from integration.test_payout_support import rent_decision
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import OffsetSpec

from subsidy.contracts import cloudevents, codec, topics
from subsidy.v1 import (
    application_pb2,
    decision_pb2,
    events_pb2,
    intake_pb2,
    notice_pb2,
    payout_pb2,
    policy_service_pb2,
)
from subsidy_dev.kafka import KafkaBroker
from subsidy_dev.stack import LocalStack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FIRM = "91310117MA1K7D2E8N"  # in demo/registry.json, with contacts
FUZZ = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
FUZZ_KAFKA = settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
CLEAR = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


# -- the stack -------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    var = tmp_path_factory.mktemp("fuzz")
    with (
        KafkaBroker(var / "kafka") as broker,
        LocalStack(
            var / "stack",
            kafka_bootstrap=broker.bootstrap,
            services=("intake", "eligibility", "payout", "notify"),
            extra_env={"notify": {"SUBSIDY_NOTIFY_ATTEMPTS": "1"}, "payout": {"SUBSIDY_PAYOUT_TODAY": "2024-01-01"}},
        ) as running,
    ):
        yield running


@pytest.fixture(scope="module")
def channels(stack):
    opened = {}
    for name in ("intake", "eligibility", "payout"):
        opened[name] = grpc.insecure_channel(
            stack.address(name),
            options=[("grpc.max_send_message_length", 16 << 20), ("grpc.max_receive_message_length", 16 << 20)],
        )
    yield opened
    for ch in opened.values():
        ch.close()


@pytest.fixture(scope="module")
def producer(stack):
    p = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    yield p
    p.close(5)


def raw_call(channel, method: str, payload: bytes):
    """A call with the request as raw bytes (identity serializers)."""
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        return grpc.StatusCode.OK, call(payload, timeout=15)
    except grpc.RpcError as exc:
        return exc.code(), exc.details()


def assert_alive(stack, *names: str) -> None:
    for name in names or tuple(stack.services):
        svc = stack.services[name]
        assert svc.process.poll() is None, f"{name} crashed (exit {svc.process.returncode})"
        deadline = time.monotonic() + 15
        while not svc.serving():
            assert time.monotonic() < deadline, f"{name} not SERVING"
            time.sleep(0.2)


def intake_rows(stack) -> int:
    with sqlite3.connect(f"file:{stack.var_dir / 'intake.db'}?mode=ro", uri=True, timeout=10) as db:
        return (
            db.execute("SELECT count(*) FROM intake_applications").fetchone()[0]
            + db.execute("SELECT count(*) FROM intake_outbox").fetchone()[0]
        )


def payout_rows(stack) -> tuple:
    with sqlite3.connect(f"file:{stack.var_dir / 'payout.db'}?mode=ro", uri=True, timeout=10) as db:
        return tuple(
            db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("payout_inbox", "payout_grants", "payout_tranches", "payout_payments", "payout_usage")
        )


def metrics_url(stack, name: str) -> str:
    env = stack.services[name].env
    if name == "eligibility":
        return f"http://127.0.0.1:{env['SUBSIDY_ELIGIBILITY_METRICS_PORT']}/metrics"
    return f"http://{env[f'SUBSIDY_{name.upper()}_METRICS_ADDRESS']}/metrics"


def dead_letter_metric(stack, name: str, topic: str, consumer: str) -> float:
    text = urllib.request.urlopen(metrics_url(stack, name), timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if (
            line.startswith("subsidy_dead_letters_total{")
            and f'topic="{topic}"' in line
            and f'consumer="{consumer}"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def unknown_fields(*numbers: int) -> bytes:
    """Wire bytes of fields a newer producer added: a varint, a string, a nested message."""
    out = b""
    for n in numbers:
        out += _varint((n << 3) | 0) + _varint(7)
        out += _varint(((n + 1) << 3) | 2) + _varint(5) + b"newer"
        nested = _varint((1 << 3) | 2) + _varint(3) + b"abc"
        out += _varint(((n + 2) << 3) | 2) + _varint(len(nested)) + nested
    return out


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def rent_application(app_id: str) -> application_pb2.Application:
    return application_pb2.Application(
        application_id=app_id,
        submitted_on="2025-02-20",
        firm=application_pb2.Firm(credit_code=FIRM),
        rent=application_pb2.RentClaim(
            recognized_key_platform=True, lease_start="2024-09-01", lease_end="2025-08-31", rent_paid_fen=480000000
        ),
    )


def newer(message, *, nested: str | None = None):
    """The same message as a newer producer writes it: unknown fields at the top and in ``nested``."""
    out = type(message)()
    out.CopyFrom(message)
    if nested:
        getattr(out, nested).MergeFromString(unknown_fields(900))
    out.MergeFromString(unknown_fields(1000))
    return out


# -- gRPC -------------------------------------------------------------------------

SUBMIT = "/subsidy.v1.IntakeService/SubmitApplication"
EVALUATE = "/subsidy.v1.PolicyService/Evaluate"
GET_LEDGER = "/subsidy.v1.PayoutService/GetLedger"
LIST_TRANCHES = "/subsidy.v1.PayoutService/ListTranches"


@FUZZ
@given(payload=st.binary(max_size=300))
def test_random_bytes_to_every_rpc_get_a_clear_error_and_change_nothing(stack, channels, payload):
    before = intake_rows(stack)
    for channel, method in (
        (channels["intake"], SUBMIT),
        (channels["eligibility"], EVALUATE),
        (channels["payout"], GET_LEDGER),
        (channels["payout"], LIST_TRANCHES),
    ):
        code, details = raw_call(channel, method, payload)
        assert code in CLEAR | {grpc.StatusCode.OK}, f"{method}: {code} {details!r} for {payload!r}"
        if method == SUBMIT:
            assert code != grpc.StatusCode.OK, "random bytes made an acceptable application"
    assert intake_rows(stack) == before, "a refused submission left rows behind"


@pytest.mark.parametrize("method", [SUBMIT, EVALUATE, GET_LEDGER, LIST_TRANCHES])
def test_an_undecodable_request_is_invalid_argument(stack, channels, method):
    name = {SUBMIT: "intake", EVALUATE: "eligibility"}.get(method, "payout")
    code, details = raw_call(channels[name], method, b"\xff\xff\xff")
    assert_alive(stack, name)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)


def _valid_submit(app_id: str) -> bytes:
    return intake_pb2.SubmitApplicationRequest(application=rent_application(app_id)).SerializeToString()


@FUZZ
@given(cut=st.integers(min_value=0, max_value=10_000), data=st.data())
def test_truncated_submissions_are_refused_clearly_or_are_a_valid_prefix(stack, channels, cut, data):
    full = _valid_submit(f"FZ-T-{uuid.uuid4().hex[:8]}")
    payload = full[: cut % len(full)]
    before = intake_rows(stack)
    code, details = raw_call(channels["intake"], SUBMIT, payload)
    assert code in CLEAR, f"{code} {details!r} for a truncated request ({len(payload)}/{len(full)} bytes)"
    assert intake_rows(stack) == before


@pytest.mark.parametrize("method", [SUBMIT, EVALUATE, GET_LEDGER, LIST_TRANCHES])
def test_oversized_requests_are_refused_as_resource_exhausted(stack, channels, method):
    name = {SUBMIT: "intake", EVALUATE: "eligibility"}.get(method, "payout")
    # 5 MiB: over intake's and payout's 1 MiB bound and over grpc's 4 MiB default (eligibility)
    big = _valid_submit("FZ-BIG") + unknown_fields(2000) + b"\x82\x7d" + _varint(5 << 20) + b"x" * (5 << 20)
    code, details = raw_call(channels[name], method, big)
    assert code in {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT}, (code, details)
    assert_alive(stack, name)


WRONG_TYPES = {
    "decision": decision_pb2.Decision(decision_id="d@v", application_id="x", credit_code=FIRM, outcome="ELIGIBLE"),
    "payout_event": payout_pb2.PayoutEvent(event_id="grant:x", grant_recorded=payout_pb2.GrantRecorded()),
    "ledger_request": payout_pb2.GetLedgerRequest(credit_code=FIRM),
    "list_request": payout_pb2.ListTranchesRequest(due_from="2024-01-01", page_size=3),
    "evaluate_request": policy_service_pb2.EvaluateRequest(application=rent_application("FZ-W")),
    "submit_request": intake_pb2.SubmitApplicationRequest(application=rent_application("FZ-W")),
    "dead_letter": events_pb2.DeadLetter(source_topic="t", value=b"\x00\x01", error="e"),
}


@pytest.mark.parametrize("kind", sorted(WRONG_TYPES))
@pytest.mark.parametrize("method", [SUBMIT, EVALUATE, GET_LEDGER, LIST_TRANCHES])
def test_a_valid_message_of_another_type_gets_a_clear_answer(stack, channels, method, kind):
    name = {SUBMIT: "intake", EVALUATE: "eligibility"}.get(method, "payout")
    before = intake_rows(stack)
    code, details = raw_call(channels[name], method, WRONG_TYPES[kind].SerializeToString())
    assert code in CLEAR | {grpc.StatusCode.OK}, f"{method} <- {kind}: {code} {details!r}"
    if method == SUBMIT and code != grpc.StatusCode.OK:
        assert intake_rows(stack) == before
    assert_alive(stack, name)


def test_submit_unknown_fields_from_a_newer_client_are_ignored_and_the_payload_is_the_same(stack, channels):
    app_id = f"FZ-N-{uuid.uuid4().hex[:8]}"
    plain = intake_pb2.SubmitApplicationRequest(application=rent_application(app_id))
    evolved = intake_pb2.SubmitApplicationRequest()
    evolved.application.CopyFrom(newer(rent_application(app_id), nested="rent"))
    evolved.MergeFromString(unknown_fields(3000))
    assert len(evolved.SerializeToString()) > len(plain.SerializeToString())
    code, reply = raw_call(channels["intake"], SUBMIT, evolved.SerializeToString())
    assert code == grpc.StatusCode.OK, reply
    first = intake_pb2.SubmitApplicationResponse.FromString(reply)
    assert not first.duplicate
    code, reply = raw_call(channels["intake"], SUBMIT, plain.SerializeToString())
    assert code == grpc.StatusCode.OK, reply
    again = intake_pb2.SubmitApplicationResponse.FromString(reply)
    assert again.duplicate and again.receipt.payload_sha256 == first.receipt.payload_sha256


@pytest.mark.parametrize(
    "case",
    [
        "unknown_kind",
        "unknown_recognition",
        "no_claim",
        "no_application",
        "no_firm",
        "impossible_date",
        "negative_amount",
    ],
)
def test_submit_contract_violations_are_invalid_argument_and_store_nothing(stack, channels, case):
    app = rent_application(f"FZ-V-{uuid.uuid4().hex[:8]}")
    request = intake_pb2.SubmitApplicationRequest(application=app)
    payload = None
    if case == "unknown_kind":
        # an enumerated value (firm kinds are enumerated strings) no version of the contract knows
        request.application.firm.kinds.append("MARTIAN_FACTORY")
    elif case == "unknown_recognition":
        request.application.ClearField("rent")
        request.application.benchmark_recognition.recognition_id = "R-1"
        request.application.benchmark_recognition.recognition = "galactic_smart_workshop"
    elif case == "negative_amount":
        request.application.rent.rent_paid_fen = -1
    elif case == "no_claim":
        request.application.ClearField("rent")
    elif case == "no_application":
        payload = b""
    elif case == "no_firm":
        request.application.ClearField("firm")
    elif case == "impossible_date":
        request.application.rent.lease_end = "2025-02-30"
    before = intake_rows(stack)
    code, details = raw_call(channels["intake"], SUBMIT, request.SerializeToString() if payload is None else payload)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (case, code, details)
    assert intake_rows(stack) == before


@FUZZ
@given(
    credit_code=st.text(max_size=30),
    due_from=st.text(max_size=12),
    page_size=st.integers(-5, 1000),
    status=st.integers(0, 50),
    token=st.text(max_size=20),
)
def test_payout_queries_with_arbitrary_fields_answer_ok_or_invalid_argument(
    stack, channels, credit_code, due_from, page_size, status, token
):
    ledger = payout_pb2.GetLedgerRequest(credit_code=credit_code).SerializeToString()
    code, details = raw_call(channels["payout"], GET_LEDGER, ledger)
    assert code in {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}, (code, details)
    listing = payout_pb2.ListTranchesRequest(due_from=due_from, page_size=page_size, page_token=token)
    listing.statuses.append(status)
    code, details = raw_call(channels["payout"], LIST_TRANCHES, listing.SerializeToString())
    assert code in {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}, (code, details)


@FUZZ
@given(
    app=st.dictionaries(
        st.sampled_from(["application_id", "submitted_on", "firm", "rent", "dcmm", "decided_on"]),
        st.one_of(st.text(max_size=12), st.integers(), st.dictionaries(st.text(max_size=8), st.integers(), max_size=3)),
        max_size=5,
    )
)
def test_evaluate_never_fails_with_anything_but_a_clear_error(stack, channels, app):
    request = policy_service_pb2.EvaluateRequest()
    try:
        json_format.ParseDict({"application": app}, request, ignore_unknown_fields=True)
    except json_format.ParseError:
        assume(False)
    code, details = raw_call(channels["eligibility"], EVALUATE, request.SerializeToString())
    assert code in {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}, (code, details)


def test_every_service_is_still_serving_after_the_grpc_fuzzing(stack):
    assert_alive(stack)


# -- consumers ---------------------------------------------------------------------

# topic -> [(service, DLQ topic, consumer label)] that must dead-letter garbage on it
CONSUMERS = {
    topics.APPLICATIONS.name: [("eligibility", topics.APPLICATIONS_DLQ.name, "eligibility")],
    topics.DECISIONS.name: [
        ("payout", topics.DECISIONS_DLQ.name, "payout"),
        ("intake", topics.DECISIONS_DLQ.name, "intake-projection"),
        ("notify", topics.NOTIFICATIONS_DLQ.name, "notify"),
    ],
    topics.PAYOUTS.name: [
        ("intake", topics.PAYOUTS_DLQ.name, "intake-payout-projection"),
        ("notify", topics.NOTIFICATIONS_DLQ.name, "notify"),
    ],
    topics.PAYMENTS.name: [("payout", topics.PAYMENTS_DLQ.name, "payout-payments")],
    topics.NOTICES.name: [
        ("payout", topics.NOTICES_DLQ.name, "payout-notices"),
        ("notify", topics.NOTIFICATIONS_DLQ.name, "notify"),
    ],
}


def _parses_valid(topic: str, value: bytes | None) -> bool:
    """Would the contract accept these bytes? (then they are not garbage)"""
    if not value:
        return False
    try:
        if topic == topics.APPLICATIONS.name:
            codec.application_from_proto(application_pb2.Application.FromString(value))
        elif topic == topics.DECISIONS.name:
            codec.decision_from_proto(decision_pb2.Decision.FromString(value))
        elif topic == topics.PAYOUTS.name:
            e = payout_pb2.PayoutEvent.FromString(value)
            return bool(e.event_id and e.WhichOneof("event"))
        elif topic == topics.NOTICES.name:
            n = notice_pb2.NoticeEvent.FromString(value)
            return bool(n.event_id and n.WhichOneof("event"))
        else:
            p = payout_pb2.PaymentConfirmed.FromString(value)
            return bool(p.payment_id and p.tranche_id and p.credit_code and p.amount_fen > 0)
    except Exception:  # noqa: BLE001 - anything refused is garbage
        return False
    return True


def produce(producer, topic: str, value: bytes | None, key: bytes = FIRM.encode(), event_id: str | None = None):
    headers = cloudevents.headers(
        event_id or f"fuzz-{uuid.uuid4().hex[:10]}",
        "cn.gov.songjiang.subsidy.fuzz.v1",
        "/tests/fuzz",
        cloudevents.new_trace_id(),
    )
    md = producer.send(topic, key=key, value=value, headers=headers).get(30)
    return md.partition, md.offset


def dead_letters(bootstrap: str, dlq: str) -> list:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        tp = TopicPartition(dlq, 0)
        end = admin.list_partition_offsets({tp: OffsetSpec.LATEST})[tp].offset
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        out = []
        deadline = time.monotonic() + 20
        while consumer.position(tp) < end and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300).values():
                out += [events_pb2.DeadLetter.FromString(r.value) for r in batch if r.offset < end]
        return out
    finally:
        consumer.close()
        admin.close()


def wait_dead_lettered(
    stack, topic: str, origins: list[tuple[int, int]], timeout: float = 60.0, consumers: list | None = None
) -> None:
    """Until every consumer of ``topic`` dead-lettered every record at ``origins``."""
    consumers = consumers or CONSUMERS[topic]
    want = {(dlq, consumer, p, o) for _, dlq, consumer in consumers for p, o in origins}
    deadline = time.monotonic() + timeout
    while True:
        seen = set()
        for dlq in {d for _, d, _ in consumers}:
            for dl in dead_letters(stack.kafka_bootstrap, dlq):
                if dl.source_topic == topic:
                    seen.add((dlq, dl.consumer, dl.source_partition, dl.source_offset))
        missing = want - seen
        if not missing:
            return
        assert time.monotonic() < deadline, f"not dead-lettered within {timeout}s: {sorted(missing)[:6]}"
        time.sleep(0.5)


def _garbage_round(
    stack, producer, topic: str, values: list[bytes | None], consumers: list | None = None, timeout: float = 60.0
) -> None:
    consumers = consumers or CONSUMERS[topic]
    metric_before = {(n, c): dead_letter_metric(stack, n, topic, c) for n, _, c in consumers}
    rows_before = payout_rows(stack)
    origins = [produce(producer, topic, v) for v in values]
    wait_dead_lettered(stack, topic, origins, timeout=timeout, consumers=consumers)
    for (name, consumer), before in metric_before.items():
        deadline = time.monotonic() + 10
        while dead_letter_metric(stack, name, topic, consumer) < before + len(values):
            assert time.monotonic() < deadline, (
                f"{name}: subsidy_dead_letters_total{{topic={topic},consumer={consumer}}} did not grow by {len(values)}"
            )
            time.sleep(0.3)
    assert payout_rows(stack) == rows_before, "garbage left rows in the payout ledger"
    assert_alive(stack)


def _real(topic: str) -> bytes:
    if topic == topics.APPLICATIONS.name:
        a = rent_application("FZ-R")
        return a.SerializeToString()
    if topic == topics.DECISIONS.name:
        return codec.decision_to_proto(rent_decision("FZ-R", FIRM)).SerializeToString()
    if topic == topics.PAYOUTS.name:
        return payout_pb2.PayoutEvent(
            event_id="grant:FZ-R",
            grant_recorded=payout_pb2.GrantRecorded(
                application_id="FZ-R", credit_code=FIRM, granted_fen=100, decision_id="FZ-R@v"
            ),
        ).SerializeToString()
    if topic == topics.NOTICES.name:
        return _line_payable("FZ-R@v", "FZ-R").SerializeToString()
    return payout_pb2.PaymentConfirmed(
        payment_id="P-FZ", tranche_id="FZ-R/tranche-0", credit_code=FIRM, amount_fen=100, paid_on="2024-01-01"
    ).SerializeToString()


def _line_payable(decision_id: str, application_id: str) -> notice_pb2.NoticeEvent:
    """The review service's LinePayable: the public notice closed clean."""
    return notice_pb2.NoticeEvent(
        event_id=f"payable:{decision_id}",
        line_payable=notice_pb2.LinePayable(
            decision_id=decision_id,
            application_id=application_id,
            credit_code=FIRM,
            notice_id="N-FZ",
            payable_on="2025-02-20",
        ),
    )


@pytest.mark.parametrize("topic", sorted(CONSUMERS))
@FUZZ_KAFKA
@given(data=st.data())
def test_garbage_on_every_topic_is_dead_lettered_by_every_consumer_without_a_crash(stack, producer, topic, data):
    real = _real(topic)
    values = data.draw(
        st.lists(
            st.one_of(
                st.binary(max_size=200),
                st.integers(1, len(real) - 1).map(lambda n: real[:n]),  # truncated real message
                st.binary(min_size=1, max_size=40).map(lambda b: real + b),  # real + trailing junk
            ),
            min_size=1,
            max_size=4,
        )
    )
    values = [v for v in values if not _parses_valid(topic, v)]
    assume(values)
    _garbage_round(stack, producer, topic, values)


@pytest.mark.parametrize("topic", sorted(CONSUMERS))
def test_an_empty_value_and_a_tombstone_are_dead_lettered(stack, producer, topic):
    _garbage_round(stack, producer, topic, [b"", None])


# -- schema evolution ----------------------------------------------------------------


def _decisions_for(bootstrap: str, application_id: str, timeout: float = 60.0) -> list:
    consumer = KafkaConsumer(
        topics.DECISIONS.name,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    try:
        deadline = time.monotonic() + timeout
        found = []
        while not found and time.monotonic() < deadline:
            for r in consumer:
                try:
                    d = decision_pb2.Decision.FromString(r.value or b"")
                except Exception:  # noqa: BLE001 - the fuzz tests' garbage is on this topic too
                    continue
                if d.application_id == application_id:
                    found.append(d)
        return found
    finally:
        consumer.close()


def test_an_application_from_a_newer_producer_is_decided_normally(stack, producer):
    app_id = f"FZ-E-{uuid.uuid4().hex[:8]}"
    value = newer(rent_application(app_id), nested="rent").SerializeToString()
    produce(producer, topics.APPLICATIONS.name, value, event_id=app_id)
    decisions = _decisions_for(stack.kafka_bootstrap, app_id)
    assert decisions and decisions[0].outcome in ("ELIGIBLE", "INELIGIBLE", "NEEDS_REVIEW", "REFERRED")


def _wait_payout_grant(stack, application_id: str, timeout: float = 60.0) -> tuple:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(f"file:{stack.var_dir / 'payout.db'}?mode=ro", uri=True, timeout=10) as db:
            row = db.execute(
                "SELECT granted_fen, outcome FROM payout_grants WHERE application_id = ?", (application_id,)
            ).fetchone()
        if row:
            return row
        time.sleep(0.3)
    raise AssertionError(f"no grant for {application_id} within {timeout}s")


def _mails_for(stack, event_id: str, timeout: float = 60.0) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [
            p
            for p in stack.mail_dir.rglob("*.eml")
            if event_id.encode() in p.read_bytes().replace(b"\r\n ", b" ")
            or event_id.encode() in re.sub(rb"\r?\n[ \t]+", b"", p.read_bytes())
        ]
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"no e-mail for {event_id} within {timeout}s")


def test_a_decision_from_a_newer_producer_is_applied_and_notified_normally(stack, producer):
    app_id = f"FZ-E-{uuid.uuid4().hex[:8]}"
    decision = codec.decision_to_proto(rent_decision(app_id, FIRM, 1_000_000))
    decision.entitlements[0].MergeFromString(unknown_fields(800))
    decision.MergeFromString(unknown_fields(1000))
    produce(producer, topics.DECISIONS.name, decision.SerializeToString(), event_id=decision.decision_id)
    granted, outcome = _wait_payout_grant(stack, app_id)
    assert outcome == "ELIGIBLE" and granted > 0
    _mails_for(stack, f"decision:{decision.decision_id}")


def test_payout_events_and_payments_from_a_newer_producer_are_processed_normally(stack, producer):
    app_id = f"FZ-E-{uuid.uuid4().hex[:8]}"
    decision = codec.decision_to_proto(rent_decision(app_id, FIRM, 1_000_000, shares=(100,)))
    produce(producer, topics.DECISIONS.name, decision.SerializeToString(), event_id=decision.decision_id)
    granted, _ = _wait_payout_grant(stack, app_id)
    tranche_id = f"{app_id}/tranche-0"
    # Tranches only after the grant's notice closed clean (ADR 0013); a line from a newer producer too.
    produce(producer, topics.NOTICES.name, newer(_line_payable(decision.decision_id, app_id)).SerializeToString())
    deadline = time.monotonic() + 60
    while True:
        with sqlite3.connect(f"file:{stack.var_dir / 'payout.db'}?mode=ro", uri=True, timeout=10) as db:
            scheduled = db.execute("SELECT 1 FROM payout_tranches WHERE tranche_id = ?", (tranche_id,)).fetchone()
        if scheduled:
            break
        assert time.monotonic() < deadline, "the newer producer's LinePayable did not schedule the tranche"
        time.sleep(0.3)
    payment = payout_pb2.PaymentConfirmed(
        payment_id=f"P-{app_id}", tranche_id=tranche_id, credit_code=FIRM, amount_fen=granted, paid_on="2025-03-01"
    )
    produce(producer, topics.PAYMENTS.name, newer(payment).SerializeToString())
    deadline = time.monotonic() + 60
    while True:
        with sqlite3.connect(f"file:{stack.var_dir / 'payout.db'}?mode=ro", uri=True, timeout=10) as db:
            status = db.execute("SELECT status FROM payout_tranches WHERE tranche_id = ?", (tranche_id,)).fetchone()
        if status and status[0] == "PAID":
            break
        assert time.monotonic() < deadline, f"the newer producer's payment was not applied: {status}"
        time.sleep(0.3)
    # a payout event with unknown fields (here: one finance's tooling re-published) is told normally
    event = payout_pb2.PayoutEvent(
        event_id=f"cancelled:{app_id}/tranche-9",
        tranche_cancelled=payout_pb2.TrancheCancelled(
            tranche_id=f"{app_id}/tranche-9", credit_code=FIRM, amount_fen=1, reason="fuzz", cancelled_on="2025-03-02"
        ),
    )
    event.tranche_cancelled.MergeFromString(unknown_fields(700))
    event.MergeFromString(unknown_fields(1000))
    produce(producer, topics.PAYOUTS.name, event.SerializeToString(), event_id=event.event_id)
    _mails_for(stack, event.event_id)


@pytest.mark.parametrize(
    "case",
    [
        "decision_without_id",
        "decision_without_outcome",
        "application_without_claim",
        "payment_without_amount",
        "payout_event_without_oneof",
    ],
)
def test_a_message_from_an_older_producer_missing_required_fields_is_dead_lettered(stack, producer, case):
    app_id = f"FZ-O-{uuid.uuid4().hex[:8]}"
    if case.startswith("decision"):
        d = codec.decision_to_proto(rent_decision(app_id, FIRM))
        d.ClearField("decision_id" if case == "decision_without_id" else "outcome")
        topic, value = topics.DECISIONS.name, d.SerializeToString()
    elif case == "application_without_claim":
        a = rent_application(app_id)
        a.ClearField("rent")
        topic, value = topics.APPLICATIONS.name, a.SerializeToString()
    elif case == "payment_without_amount":
        topic = topics.PAYMENTS.name
        value = payout_pb2.PaymentConfirmed(
            payment_id=f"P-{app_id}", tranche_id=f"{app_id}/tranche-0", credit_code=FIRM, paid_on="2025-03-01"
        ).SerializeToString()
    else:
        topic, value = topics.PAYOUTS.name, payout_pb2.PayoutEvent(event_id=f"grant:{app_id}").SerializeToString()
    _garbage_round(stack, producer, topic, [value])


PAYOUT_ONLY = [("payout", topics.DECISIONS_DLQ.name, "payout")]


def test_an_older_decision_without_tranche_shares_is_dead_lettered_by_payout_as_documented(stack, producer):
    """docs/payout.md: shares not adding up to 100 -> subsidy.decisions.v1.dlq, nothing written
    (the codec accepts the message; the ledger needs the shares to schedule tranches)."""
    app_id = f"FZ-O-{uuid.uuid4().hex[:8]}"
    d = codec.decision_to_proto(rent_decision(app_id, FIRM, 500_000, shares=(100,)))
    d.ClearField("tranche_shares_percent")
    _garbage_round(stack, producer, topics.DECISIONS.name, [d.SerializeToString()], consumers=PAYOUT_ONLY)


def test_an_older_decision_without_reasons_takes_the_default_and_is_applied(stack, producer):
    """An optional field missing (no reasons): the default (empty) is taken and the ledger applies it."""
    app_id = f"FZ-O-{uuid.uuid4().hex[:8]}"
    d = codec.decision_to_proto(rent_decision(app_id, FIRM, 500_000, shares=(100,)))
    d.ClearField("reasons")
    codec.decision_from_proto(d)  # the contract accepts it
    produce(producer, topics.DECISIONS.name, d.SerializeToString(), event_id=d.decision_id)
    granted, _ = _wait_payout_grant(stack, app_id)
    assert granted == 500_000


def test_a_decision_with_an_unknown_limit_enum_value_is_dead_lettered_by_payout(stack, producer):
    """A newer producer's enum value (LimitKind 9) the ledger cannot apply: a dead letter, nothing written."""
    d = codec.decision_to_proto(rent_decision(f"FZ-O-{uuid.uuid4().hex[:8]}", FIRM, 500_000))
    d.entitlements[0].limit = 9
    _garbage_round(stack, producer, topics.DECISIONS.name, [d.SerializeToString()], consumers=PAYOUT_ONLY)


def test_intake_payout_dead_letters_name_the_payout_projection(stack, producer):
    right = [("intake", topics.PAYOUTS_DLQ.name, "intake-payout-projection")]
    _garbage_round(stack, producer, topics.PAYOUTS.name, [b"\xff\xff"], consumers=right, timeout=15)
