"""A unit of work per thread over a Database, for stores whose use cases
read and write several tables in one transaction (payout's ledger, review's
workflow): ``with store:`` opens ``Database.transaction()`` on the calling
thread, ``store.commit()`` commits it, and leaving without committing rolls
it back. One store serves several threads at once (consumers, scheduler,
gRPC workers): the open transaction and its tables are the thread's own.

A subclass says which tables a transaction gives (``open_tables``) and how
they are named in the error for a read outside a unit of work.
"""

from __future__ import annotations

import contextlib
import threading
from contextlib import AbstractContextManager as ContextManager
from typing import Any, Generic, Self, TypeVar

from subsidy.platform.db import Database, Transaction

_Tables = TypeVar("_Tables")


class _NotCommitted(Exception):
    """Thrown into the transaction of a unit of work left without commit(): it rolls back."""


class ThreadUnitOfWork(Generic[_Tables]):
    #: Whose tables, in the error for a read outside a unit of work.
    tables_owner = "the store"

    def __init__(self, db: Database) -> None:
        self.db = db
        # .open: (the transaction, its tables) open on this thread, if any
        self._local = threading.local()

    def open_tables(self, tx: Transaction) -> _Tables:
        """The tables of one open transaction."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        if getattr(self._local, "open", None) is not None:
            raise RuntimeError("a unit of work is already open on this thread")
        transaction = self.db.transaction()
        tx = transaction.__enter__()
        try:
            tables = self.open_tables(tx)
        except BaseException as exc:
            transaction.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._local.open = (transaction, tables)
        return self

    def commit(self) -> None:
        transaction, _ = self._open()
        self._local.open = None
        transaction.__exit__(None, None, None)  # COMMIT, or RELEASE SAVEPOINT inside a batch

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        current: tuple[ContextManager[Transaction], _Tables] | None = getattr(self._local, "open", None)
        if current is None:  # committed
            return
        self._local.open = None
        if exc is None:
            exc = _NotCommitted()
        # ROLLBACK (or ROLLBACK TO SAVEPOINT); the exception itself is the caller's to see.
        with contextlib.suppress(_NotCommitted):
            current[0].__exit__(type(exc), exc, exc.__traceback__)

    def tables(self) -> _Tables:
        """The tables of this thread's unit of work; RuntimeError outside one."""
        return self._open()[1]

    def _open(self) -> tuple[ContextManager[Transaction], _Tables]:
        current: tuple[ContextManager[Transaction], _Tables] | None = getattr(self._local, "open", None)
        if current is None:
            raise RuntimeError(
                f"{self.tables_owner}'s tables are read and written inside a unit of work (with store: …)"
            )
        return current
