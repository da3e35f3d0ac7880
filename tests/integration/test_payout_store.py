"""The ledger under concurrency, on SQLite and PostgreSQL: many threads
(each its own connection on PostgreSQL, like replicas) applying competing
claims of one firm at once through the use case (handlers.apply_decision)
over the SQL unit of work never grant more than the cap, and each
application once."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import threading

import pytest

from subsidy.platform.db import Database
from subsidy.services.payout import handlers
from subsidy.services.payout.adapters.store import SqlStore

from .test_payout_support import RENT_CAP, database_url, new_firm, new_id, notice_line, rent_decision

pytestmark = pytest.mark.integration

AT = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request, tmp_path):
    postgres_url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    url = database_url(request.param, tmp_path, postgres_url)
    # Four "replicas": separate Database objects (separate connections / pools).
    dbs = [Database(url, store="payout", pool_size=4) for _ in range(4)]
    SqlStore(dbs[0]).create_schema()
    yield [SqlStore(db) for db in dbs]
    for db in dbs:
        db.close()


def test_competing_claims_of_one_firm_applied_at_once_never_exceed_the_cap(stores):
    firm = new_firm()
    decisions = [rent_decision(new_id("C"), firm, 60_000_000, shares=(40, 30, 30)) for _ in range(48)]
    barrier = threading.Barrier(16)

    def work(k: int) -> list[str]:
        barrier.wait()
        store = stores[k % len(stores)]
        # Each worker applies its share and replays someone else's.
        mine = decisions[k::16] + decisions[(k + 1) % 16 :: 16]
        return [handlers.apply_decision(store, d, "ab" * 16, AT).result for d in mine]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = [r for rs in pool.map(work, range(16)) for r in rs]
    assert results.count("applied") == 48 and results.count("replayed") == 48
    ledger = handlers.ledger(stores[0], firm)
    assert len({g.application_id for g in ledger.grants}) == len(ledger.grants) == 48
    assert sum(g.granted_fen for g in ledger.grants) == RENT_CAP
    assert [t for g in ledger.grants for t in g.tranches] == []  # RESERVED: tranches wait for the notice

    barrier = threading.Barrier(16)

    def payable(k: int) -> list[str]:
        barrier.wait()
        store = stores[k % len(stores)]
        mine = decisions[k::16] + decisions[(k + 1) % 16 :: 16]
        return [handlers.apply_notice_line(store, notice_line(d), AT)[0] for d in mine]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = [r for rs in pool.map(payable, range(16)) for r in rs]
    assert results.count("applied") == 48 and results.count("repeat") == 48
    ledger = handlers.ledger(stores[0], firm)
    tranche_ids = [t.tranche_id for g in ledger.grants for t in g.tranches]
    assert len(tranche_ids) == len(set(tranche_ids))
    assert sum(t.amount_fen for g in ledger.grants for t in g.tranches) == RENT_CAP
    assert ledger.scopes[0].used_fen == RENT_CAP
