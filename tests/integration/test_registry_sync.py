"""registry-sync on the real broker and database, against the FakeDataPlatform
test double over HTTP: the facts reach subsidy.firms.v1 (and a TopicRegistry
reading it), a bad change reaches subsidy.firms.v1.dlq with its reason, and a
kill -9 of the process in the middle of the feed loses no change and
publishes none twice."""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from subsidy.core.credit_code import CODE_CHARS, complete
from subsidy.platform.clock import FixedClock
from subsidy.platform.topic_registry import TopicRegistry
from subsidy.services.registry_sync.adapters.migrations import HISTORY
from subsidy.services.registry_sync.bootstrap import RegistrySyncApp
from subsidy.services.registry_sync.config import Settings
from subsidy.v1 import events_pb2, firm_facts_pb2
from subsidy_dev import free_port
from subsidy_dev.platform_fake import FakeDataPlatform

from .running import RunningApp, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TODAY = dt.date(2026, 3, 2)
TOKEN = "it-feed-token"


def new_code(rng: random.Random) -> str:
    org = "".join(rng.choice(CODE_CHARS[:10] + "ABCDEFGHJKLMNPQRTUWXY") for _ in range(8))
    return complete("91310117" + org)


def firms(n: int) -> list[dict[str, Any]]:
    rng = random.Random(uuid.uuid4().int)
    return [
        {
            "credit_code": new_code(rng),
            "name": f"测试企业{i}",
            "kinds": ["INDUSTRIAL"],
            "registered_in_district": True,
            "tax_registered_in_district": True,
            "independent_legal_person": True,
            "contacts": {"email": f"f{i}@example.cn", "phone": "", "webhook_url": ""},
        }
        for i in range(n)
    ]


def postgres_schema_url(postgres_url: str) -> str:
    schema = f"registry_sync_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in postgres_url else "?"
    return f"{postgres_url}{sep}options=-csearch_path%3D{schema}"


def migrate(url: str) -> None:
    from subsidy.platform import migrations
    from subsidy.platform.db import Database

    db = Database(url, store="registry_sync-migrate")
    try:
        migrations.upgrade(db, HISTORY)
    finally:
        db.close()


def read_topic(bootstrap: str, topic: str, keys: set[str]) -> list[Any]:
    """Every record of ``topic`` whose key is one of ``keys``, in partition order."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        partitions = wait_for(lambda: consumer.partitions_for_topic(topic), timeout=30)
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        end = consumer.end_offsets(assigned)
        out: list[Any] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < off for tp, off in end.items()):
            assert time.monotonic() < deadline, "the topic was not read to its end"
            for records in consumer.poll(timeout_ms=500).values():
                out.extend(r for r in records if r.key is not None and r.key.decode() in keys)
        return out
    finally:
        consumer.close()


def parse_facts(value: bytes) -> firm_facts_pb2.FirmFacts:
    facts = firm_facts_pb2.FirmFacts()
    facts.ParseFromString(value)
    return facts


def test_facts_reach_the_topic_and_a_topic_registry_and_bad_changes_the_dlq(kafka_bootstrap, postgres_url):
    fixtures = firms(3)
    a, b, c = (f["credit_code"] for f in fixtures)
    platform = FakeDataPlatform(fixtures, token=TOKEN, today=lambda: TODAY)
    platform.start()
    url = postgres_schema_url(postgres_url)
    migrate(url)
    port = free_port()
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        grpc_address=f"127.0.0.1:{port}",
        database_url=url,
        feed_url=platform.url,
        feed_token=TOKEN,
        poll_interval_s=0.2,
        page_size=2,
        metrics_address="",
        health_interval_s=0.2,
    )
    registry = TopicRegistry(kafka_bootstrap).start()
    try:
        with RunningApp(lambda: RegistrySyncApp(settings, clock=FixedClock(TODAY))):
            platform.certify(a, "DCMM_LEVEL", "3", "DCMM-IT-1", awarded_on="2026-03-01")
            platform.move_out(b)
            platform.change("REVENUE", c, {"year": 2025, "revenue_fen": 12.5})  # not whole fen: dead letter
            platform.change("REVENUE", c, {"year": 2025, "revenue_fen": 1_250_000_00})
            assert registry.wait_ready(60)

            def synced():
                fa, fb, fc = (registry.facts(code) for code in (a, b, c))
                return (
                    fa is not None
                    and [r.reference for r in fa.recognitions] == ["DCMM-IT-1"]
                    and fb is not None
                    and not fb.registered_in_district
                    and fc is not None
                    and [(r.year, r.revenue_fen) for r in fc.revenues] == [(2025, 1_250_000_00)]
                )

            wait_for(synced, timeout=60, interval=0.2)
            assert registry.firm(b).firm.registered_in_district is False
            assert registry.firm(a).contacts.email == "f0@example.cn"

            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            health = health_pb2_grpc.HealthStub(channel)
            answer = health.Check(health_pb2.HealthCheckRequest(service="subsidy.registry_sync"), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
            channel.close()

            letters = wait_for(lambda: read_topic(kafka_bootstrap, "subsidy.firms.v1.dlq", {c}), timeout=30)
            assert len(letters) == 1
            letter = events_pb2.DeadLetter()
            letter.ParseFromString(letters[0].value)
            assert letter.error.startswith("data.revenue_fen: must be a whole number")
            assert letter.consumer == "registry-sync" and b"12.5" in letter.value
        records = read_topic(kafka_bootstrap, "subsidy.firms.v1", {a, b, c})
        for code in (a, b, c):
            mine = [r for r in records if r.key.decode() == code]
            ids = {dict(r.headers)["ce_id"].decode() for r in mine}
            assert ids == {f"firm:{code}/r{n}" for n in range(1, len(ids) + 1)}, ids
            assert all(parse_facts(r.value).credit_code == code for r in mine)
            assert parse_facts(mine[-1].value).feed_sequence == platform.state()[code]["feed_sequence"]
    finally:
        registry.stop()
        platform.stop()


def test_kill_9_in_the_middle_of_the_feed_loses_no_change_and_applies_none_twice(kafka_bootstrap, tmp_path):
    fixtures = firms(12)
    codes = [f["credit_code"] for f in fixtures]
    platform = FakeDataPlatform(fixtures, token=TOKEN, today=lambda: TODAY)
    rng = random.Random(7)
    for i in range(240):
        code = rng.choice(codes)
        platform.change("REVENUE", code, {"year": 2000 + i % 26, "revenue_fen": rng.randrange(10**12)})
    platform.start()
    token_file = tmp_path / "feed.token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    db_path = tmp_path / "registry_sync.db"
    migrate(f"sqlite:///{db_path}")
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SUBSIDY_REGISTRY_SYNC_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
        "SUBSIDY_REGISTRY_SYNC_DATABASE_URL": f"sqlite:///{db_path}",
        "SUBSIDY_REGISTRY_SYNC_FEED_URL": platform.url,
        "SUBSIDY_REGISTRY_SYNC_FEED_TOKEN_FILE": str(token_file),
        "SUBSIDY_REGISTRY_SYNC_PAGE_SIZE": "3",
        "SUBSIDY_REGISTRY_SYNC_POLL_SECONDS": "0.1",
        "SUBSIDY_REGISTRY_SYNC_METRICS_ADDRESS": "",
        "SUBSIDY_REGISTRY_SYNC_TODAY": TODAY.isoformat(),
    }
    env.pop("SUBSIDY_REGISTRY_SYNC_FEED_TOKEN", None)

    def last_sequence() -> int:
        with sqlite3.connect(db_path) as conn:
            row = conn.execute("SELECT last_sequence FROM registry_sync_state").fetchone()
        return int(row[0]) if row else 0

    def start() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "subsidy.services.registry_sync"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "registry_sync.log", "ab"),
        )

    proc = start()
    try:
        wait_for(lambda: last_sequence() >= 30, timeout=60, interval=0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_at = last_sequence()
        assert killed_at < platform.high_water, "killed before the end of the feed"
        proc = start()

        def done() -> bool:
            with sqlite3.connect(db_path) as conn:
                pending = conn.execute("SELECT COUNT(*) FROM registry_sync_outbox WHERE published_at IS NULL")
                return last_sequence() == platform.high_water and pending.fetchone()[0] == 0

        wait_for(done, timeout=120, interval=0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        platform.stop()

    records = read_topic(kafka_bootstrap, "subsidy.firms.v1", set(codes))
    expected = platform.state()
    latest: dict[str, firm_facts_pb2.FirmFacts] = {}
    by_id: dict[str, bytes] = {}
    for record in records:
        ce_id = dict(record.headers)["ce_id"].decode()
        facts = parse_facts(record.value)
        # a redelivery carries the same id and the same facts; an id never names two different facts
        seen = by_id.setdefault(ce_id, record.value)
        assert parse_facts(seen).feed_sequence == facts.feed_sequence
        latest[facts.credit_code] = facts
    assert set(latest) == set(codes)
    for code in codes:
        want = expected[code]
        got = latest[code]
        assert got.feed_sequence == want["feed_sequence"], code
        assert sorted((r.year, r.revenue_fen) for r in got.revenues) == sorted(
            (r["year"], r["revenue_fen"]) for r in want["revenues"]
        ), code
    # one record per applied change-set: revisions of a firm are 1..n with no gap and no repeat
    for code in codes:
        revisions = sorted({int(i.rsplit("/r", 1)[1]) for i in by_id if i.startswith(f"firm:{code}/")})
        assert revisions == list(range(1, len(revisions) + 1)), code
