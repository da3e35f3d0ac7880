"""The operations service on the real broker and PostgreSQL: a dead letter on
subsidy.applications.v1.dlq is stored once (a second reader of the same DLQ
into the same database adds nothing), listed decoded, replayed to
subsidy.applications.v1 with its own key, value and event id (plus the
letter it came from), once: a second replay, and the loser of two replays at
once, are FAILED_PRECONDITION; only an OPERATOR may replay."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import types
import uuid

import grpc
import psycopg
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from subsidy.contracts import cloudevents, topics
from subsidy.platform import dead_letters
from subsidy.platform.clock import FixedClock
from subsidy.services.operations.adapters.migrations import HISTORY
from subsidy.services.operations.bootstrap import OperationsApp
from subsidy.services.operations.config import Settings
from subsidy.v1 import application_pb2, operations_pb2, operations_pb2_grpc

from .running import RunningApp, wait_for

pytestmark = pytest.mark.integration

NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
FIRM = "91310117313Q6C3D6G"


def schema_url(postgres_url: str) -> str:
    from subsidy.platform import migrations
    from subsidy.platform.db import Database

    schema = f"operations_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in postgres_url else "?"
    url = f"{postgres_url}{sep}options=-csearch_path%3D{schema}"
    db = Database(url, store="operations-migrate")
    try:
        migrations.upgrade(db, HISTORY)
    finally:
        db.close()
    return url


def put_letter(bootstrap: str, app_id: str) -> bytes:
    from subsidy.platform import topics as platform_topics

    platform_topics.ensure_all(bootstrap, timeout=30)
    app = application_pb2.Application(application_id=app_id, submitted_on="2026-11-20")
    app.firm.credit_code = FIRM
    value = app.SerializeToString()
    record = types.SimpleNamespace(
        topic=topics.APPLICATIONS.name,
        partition=3,
        offset=42,
        key=FIRM.encode(),
        value=value,
        headers=cloudevents.headers(app_id, cloudevents.TYPE_APPLICATION_SUBMITTED, "it", "a" * 32, time=NOW),
    )
    letter = dead_letters.encode(
        record,
        f"unexpected error in 3 attempts: it {app_id}",
        dlq_topic=topics.APPLICATIONS_DLQ.name,
        consumer="eligibility",
        source="it",
        trace_id=None,
        now=NOW,
    )
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        producer.send(letter.topic, key=letter.key, value=letter.value, headers=letter.headers).get(timeout=30)
    finally:
        producer.close(5)
    return value


def settings(bootstrap: str, url: str, prefix: str) -> Settings:
    return Settings(
        kafka_bootstrap=bootstrap,
        grpc_address="127.0.0.1:0",
        database_url=url,
        group_prefix=prefix,
        metrics_address="off",
        stall_s=60,
    )


def as_(role: str, subject: str = "ops-it") -> tuple:
    return (("x-subsidy-subject", subject), ("x-subsidy-role", role))


def find(stub, marker: str):
    reply = stub.ListDeadLetters(
        operations_pb2.ListDeadLettersRequest(topic=topics.APPLICATIONS_DLQ.name, page_size=200),
        metadata=as_("OPERATOR"),
        timeout=10,
    )
    return [letter for letter in reply.letters if marker in letter.reason]


def test_store_once_replay_once(kafka_bootstrap, postgres_url):
    url = schema_url(postgres_url)
    app_id = f"IT-OPS-{uuid.uuid4().hex[:8]}"
    value = put_letter(kafka_bootstrap, app_id)
    prefix = f"it-ops-{uuid.uuid4().hex[:6]}"
    first = RunningApp(lambda: OperationsApp(settings(kafka_bootstrap, url, prefix), clock=FixedClock(NOW.date())))
    with first as svc, grpc.insecure_channel(f"127.0.0.1:{svc.app.port}") as channel:
        stub = operations_pb2_grpc.OperationsServiceStub(channel)
        (letter,) = wait_for(lambda: find(stub, app_id), timeout=120)  # a fresh broker: first joins are slow
        assert letter.source_topic == topics.APPLICATIONS.name and letter.source_offset == 42
        assert letter.attempts == 3 and letter.key == FIRM and app_id in letter.value_json
    # A second reader (another group) of the same DLQ into the same database stores nothing new.
    other = f"it-ops-{uuid.uuid4().hex[:6]}"
    second = RunningApp(lambda: OperationsApp(settings(kafka_bootstrap, url, other), clock=FixedClock(NOW.date())))
    with second as svc, grpc.insecure_channel(f"127.0.0.1:{svc.app.port}") as channel:
        stub = operations_pb2_grpc.OperationsServiceStub(channel)
        group = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=f"{other}-{topics.APPLICATIONS_DLQ.name}")
        try:
            tp = TopicPartition(topics.APPLICATIONS_DLQ.name, 0)
            end = group.end_offsets([tp])[tp]
            wait_for(lambda: (group.committed(tp) or 0) >= end, timeout=60, interval=0.5)
        finally:
            group.close()
        assert len(find(stub, app_id)) == 1

        # Not an operator: refused, nothing published.
        with pytest.raises(grpc.RpcError) as refused:
            stub.ReplayDeadLetter(
                operations_pb2.ReplayDeadLetterRequest(letter_id=letter.letter_id),
                metadata=as_("REVIEWER"),
                timeout=10,
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

        reader = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
        parts = [TopicPartition(topics.APPLICATIONS.name, p) for p in range(topics.APPLICATIONS.partitions)]
        reader.assign(parts)
        for tp, offset in reader.end_offsets(parts).items():
            reader.seek(tp, offset)
        try:
            # Two replays at once: one publishes, the other is refused.
            def replay() -> grpc.StatusCode:
                try:
                    stub.ReplayDeadLetter(
                        operations_pb2.ReplayDeadLetterRequest(letter_id=letter.letter_id, reason="it"),
                        metadata=as_("OPERATOR"),
                        timeout=10,
                    )
                    return grpc.StatusCode.OK
                except grpc.RpcError as exc:
                    return exc.code()

            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                codes = sorted(c.name for c in pool.map(lambda _: replay(), range(2)))
            assert codes == ["FAILED_PRECONDITION", "OK"]

            def replayed():
                batch = reader.poll(timeout_ms=500)
                return [r for records in batch.values() for r in records if r.value == value] or None

            (record,) = wait_for(replayed, timeout=60, interval=0)
            headers = dict(record.headers)
            assert record.topic == topics.APPLICATIONS.name and record.key == FIRM.encode()
            assert headers["ce_id"] == app_id.encode() and headers["subsidy_replay_of"] == letter.letter_id.encode()
            later = [r for _ in range(4) for rs in reader.poll(timeout_ms=500).values() for r in rs]
            assert not [r for r in later if r.value == value], "published once"
        finally:
            reader.close()
        got = stub.GetDeadLetter(
            operations_pb2.GetDeadLetterRequest(letter_id=letter.letter_id), metadata=as_("OPERATOR"), timeout=10
        )
        assert got.letter.state == "REPLAYED" and [a.action for a in got.audit] == ["REPLAYED"]
        assert got.audit[0].subject == "ops-it"
