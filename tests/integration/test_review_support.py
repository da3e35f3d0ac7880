"""No tests here: helpers for the review integration tests — run the review
service in-process on SQLite or a fresh PostgreSQL schema with a FixedClock,
produce applications, decisions and payout events, call the gRPC API as a
named subject (authentication off: x-subsidy-subject / x-subsidy-role)."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import grpc
import psycopg
from kafka import KafkaProducer

from subsidy.contracts import cloudevents, codec, topics
from subsidy.core import credit_code
from subsidy.core.domain import NEEDS_REVIEW, Decision, Reason
from subsidy.core.workflow import review
from subsidy.core.workflow.settings import load_workflow
from subsidy.platform import migrations
from subsidy.platform.clock import Clock
from subsidy.platform.db import Database
from subsidy.services.review.adapters.migrations import HISTORY
from subsidy.services.review.bootstrap import ReviewApp
from subsidy.services.review.config import Settings
from subsidy.v1 import application_pb2, payout_pb2, review_pb2_grpc

from .running import RunningApp, wait_for

WORKFLOW = load_workflow()


def new_id(prefix: str = "RV") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def new_firm() -> str:
    return credit_code.complete("91310117" + uuid.uuid4().hex[:8].upper())


def database_url(kind: str, tmp_path: Path, postgres_url: str | None) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'review.db'}"
    schema = f"review_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in postgres_url else "?"
    return f"{postgres_url}{sep}options=-csearch_path%3D{schema}"


def settings(bootstrap: str, db_url: str, **overrides: Any) -> Settings:
    base = dict(
        kafka_bootstrap=bootstrap,
        grpc_address="127.0.0.1:0",
        database_url=db_url,
        metrics_address="",
        decisions_group=f"it-review-{uuid.uuid4().hex[:8]}",
        payouts_group=f"it-review-payouts-{uuid.uuid4().hex[:8]}",
        applications_group=f"it-review-applications-{uuid.uuid4().hex[:8]}",
        scheduler_interval_s=0.3,
        grace_s=1.0,
        health_interval_s=0.2,
    )
    base.update(overrides)
    return Settings(**base)


def as_(subject: str, role: str = "REVIEWER", code: str = "") -> tuple:
    return (("x-subsidy-subject", subject), ("x-subsidy-role", role), ("x-subsidy-credit-code", code))


class RunningReview(RunningApp):
    def __init__(self, settings: Settings, clock: Clock):
        super().__init__(lambda: ReviewApp(settings, clock))
        self.settings = settings
        self.clock = clock

    def __enter__(self) -> RunningReview:
        db = Database(self.settings.database_url, store="review-migrate")
        try:
            migrations.upgrade(db, HISTORY)  # what `subsidy migrate --service review` does before a rollout
        finally:
            db.close()
        super().__enter__()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.app.port}")
        self.stub = review_pb2_grpc.ReviewServiceStub(self.channel)
        wait_for(lambda: self.app.not_ready_reason() is None, timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        self.channel.close()
        super().__exit__(*exc)


def training_decision(application_id: str, firm: str, submitted_on: dt.date) -> Decision:
    """A clause 13 decision as eligibility publishes it: NEEDS_REVIEW, stamped for review."""
    d = Decision(
        decision_id=f"{application_id}@it+review",
        application_id=application_id,
        credit_code=firm,
        clause="13",
        outcome=NEEDS_REVIEW,
        max_award_fen=0,
        reasons=(Reason("REVIEW_REQUIRED", "13", "第13条：转人工审核"),),
        policy_version="it+review",
        decision_year=submitted_on.year,
        submitted_on=submitted_on,
    )
    return review.stamp(d, WORKFLOW.on(submitted_on))


class Producer:
    def __init__(self, bootstrap: str):
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)

    def _send(self, topic: str, key: str, value: bytes, event_id: str, kind: str) -> None:
        headers = cloudevents.headers(event_id, kind, "/it", cloudevents.new_trace_id())
        self.producer.send(topic, key=key.encode(), value=value, headers=headers).get(30)

    def application(self, application_id: str, firm: str, name: str) -> None:
        app = application_pb2.Application(
            application_id=application_id,
            submitted_on="2025-01-06",
            firm=application_pb2.Firm(credit_code=firm, name=name),
            talent_training=application_pb2.TalentTrainingClaim(program_id="P-1", training_cost_fen=2_000_000),
        )
        self._send(
            topics.APPLICATIONS.name,
            firm,
            app.SerializeToString(),
            application_id,
            cloudevents.TYPE_APPLICATION_SUBMITTED,
        )

    def decision(self, decision: Decision) -> None:
        value = codec.decision_to_proto(decision).SerializeToString()
        self._send(
            topics.DECISIONS.name, decision.credit_code, value, decision.decision_id, cloudevents.TYPE_DECISION_MADE
        )

    def grant_recorded(self, decision: Decision, granted_fen: int) -> None:
        """What payout publishes once it applied the (reviewed) decision."""
        event = payout_pb2.PayoutEvent(
            event_id=f"grant:{decision.application_id}",
            grant_recorded=payout_pb2.GrantRecorded(
                application_id=decision.application_id,
                decision_id=decision.decision_id,
                credit_code=decision.credit_code,
                clause=decision.clause,
                policy_version=decision.policy_version,
                max_award_fen=decision.max_award_fen,
                granted_fen=granted_fen,
                decision_year=decision.decision_year,
                tranche_count=0,
                state=payout_pb2.GRANT_STATE_RESERVED,
            ),
        )
        self._send(topics.PAYOUTS.name, decision.credit_code, event.SerializeToString(), event.event_id, "it.grant")

    def close(self) -> None:
        self.producer.close()
