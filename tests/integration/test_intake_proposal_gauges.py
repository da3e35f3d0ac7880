"""subsidy_intake_proposals_by_state (issue 13 item 7) on the real
PostgreSQL the harness starts (and SQLite): the gauge intake's refresh sets
from its proposals table, every state present, zeros included."""

from __future__ import annotations

import types
import uuid

import pytest

from subsidy.platform.db import Database
from subsidy.services.intake import metrics
from subsidy.services.intake.adapters.store import SqlStore
from subsidy.services.intake.bootstrap import IntakeApp

from .running import migrate
from .test_intake_support import database_url

pytestmark = pytest.mark.integration


@pytest.fixture(params=["postgresql", "sqlite"])
def store(request, tmp_path):
    postgres_url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    url = database_url(request.param, tmp_path, postgres_url)
    migrate("intake", url)
    db = Database(url, store="intake", pool_size=2)
    yield SqlStore(db)
    db.close()


def add(store: SqlStore, state: str, n: int) -> None:
    with store.db.transaction() as tx:
        for _ in range(n):
            tx.execute(
                "INSERT INTO intake_proposals (proposal_id, credit_code, clause, fact_reference, state, proposal, "
                "proposed_on, expires_on, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    f"P-{uuid.uuid4().hex[:12]}",
                    "91310117MA1J3X0A3U",
                    "8.dcmm",
                    f"fact-{uuid.uuid4().hex[:8]}",
                    state,
                    b"",
                    "2026-10-01",
                    "2026-10-31",
                    "2026-10-01T00:00:00Z",
                    "2026-10-01T00:00:00Z",
                ),
            )


def gauge(state: str) -> float:
    return metrics.PROPOSALS_BY_STATE.labels(state)._value.get()


def test_proposals_by_state_follow_the_table(store):
    refresh = IntakeApp.refresh_gauges
    app = types.SimpleNamespace(store=store)  # refresh_gauges reads the store only
    refresh(app)
    assert [gauge(s) for s in ("PROPOSED", "CONFIRMED", "DECLINED", "EXPIRED")] == [0, 0, 0, 0]
    add(store, "PROPOSED", 3)
    add(store, "CONFIRMED", 2)
    add(store, "EXPIRED", 1)
    refresh(app)
    assert [gauge(s) for s in ("PROPOSED", "CONFIRMED", "DECLINED", "EXPIRED")] == [3, 2, 0, 1]
    with store.db.transaction() as tx:
        tx.execute("UPDATE intake_proposals SET state = 'EXPIRED' WHERE state = 'PROPOSED'")
    refresh(app)
    assert [gauge(s) for s in ("PROPOSED", "CONFIRMED", "DECLINED", "EXPIRED")] == [0, 2, 0, 4]
