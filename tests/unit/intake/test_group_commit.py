"""subsidy.services.intake.adapters.store.GroupCommit: concurrent writes share one commit, each
caller returns only after its own write is committed, and a failing write
fails alone."""

from __future__ import annotations

import threading
import time

import pytest

from subsidy.platform.db import Database
from subsidy.services.intake.adapters.store import GroupCommit


class CountingDatabase(Database):
    def __init__(self, url: str):
        super().__init__(url, store="test")
        self.transactions = 0

    def transaction(self):
        self.transactions += 1
        return super().transaction()


@pytest.fixture
def db(tmp_path):
    database = CountingDatabase(f"sqlite:///{tmp_path / 'group.db'}")
    with database.transaction() as tx:
        tx.execute("CREATE TABLE t (id TEXT PRIMARY KEY)")
    database.transactions = 0
    yield database
    database.close()


def _insert(value: str):
    def work(tx):
        tx.execute("INSERT INTO t (id) VALUES (?)", (value,))
        return value

    return work


def _committed(db) -> set[str]:
    with db.transaction() as tx:
        return {r[0] for r in tx.all("SELECT id FROM t")}


def _queue_behind_a_slow_write(db, group, works):
    """Start a write that holds the transaction until ``works`` are all queued
    behind it, then run them; return {work index: result or exception}."""
    release = threading.Event()
    outcomes: dict = {}

    def slow(tx):
        release.wait(10)
        tx.execute("INSERT INTO t (id) VALUES ('slow')")

    def call(key, work):
        try:
            outcomes[key] = group.run(work)
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            outcomes[key] = exc

    threads = [threading.Thread(target=call, args=("slow", slow))]
    threads[0].start()
    while not group._busy:
        time.sleep(0.001)
    threads += [threading.Thread(target=call, args=(n, w)) for n, w in enumerate(works)]
    for t in threads[1:]:
        t.start()
    deadline = time.monotonic() + 10
    while len(group._queue) < len(works) and time.monotonic() < deadline:
        time.sleep(0.001)
    release.set()
    for t in threads:
        t.join(10)
    return outcomes


def test_writes_queued_during_a_commit_are_committed_together_and_each_caller_gets_its_result(db):
    group = GroupCommit(db)
    outcomes = _queue_behind_a_slow_write(db, group, [_insert(f"a{n}") for n in range(8)])
    assert [outcomes[n] for n in range(8)] == [f"a{n}" for n in range(8)]
    assert db.transactions == 2  # the slow write's, then one for the eight queued behind it
    assert _committed(db) == {"slow", *(f"a{n}" for n in range(8))}


def test_a_failing_write_fails_alone_and_the_others_of_its_batch_are_committed(db):
    group = GroupCommit(db)
    works = [_insert("b0"), _insert("b1"), _insert("b0"), _insert("b2")]  # the second b0 breaks the key
    outcomes = _queue_behind_a_slow_write(db, group, works)
    assert outcomes[0] == "b0" and outcomes[1] == "b1" and outcomes[3] == "b2"
    assert isinstance(outcomes[2], Exception) and db.is_unique_violation(outcomes[2])
    assert _committed(db) == {"slow", "b0", "b1", "b2"}


def test_a_batch_larger_than_max_batch_is_split(db):
    group = GroupCommit(db, max_batch=3)
    outcomes = _queue_behind_a_slow_write(db, group, [_insert(f"c{n}") for n in range(7)])
    assert sorted(v for k, v in outcomes.items() if k != "slow") == sorted(f"c{n}" for n in range(7))
    assert db.transactions == 1 + 3  # slow, then 3 + 3 + 1


def test_a_lone_write_is_committed_before_run_returns(db):
    group = GroupCommit(db)
    assert group.run(_insert("d")) == "d"
    assert _committed(db) == {"d"} and not group._busy


def test_a_write_from_a_thread_holding_a_batch_joins_that_batch_without_waiting_for_another_leader(db):
    """A consumer applying a poll in one batch (intake's proposal pass) writes
    through the group commit while a submission leads it: the submission's
    transaction waits for the connection the batch holds, so the consumer's
    write must not wait for that leader (a deadlock), and the submission must
    not be committed inside a batch that has not committed yet."""
    group = GroupCommit(db)
    batch_open, submitting = threading.Event(), threading.Event()
    results: dict = {}

    def consumer():
        with db.batch():
            batch_open.set()
            submitting.wait(5)
            time.sleep(0.2)  # the submission now leads, waiting for the connection
            results["consumer"] = group.run(_insert("proposal"))
            results["during batch"] = _committed(db)

    def submission():
        batch_open.wait(5)
        submitting.set()
        results["submission"] = group.run(_insert("application"))

    threads = [threading.Thread(target=consumer), threading.Thread(target=submission)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert not any(t.is_alive() for t in threads), "deadlock: the batch's write waited for a leader waiting for it"
    assert results["consumer"] == "proposal" and results["submission"] == "application"
    assert "application" not in results["during batch"], "a submission was answered from inside an open batch"
    assert _committed(db) == {"proposal", "application"}
