"""Replicas are safe: payout as real processes (``python -m subsidy.services.payout``),
several in ONE consumer group against ONE PostgreSQL database, while a burst
of competing claims for one firm arrives and partitions move between them
(a replica joins mid-burst, one is SIGKILLed mid-burst, another joins).

To make the claims really race, some of the burst (and of the replays) is
produced under other keys than the firm's credit code, so it lands on other
partitions, owned by other replicas: only the firm's row lock in the
database, not Kafka's per-key ordering, keeps the cap. Afterwards: the firm's
granted total is exactly the cap (never more), each application is granted
once, no tranche id is duplicated in the database, and on Kafka every event
id, however often delivered, carries the same event — so deduping by event id
counts no tranche twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from subsidy_dev import free_port

from .test_payout_support import (
    RENT_CAP,
    ROOT,
    Producer,
    database_url,
    migrate,
    new_firm,
    new_id,
    payout_events,
    rent_decision,
    wait_for,
)

pytestmark = pytest.mark.integration


class Replica:
    def __init__(self, name: str, env: dict, log_dir):
        self.name = name
        self.port = free_port()
        self.log = log_dir / f"{name}.log"
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "subsidy.services.payout"],
                cwd=ROOT,
                env={**env, "SUBSIDY_PAYOUT_GRPC_ADDRESS": f"127.0.0.1:{self.port}"},
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def serving(self) -> bool:
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            try:
                return (
                    health_pb2_grpc.HealthStub(channel)
                    .Check(health_pb2.HealthCheckRequest(service="subsidy.v1.PayoutService"), timeout=1)
                    .status
                    == health_pb2.HealthCheckResponse.SERVING
                )
            except grpc.RpcError:
                return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def ensure_gone(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def db_state(url: str, firm: str) -> dict:
    with psycopg.connect(url) as conn:
        one = lambda sql: conn.execute(sql, (firm,)).fetchone()  # noqa: E731
        return dict(
            grants=one(
                "SELECT COUNT(*), COUNT(DISTINCT application_id), COALESCE(SUM(granted_fen), 0) "
                "FROM payout_grants WHERE credit_code = %s"
            ),
            tranches=one(
                "SELECT COUNT(*), COUNT(DISTINCT tranche_id), COALESCE(SUM(amount_fen), 0) "
                "FROM payout_tranches WHERE credit_code = %s"
            ),
            used=one("SELECT COALESCE(SUM(used_fen), 0) FROM payout_usage WHERE credit_code = %s")[0],
            inbox=one("SELECT COUNT(*) FROM payout_inbox WHERE credit_code = %s")[0],
            pending=conn.execute("SELECT COUNT(*) FROM payout_outbox WHERE published_at IS NULL").fetchone()[0],
        )


def test_replicas_in_one_group_never_grant_a_firm_more_than_its_cap_while_partitions_move(
    kafka_bootstrap, postgres_url, tmp_path
):
    url = database_url("postgresql", tmp_path, postgres_url)
    migrate("payout", url)  # as the migration Job does before the replicas start
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SUBSIDY_PAYOUT_DATABASE_URL": url,
        "SUBSIDY_PAYOUT_METRICS_ADDRESS": "off",
        "SUBSIDY_PAYOUT_GROUP": f"it-payout-replicas-{new_id('g')}",
        "SUBSIDY_PAYOUT_PAYMENTS_GROUP": f"it-payout-replicas-pay-{new_id('g')}",
        "SUBSIDY_PAYOUT_NOTICES_GROUP": f"it-payout-replicas-notices-{new_id('g')}",
        "SUBSIDY_PAYOUT_TODAY": "2025-01-01",
        "SUBSIDY_PAYOUT_GRACE_SECONDS": "1",
        "SUBSIDY_PAYOUT_KAFKA_SESSION_TIMEOUT_MS": "6000",  # the killed replica's partitions move soon
    }
    firm = new_firm()
    apps = [new_id("R") for _ in range(40)]
    # Ceilings of 30万–89万 yuan: 40 of them sum to ~2,400万, far above the 500万 cap.
    decisions = [
        rent_decision(app, firm, (30 + (i * 7) % 60) * 1_000_000, shares=(40, 30, 30)) for i, app in enumerate(apps)
    ]
    assert sum(d.max_award_fen for d in decisions) > 4 * RENT_CAP
    replicas: list[Replica] = []
    producer = Producer(kafka_bootstrap)
    try:
        a = Replica("replica-a", env, tmp_path)
        replicas.append(a)
        wait_for(a.serving, timeout=60, interval=0.2)

        def wave(part: range) -> None:
            # Sent back to back (no wait per message), so a backlog builds up
            # on several partitions and the replicas work through it at once.
            for i in part:
                d = decisions[i]
                # Every third claim under another key: another partition, possibly another replica.
                producer.decision(d, key=d.application_id.encode() if i % 3 == 1 else None, wait=False)
                if i % 4 == 0:  # replays, some under other keys too
                    producer.decision(decisions[i // 2], key=b"replay-%d" % i if i % 8 == 0 else None, wait=False)
            producer.flush()

        wave(range(8))
        b = Replica("replica-b", env, tmp_path)  # joins mid-burst: partitions move from a to b
        replicas.append(b)
        wait_for(b.serving, timeout=60, interval=0.2)
        time.sleep(1.0)
        wave(range(8, 24))
        time.sleep(0.3)
        a.stop(signal.SIGKILL)  # dies mid-burst, without leaving the group
        c = Replica("replica-c", env, tmp_path)
        replicas.append(c)
        wait_for(c.serving, timeout=60, interval=0.2)
        wave(range(24, 40))

        def settled():
            state = db_state(url, firm)
            return state if state["inbox"] == 40 and state["pending"] == 0 else None

        wait_for(settled, timeout=60, interval=0.5)
        # Every line payable (the grants were RESERVED: no tranche yet), some twice.
        for i, d in enumerate(decisions):
            producer.notice_line(d)
            if i % 5 == 0:
                producer.notice_line(d)

        def scheduled():
            state = db_state(url, firm)
            return state if state["tranches"][2] == RENT_CAP and state["pending"] == 0 else None

        state = wait_for(scheduled, timeout=60, interval=0.5)
        assert b.stop() == 0, b.log.read_text()[-2000:]
        assert c.stop() == 0, c.log.read_text()[-2000:]
    finally:
        producer.close()
        for r in replicas:
            r.ensure_gone()

    grants, distinct_apps, granted = state["grants"]
    tranches, distinct_tranches, tranche_sum = state["tranches"]
    assert (grants, distinct_apps) == (40, 40)  # each application granted once
    assert granted == RENT_CAP  # the cap is reached and never exceeded
    assert (tranches, distinct_tranches) == (distinct_tranches, distinct_tranches)
    assert tranche_sum == granted == state["used"]

    grant_ids = [f"grant:{app}" for app in apps]
    events = payout_events(kafka_bootstrap, firm, grant_ids, timeout=30, settle=1.0)
    copies: dict[str, set] = defaultdict(set)
    for event_id, _headers, event in events:
        copies[event_id].add(event.SerializeToString())
    assert all(len(v) == 1 for v in copies.values()), "an event id was published with different contents"
    unique = {event_id: next(iter(v)) for event_id, v in copies.items()}
    from subsidy.v1 import payout_pb2

    parsed = {k: payout_pb2.PayoutEvent.FromString(v) for k, v in unique.items()}
    assert set(grant_ids) <= set(parsed)
    assert sum(parsed[g].grant_recorded.granted_fen for g in grant_ids) == RENT_CAP
    scheduled = [e.tranche_scheduled for k, e in parsed.items() if k.startswith("scheduled:")]
    assert len(scheduled) == distinct_tranches
    assert sum(t.amount_fen for t in scheduled) == RENT_CAP
    logs = "".join(r.log.read_text() for r in replicas)
    assert logs.count('"payout stopped"') == 2  # b and c stopped cleanly; a was killed


def _deadlocks(url: str) -> int:
    with psycopg.connect(url) as conn:
        return int(
            conn.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]
        )


def test_two_replicas_and_the_scheduler_over_many_firms_never_deadlock(kafka_bootstrap, postgres_url, tmp_path):
    """Issue 19: firm locks in one global order. Decisions of eight firms are
    spread over every partition (so each replica's batches hold several firms,
    in poll order), two replicas share them, their lines become payable and
    the scheduler (every 0.2 s, a "today" after every due date) moves the
    tranches at the same time: PostgreSQL reports no deadlock."""
    url = database_url("postgresql", tmp_path, postgres_url)
    migrate("payout", url)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SUBSIDY_PAYOUT_DATABASE_URL": url,
        "SUBSIDY_PAYOUT_METRICS_ADDRESS": "off",
        "SUBSIDY_PAYOUT_GROUP": f"it-payout-deadlock-{new_id('g')}",
        "SUBSIDY_PAYOUT_PAYMENTS_GROUP": f"it-payout-deadlock-pay-{new_id('g')}",
        "SUBSIDY_PAYOUT_NOTICES_GROUP": f"it-payout-deadlock-notices-{new_id('g')}",
        "SUBSIDY_PAYOUT_FIRMS_GROUP": f"it-payout-deadlock-firms-{new_id('g')}",
        "SUBSIDY_PAYOUT_TODAY": "2030-01-01",
        "SUBSIDY_PAYOUT_SCHEDULER_INTERVAL_SECONDS": "0.2",
        "SUBSIDY_PAYOUT_GRACE_SECONDS": "1",
    }
    firms = [new_firm() for _ in range(8)]
    decisions = [
        rent_decision(new_id("D"), firms[i % len(firms)], 30_000_000 + (i % 7) * 1_000_000, shares=(40, 30, 30))
        for i in range(96)
    ]
    before = _deadlocks(url)
    replicas: list[Replica] = []
    producer = Producer(kafka_bootstrap)
    try:
        for name in ("replica-a", "replica-b"):
            replicas.append(Replica(name, env, tmp_path))
        for r in replicas:
            wait_for(r.serving, timeout=60, interval=0.2)
        time.sleep(2.0)  # both in the group, partitions shared
        for i, d in enumerate(decisions):
            # Six keys, not the firm: every partition carries every firm, so a
            # poll holds several firms in an order no replica chose.
            producer.decision(d, key=b"spread-%d" % (i % 6), wait=False)
        producer.flush()

        def applied():
            with psycopg.connect(url) as conn:
                n = conn.execute("SELECT COUNT(*) FROM payout_inbox WHERE credit_code = ANY(%s)", (firms,)).fetchone()[
                    0
                ]
            return n == len(decisions) or None

        wait_for(applied, timeout=120, interval=0.5)
        for d in decisions:  # the scheduler works while these land
            producer.notice_line(d)
        producer.flush()

        def all_due():
            with psycopg.connect(url) as conn:
                rows = conn.execute(
                    "SELECT status, COUNT(*) FROM payout_tranches WHERE credit_code = ANY(%s) GROUP BY status",
                    (firms,),
                ).fetchall()
            statuses = dict(rows)
            return statuses if statuses and set(statuses) == {"DUE"} else None

        statuses = wait_for(all_due, timeout=120, interval=0.5)
        for r in replicas:
            assert r.stop() == 0, r.log.read_text()[-2000:]
    finally:
        producer.close()
        for r in replicas:
            r.ensure_gone()
    time.sleep(1.5)  # cumulative statistics are flushed at the end of a transaction, within a second
    assert statuses["DUE"] > 0
    assert _deadlocks(url) == before, "PostgreSQL reported a deadlock: firm locks were not taken in one order"
    logs = "".join(r.log.read_text() for r in replicas)
    assert "deadlock detected" not in logs
