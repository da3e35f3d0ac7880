"""subsidy.platform.db batches on SQLite and PostgreSQL: every transaction a thread
opens inside ``db.batch()`` is a savepoint of one transaction; an inner one
that fails undoes only its own writes, a batch that fails writes nothing.
And payout's use cases on top, over the SQL unit of work: decisions applied
in one batch commit together or not at all, and a rejected payment inside a
batch leaves nothing behind."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from subsidy.platform.db import Database
from subsidy.services.payout import handlers
from subsidy.services.payout.adapters.store import SqlStore
from subsidy.services.payout.model import Payment, Rejected

from .test_payout_support import database_url, new_firm, new_id, notice_line, rent_decision

pytestmark = pytest.mark.integration

AT = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
TRACE = "ab" * 16


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    postgres_url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    database = Database(database_url(request.param, tmp_path, postgres_url), store="payout", pool_size=4)
    with database.transaction() as tx:
        tx.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
    yield database
    database.close()


def rows(db: Database) -> dict:
    with db.transaction() as tx:
        return dict(tx.all("SELECT k, v FROM t ORDER BY k"))


def put(db: Database, k: str, v: int = 1) -> None:
    with db.transaction() as tx:
        tx.execute("INSERT INTO t (k, v) VALUES (?, ?)", (k, v))


def test_an_inner_transaction_that_fails_inside_a_batch_rolls_back_only_its_own_writes(db):
    with db.batch():
        put(db, "a")
        with pytest.raises(ValueError), db.transaction() as tx:
            tx.execute("INSERT INTO t (k, v) VALUES (?, ?)", ("b", 1))
            tx.execute("UPDATE t SET v = 99 WHERE k = ?", ("a",))
            raise ValueError("rejected: nothing of this one is written")
        with pytest.raises(Exception) as caught:
            put(db, "a")  # a database error inside (unique violation): PostgreSQL's transaction survives it
        assert db.is_unique_violation(caught.value)
        put(db, "c")
    assert rows(db) == {"a": 1, "c": 1}


def test_a_batch_that_fails_writes_nothing_not_even_its_successful_inner_transactions(db):
    put(db, "before")
    with pytest.raises(RuntimeError), db.batch():
        put(db, "a")
        put(db, "b")
        raise RuntimeError("the batch fails after its inner transactions succeeded")
    assert rows(db) == {"before": 1}


def test_a_batch_is_one_transaction_others_do_not_see_before_it_commits(db):
    seen = {}
    with db.batch():
        put(db, "a")
        if db.dialect == "postgresql":  # SQLite's other threads wait for the batch's write lock instead
            reader = threading.Thread(target=lambda: seen.update(rows=rows(db)))
            reader.start()
            reader.join(10)
            assert seen["rows"] == {}, "an uncommitted batch is invisible to other connections"
        put(db, "b")
    assert rows(db) == {"a": 1, "b": 1}


def test_transactions_of_other_threads_during_a_batch_are_their_own(db):
    other_done = threading.Event()

    def other() -> None:
        put(db, "other")
        other_done.set()

    with pytest.raises(RuntimeError), db.batch():
        put(db, "a")
        thread = threading.Thread(target=other)
        thread.start()
        if db.dialect == "postgresql":
            assert other_done.wait(10), "not blocked by the batch"
        raise RuntimeError("the batch fails")
    thread.join(10)
    assert rows(db) == {"other": 1}, "the other thread's transaction committed on its own"


# -- payout's units of work inside a batch ------------------------------------------------------


@pytest.fixture
def store(db):
    s = SqlStore(db)
    s.create_schema()
    return s


def test_decisions_applied_in_a_failed_batch_leave_no_grant_no_inbox_row_no_outbox_row(store):
    firm = new_firm()
    decisions = [rent_decision(new_id("B"), firm, 100_000_000) for _ in range(3)]
    with pytest.raises(ConnectionError), store.batch():
        for d in decisions:
            assert handlers.apply_decision(store, d, TRACE, AT).result == "applied"
        raise ConnectionError("COMMIT failed")
    assert handlers.ledger(store, firm).grants == () and store.pending_count() == 0
    # Redone: applied once each, the cap counted once.
    with store.batch():
        results = [handlers.apply_decision(store, d, TRACE, AT).result for d in decisions + decisions[:1]]
    assert results == ["applied"] * 3 + ["replayed"]
    ledger = handlers.ledger(store, firm)
    assert len(ledger.grants) == 3 and ledger.scopes[0].used_fen == 300_000_000


def test_a_rejected_payment_inside_a_batch_writes_nothing_and_the_rest_of_the_batch_commits(store):
    firm = new_firm()
    decision = rent_decision(new_id("B"), firm, 100_000_000, shares=(100,))
    handlers.apply_decision(store, decision, TRACE, AT)
    handlers.apply_notice_line(store, notice_line(decision), AT)
    [tranche] = handlers.ledger(store, firm).grants[0].tranches
    wrong = Payment(
        payment_id=new_id("PAY"),
        tranche_id=tranche.tranche_id,
        credit_code=firm,
        amount_fen=tranche.amount_fen + 1,
        paid_on="2025-03-01",
    )
    right = Payment(
        payment_id=new_id("PAY"),
        tranche_id=tranche.tranche_id,
        credit_code=firm,
        amount_fen=tranche.amount_fen,
        paid_on="2025-03-01",
    )
    other = rent_decision(new_id("B"), firm, 50_000_000)
    pending = store.pending_count()
    with store.batch():
        with pytest.raises(Rejected):
            handlers.apply_payment(store, wrong, AT)
        assert handlers.apply_payment(store, right, AT)[0] == "applied"
        assert handlers.apply_decision(store, other, TRACE, AT).result == "applied"
    ledger = handlers.ledger(store, firm)
    [paid] = [t for g in ledger.grants for t in g.tranches if t.tranche_id == tranche.tranche_id]
    assert (paid.status, paid.payment_id) == ("PAID", right.payment_id)
    assert len(ledger.grants) == 2
    assert store.pending_count() > pending + 1
