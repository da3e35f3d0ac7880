"""The harness itself, against real Kafka and PostgreSQL (see conftest.py)."""

from __future__ import annotations

import asyncio
import time
import uuid

import psycopg
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from subsidy.contracts.topics import TopicSpec
from subsidy.platform.topics import ensure_topics
from subsidy_dev.kafka import KafkaBroker
from subsidy_dev.postgres import PostgresServer

pytestmark = pytest.mark.integration

FIRM = b"91310117MA1J3XXXXX"  # a credit code: the key that keeps a firm on one partition
HEADERS = [("ce_id", b"evt-1"), ("ce_type", b"subsidy.test"), ("content-type", b"application/protobuf")]


def unique(prefix: str) -> str:
    return f"it.{prefix}.{uuid.uuid4().hex[:10]}"


def consume(consumer: KafkaConsumer, count: int, timeout: float = 30.0) -> list:
    """Poll until ``count`` records arrived or ``timeout`` s passed."""
    records: list = []
    deadline = time.monotonic() + timeout
    while len(records) < count and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500, max_records=count - len(records)).values():
            records.extend(batch)
    return records


# ---------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------


def test_kafka_python_idempotent_roundtrip(kafka_bootstrap: str) -> None:
    topic = unique("kp")
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, partitions=3)])
    producer = KafkaProducer(
        bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all", client_id="it-producer"
    )
    try:
        meta = producer.send(topic, key=FIRM, value=b"\x08\x01payload", headers=HEADERS).get(timeout=30)
        producer.flush(30)
    finally:
        producer.close(10)
    assert meta.topic == topic and meta.offset == 0

    group = unique("group")
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    try:
        records = consume(consumer, 1)
        assert len(records) == 1, "the produced record was not consumed"
        record = records[0]
        assert (record.key, record.value, record.partition) == (FIRM, b"\x08\x01payload", meta.partition)
        assert list(record.headers) == HEADERS
        consumer.commit()
        tp = TopicPartition(topic, meta.partition)
        assert consumer.committed(tp) == 1
    finally:
        consumer.close()


def test_aiokafka_roundtrip(kafka_bootstrap: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka import TopicPartition as AioTopicPartition

    topic = unique("aio")
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, 3)])

    async def roundtrip() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all")
        await producer.start()
        try:
            meta = await producer.send_and_wait(topic, key=FIRM, value=b"hello", headers=HEADERS)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            group_id=unique("aiogroup"),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            msg = await asyncio.wait_for(consumer.getone(), timeout=30)
            assert (msg.key, msg.value, msg.partition, msg.offset) == (FIRM, b"hello", meta.partition, 0)
            assert list(msg.headers) == HEADERS
            await consumer.commit()
            assert await consumer.committed(AioTopicPartition(topic, msg.partition)) == 1
        finally:
            await consumer.stop()

    asyncio.run(roundtrip())


def test_ensure_topics_is_idempotent(kafka_bootstrap: str) -> None:
    compacted = unique("compacted")
    config = {"cleanup.policy": "compact", "retention.ms": 3_600_000}
    spec = TopicSpec(compacted, partitions=2, config=config)

    assert ensure_topics(kafka_bootstrap, [spec]) == {compacted: "created"}
    later = unique("later")
    assert ensure_topics(kafka_bootstrap, [spec, TopicSpec(later, 1)]) == {compacted: "exists", later: "created"}

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        assert admin.list_topics().count(compacted) == 1
        (described,) = admin.describe_topics([compacted])
        assert len(described["partitions"]) == 2
        assert all(p["leader_id"] >= 0 for p in described["partitions"])
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, compacted)])
        topic_configs = configs["topic"][compacted]
        assert topic_configs["cleanup.policy"]["value"] == "compact"
        assert topic_configs["retention.ms"]["value"] == "3600000"
        (later_described,) = admin.describe_topics([later])
        assert len(later_described["partitions"]) == 1
    finally:
        admin.close()


def test_broker_restart_keeps_committed_data(managed_kafka_broker: KafkaBroker) -> None:
    broker = managed_kafka_broker
    bootstrap = broker.bootstrap
    topic = unique("restart")
    ensure_topics(bootstrap, [TopicSpec(topic, partitions=1)])
    tp = TopicPartition(topic, 0)
    group = unique("restartgroup")

    producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    try:
        for i in range(10):
            producer.send(topic, key=FIRM, value=f"m{i}".encode())
        producer.flush(30)
    finally:
        producer.close(10)

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    )
    try:
        consumer.assign([tp])
        first = consume(consumer, 4)
        assert [r.value for r in first] == [b"m0", b"m1", b"m2", b"m3"]
        consumer.commit()
    finally:
        consumer.close()

    assert broker.restart() == bootstrap, "the broker must come back on the same address"

    # Every acknowledged record survived, and the group resumes where it committed.
    reader = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        reader.assign([tp])
        assert [r.value for r in consume(reader, 10)] == [f"m{i}".encode() for i in range(10)]
    finally:
        reader.close()
    resumed = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    )
    try:
        resumed.assign([tp])
        assert resumed.committed(tp) == 4
        assert [r.value for r in consume(resumed, 6)] == [f"m{i}".encode() for i in range(4, 10)]
    finally:
        resumed.close()


# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------


def test_postgres_rollback_leaves_nothing(postgres_url: str) -> None:
    table = f"it_rollback_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id text PRIMARY KEY, amount numeric NOT NULL)")
        with pytest.raises(RuntimeError, match="abort"), conn.transaction():
            conn.execute(f"INSERT INTO {table} VALUES ('g-1', 100000)")
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (1,)
            raise RuntimeError("abort the transaction")
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
    with psycopg.connect(postgres_url) as other:  # and no other session sees anything
        assert other.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
        other.execute(f"DROP TABLE {table}")


def test_postgres_commit_survives_restart(managed_postgres_server: PostgresServer) -> None:
    server = managed_postgres_server
    url = server.url
    table = f"it_commit_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url) as conn:  # the block commits on success
        conn.execute(f"CREATE TABLE {table} (id text PRIMARY KEY, amount numeric NOT NULL)")
        conn.execute(f"INSERT INTO {table} VALUES ('g-1', 100000), ('g-2', 250000)")

    assert server.restart() == url, "the server must come back on the same URL"

    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT id, amount FROM {table} ORDER BY id").fetchall()
        assert [(r[0], int(r[1])) for r in rows] == [("g-1", 100000), ("g-2", 250000)]
        conn.execute(f"DROP TABLE {table}")
