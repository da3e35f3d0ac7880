"""No tests here: helpers for the payout integration tests — run the service
in-process (its own event loop in a thread), a database per test module
(SQLite file or a fresh PostgreSQL schema), produce decisions and payments,
read payout events and dead letters back from Kafka."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import grpc
import psycopg
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from subsidy.contracts import cloudevents, codec, topics
from subsidy.core import credit_code
from subsidy.core.domain import Decision, Entitlement, LimitKind, Reason
from subsidy.platform.clock import Clock
from subsidy.services.payout.bootstrap import PayoutApp
from subsidy.services.payout.config import Settings
from subsidy.services.payout.model import NoticeLine
from subsidy.v1 import events_pb2, notice_pb2, payout_pb2, payout_pb2_grpc

from .running import RunningApp, migrate, wait_for

ROOT = Path(__file__).resolve().parents[2]
RENT_CAP = 500_000_000  # 500万元 in fen


def new_id(prefix: str = "PT") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def new_firm() -> str:
    return credit_code.complete("91310117" + uuid.uuid4().hex[:8].upper())


def database_url(kind: str, tmp_path: Path, postgres_url: str | None) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'payout.db'}"
    schema = f"payout_{uuid.uuid4().hex[:10]}"
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
        decisions_group=f"it-payout-{uuid.uuid4().hex[:8]}",
        payments_group=f"it-payout-payments-{uuid.uuid4().hex[:8]}",
        notices_group=f"it-payout-notices-{uuid.uuid4().hex[:8]}",
        scheduler_interval_s=0.3,
        grace_s=1.0,
        health_interval_s=0.2,
    )
    base.update(overrides)
    return Settings(**base)


class RunningPayout(RunningApp):
    """``with RunningPayout(settings, clock) as svc: svc.stub.GetLedger(...)``"""

    def __init__(self, settings: Settings, clock: Clock | None = None):
        super().__init__(lambda: PayoutApp(settings, clock))
        self.settings = settings
        self.clock = clock

    def __enter__(self) -> RunningPayout:
        migrate("payout", self.settings.database_url)  # as the migration Job does before a rollout
        super().__enter__()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.app.port}")
        self.stub = payout_pb2_grpc.PayoutServiceStub(self.channel)
        wait_for(lambda: self.app.serving(), timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        self.channel.close()
        super().__exit__(*exc)


def rent_decision(
    application_id: str,
    firm: str,
    amount_fen: int = 240_000_000,
    *,
    submitted_on: str = "2025-02-20",
    shares: Iterable[int] = (40, 30, 30),
    outcome: str = "ELIGIBLE",
    policy_version: str = "it+payout",
) -> Decision:
    eligible = outcome == "ELIGIBLE"
    submitted = dt.date.fromisoformat(submitted_on)
    return Decision(
        decision_id=f"{application_id}@{policy_version}",
        application_id=application_id,
        credit_code=firm,
        clause="1.rent",
        outcome=outcome,
        max_award_fen=amount_fen if eligible else 0,
        reasons=(Reason("AWARD_BASIS", "1", "依据第1条"),),
        policy_version=policy_version,
        decision_year=submitted.year,
        submitted_on=submitted,
        entitlements=(Entitlement("1.rent", LimitKind.CUMULATIVE_CAP, amount_fen, RENT_CAP),) if eligible else (),
        tranche_shares_percent=tuple(shares) if eligible else (),
    )


def notice_line(decision: Decision, kind: str = "payable", day: str = "", reason: str = "") -> NoticeLine:
    """What handlers.parse_notice_line makes of the decision's LinePayable
    (or LineWithdrawn), for the use cases called directly."""
    return NoticeLine(
        kind=kind,
        event_id=f"{kind}:{decision.decision_id}",
        decision_id=decision.decision_id,
        application_id=decision.application_id,
        credit_code=decision.credit_code,
        notice_id="N-it",
        day=dt.date.fromisoformat(day) if day else decision.submitted_on,
        reason=reason,
    )


class Producer:
    def __init__(self, bootstrap: str):
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)

    def decision(
        self, decision: Decision, trace_id: str | None = None, key: bytes | None = None, wait: bool = True
    ) -> str:
        trace_id = trace_id or cloudevents.new_trace_id()
        headers = cloudevents.headers(
            decision.decision_id, cloudevents.TYPE_DECISION_MADE, "/songjiang/subsidy/eligibility", trace_id
        )
        future = self.producer.send(
            topics.DECISIONS.name,
            key=key or decision.credit_code.encode(),
            value=codec.decision_to_proto(decision).SerializeToString(),
            headers=headers,
        )
        if wait:
            future.get(30)
        return trace_id

    def notice_line(
        self, decision: Decision, kind: str = "payable", day: str = "", notice_id: str = "N-it", reason: str = ""
    ) -> None:
        """A LinePayable (or LineWithdrawn) of ``decision`` on subsidy.notices.v1, as
        the review service publishes it; payable by default on the submission day."""
        on = day or decision.submitted_on.isoformat()
        event = notice_pb2.NoticeEvent(event_id=f"{kind}:{decision.decision_id}")
        common = dict(
            decision_id=decision.decision_id,
            application_id=decision.application_id,
            credit_code=decision.credit_code,
            notice_id=notice_id,
        )
        if kind == "payable":
            event.line_payable.CopyFrom(notice_pb2.LinePayable(**common, payable_on=on))
        else:
            event.line_withdrawn.CopyFrom(notice_pb2.LineWithdrawn(**common, withdrawn_on=on, reason=reason))
        self.producer.send(
            topics.NOTICES.name,
            key=decision.credit_code.encode(),
            value=event.SerializeToString(),
            headers=cloudevents.headers(
                event.event_id,
                f"cn.gov.songjiang.subsidy.review.line_{kind}.v1",
                "/songjiang/subsidy/review",
                cloudevents.new_trace_id(),
            ),
        ).get(30)

    def flush(self) -> None:
        self.producer.flush(30)

    def raw(self, topic: str, key: bytes, value: bytes) -> None:
        self.producer.send(topic, key=key, value=value, headers=[]).get(30)

    def payment(
        self, payment_id: str, tranche_id: str, firm: str, amount_fen: int, paid_on: str = "2025-03-01"
    ) -> None:
        value = payout_pb2.PaymentConfirmed(
            payment_id=payment_id, tranche_id=tranche_id, credit_code=firm, amount_fen=amount_fen, paid_on=paid_on
        ).SerializeToString()
        self.producer.send(
            topics.PAYMENTS.name,
            key=firm.encode(),
            value=value,
            headers=cloudevents.headers(
                payment_id,
                "cn.gov.songjiang.finance.payment.confirmed.v1",
                "/songjiang/finance",
                cloudevents.new_trace_id(),
            ),
        ).get(30)

    def close(self) -> None:
        self.producer.close()


def read_topic(
    bootstrap: str,
    topic: str,
    keep: Callable[[Any], bool],
    until: Callable[[list], bool],
    timeout: float = 30.0,
    settle: float = 0.0,
) -> list:
    """Records of ``topic`` (from the beginning) that ``keep`` accepts, read
    until ``until(found)`` holds, then ``settle`` seconds more."""
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
                found += [r for r in batch if keep(r)]
            if until(found):
                settle_until = settle_until or time.monotonic() + settle
                if time.monotonic() >= settle_until:
                    break
        return found
    finally:
        consumer.close()


def payout_events(
    bootstrap: str, firm: str, expect_ids: Iterable[str] = (), timeout: float = 30.0, settle: float = 0.0
) -> list:
    """(ce_id, headers, PayoutEvent) on subsidy.payouts.v1 for one firm."""
    expected = set(expect_ids)
    records = read_topic(
        bootstrap,
        topics.PAYOUTS.name,
        lambda r: r.key == firm.encode(),
        lambda found: expected <= {cloudevents.as_dict(r.headers).get("ce_id") for r in found},
        timeout,
        settle,
    )
    return [
        (
            cloudevents.as_dict(r.headers)["ce_id"],
            cloudevents.as_dict(r.headers),
            payout_pb2.PayoutEvent.FromString(r.value),
        )
        for r in records
    ]


def granted_and_payable(
    producer: Producer, bootstrap: str, decision: Decision, payable_on: str = "", wait_for_tranches: int = 0
) -> list:
    """Produce the decision, wait for its GrantRecorded (the grant is RESERVED),
    then make its notice line payable (on the submission day unless
    ``payable_on``); returns the firm's payout events once its first
    ``wait_for_tranches`` tranches are scheduled."""
    app = decision.application_id
    producer.decision(decision)
    payout_events(bootstrap, decision.credit_code, [f"grant:{app}"])
    producer.notice_line(decision, day=payable_on)
    ids = [f"payable:{decision.decision_id}"] + [f"scheduled:{app}/tranche-{k}" for k in range(wait_for_tranches)]
    return payout_events(bootstrap, decision.credit_code, ids)


def dead_letters(bootstrap: str, topic: str, key: bytes, expect: int = 1, timeout: float = 30.0) -> list:
    records = read_topic(bootstrap, topic, lambda r: r.key == key, lambda found: len(found) >= expect, timeout)
    return [events_pb2.DeadLetter.FromString(r.value) for r in records]
