"""No tests here: helpers for the intake integration tests: run the service in-process (its
own event loop in a thread), a database per test (SQLite file or a fresh
PostgreSQL schema), and reading events back from Kafka."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import psycopg
from kafka import KafkaConsumer, TopicPartition

from subsidy.contracts import cloudevents
from subsidy.services.intake.bootstrap import IntakeApp
from subsidy.services.intake.config import Settings
from subsidy.v1 import application_pb2, intake_pb2_grpc

from .running import RunningApp, migrate, wait_for  # noqa: F401 - the tests import wait_for from here

ROOT = Path(__file__).resolve().parents[2]
FIRM = "91310117MA1K7D2E8N"  # 上海泗泾智造示范工厂有限公司, in demo/registry.json
PROVIDER = "91310117H2LTFY5G3W"


def new_id(prefix: str = "IT") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def database_url(kind: str, tmp_path: Path, postgres_url: str | None) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'intake.db'}"
    schema = f"intake_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in postgres_url else "?"
    return f"{postgres_url}{sep}options=-csearch_path%3D{schema}"


def settings(bootstrap: str, db_url: str, **overrides: Any) -> Settings:
    base = dict(
        kafka_bootstrap=bootstrap,
        grpc_address="127.0.0.1:0",
        database_url=db_url,
        registry_file=str(ROOT / "demo" / "registry.json"),
        directory_dir=str(ROOT / "policy" / "directory"),
        metrics_address="",
        projection_group=f"it-intake-projection-{uuid.uuid4().hex[:8]}",
        grace_s=1.0,
        health_interval_s=0.2,
    )
    base.update(overrides)
    return Settings(**base)


class RunningIntake(RunningApp):
    """``with RunningIntake(settings) as svc: svc.stub.SubmitApplication(...)``"""

    def __init__(self, settings: Settings):
        super().__init__(lambda: IntakeApp(settings))
        self.settings = settings

    def __enter__(self) -> RunningIntake:
        migrate("intake", self.settings.database_url)  # as the migration Job does before a rollout
        super().__enter__()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.app.port}")
        self.stub = intake_pb2_grpc.IntakeServiceStub(self.channel)
        return self

    def __exit__(self, *exc: object) -> None:
        self.channel.close()
        super().__exit__(*exc)


def events_with_id(
    bootstrap: str, topic: str, event_id: str, expect: int = 1, timeout: float = 20.0, settle: float = 0.0
) -> list:
    """Records of ``topic`` whose ce_id is ``event_id``: read from the
    beginning until ``expect`` arrived (then ``settle`` seconds more)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or ())]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        found: list = []
        deadline = time.monotonic() + timeout
        settle_until = None
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                found += [r for r in batch if cloudevents.as_dict(r.headers).get("ce_id") == event_id]
            if len(found) >= expect:
                settle_until = settle_until or time.monotonic() + settle
                if time.monotonic() >= settle_until:
                    break
        return found
    finally:
        consumer.close()


def rent_application(application_id: str, credit_code: str = FIRM, **firm: Any) -> Any:
    return application_pb2.Application(
        application_id=application_id,
        submitted_on="2025-02-20",
        firm=application_pb2.Firm(credit_code=credit_code, **firm),
        rent=application_pb2.RentClaim(
            recognized_key_platform=True, lease_start="2024-09-01", lease_end="2025-08-31", rent_paid_fen=480000000
        ),
    )
