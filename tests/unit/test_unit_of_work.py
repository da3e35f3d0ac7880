"""subsidy.platform.unit_of_work: the unit of work payout's and review's
stores share, on a SQLite database."""

from __future__ import annotations

import threading

import pytest

from subsidy.platform.db import Database, Transaction
from subsidy.platform.unit_of_work import ThreadUnitOfWork


class Notes:
    def __init__(self, tx: Transaction):
        self.tx = tx

    def add(self, text: str) -> None:
        self.tx.execute("INSERT INTO notes (text) VALUES (?)", (text,))


class NoteStore(ThreadUnitOfWork[Notes]):
    tables_owner = "the notebook"

    def open_tables(self, tx: Transaction) -> Notes:
        return Notes(tx)

    def stored(self) -> list[str]:
        with self.db.transaction() as tx:
            return [text for (text,) in tx.all("SELECT text FROM notes ORDER BY text")]


@pytest.fixture
def store(tmp_path) -> NoteStore:
    db = Database(f"sqlite:///{tmp_path / 'notes.db'}", store="test")
    with db.transaction() as tx:
        tx.execute("CREATE TABLE notes (text TEXT NOT NULL)")
    return NoteStore(db)


def test_what_is_committed_is_kept(store):
    with store:
        store.tables().add("a")
        store.commit()
    assert store.stored() == ["a"]


def test_a_unit_of_work_left_without_commit_rolls_back(store):
    with store:
        store.tables().add("a")
    assert store.stored() == []


def test_an_exception_rolls_back_and_reaches_the_caller(store):
    with pytest.raises(ValueError, match="boom"), store:
        store.tables().add("a")
        raise ValueError("boom")
    assert store.stored() == []


def test_tables_outside_a_unit_of_work_say_whose_and_why(store):
    with pytest.raises(RuntimeError, match="the notebook.s tables are read and written inside a unit of work"):
        store.tables()
    with store:
        store.commit()
        with pytest.raises(RuntimeError, match="inside a unit of work"):
            store.tables()


def test_one_unit_of_work_per_thread(store):
    with store, pytest.raises(RuntimeError, match="already open on this thread"), store:
        pass


def test_each_thread_has_its_own_unit_of_work(store):
    seen: list[BaseException] = []

    def other_thread() -> None:
        try:
            store.tables()
        except RuntimeError as exc:
            seen.append(exc)

    with store:
        store.tables().add("mine")
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        store.commit()
    assert len(seen) == 1  # the other thread has none open
    assert store.stored() == ["mine"]
