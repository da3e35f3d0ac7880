"""One small database layer for the services' stores: SQLite (the embedded
default, a file per service) or PostgreSQL (production), chosen by URL.

    sqlite:///var/intake.db        sqlite:///:memory:
    postgresql://user@host:5432/db

SQL is written once with `?` placeholders; for PostgreSQL they become `%s`.
Every write happens inside `with db.transaction() as tx:`, which commits on
success and rolls back on any exception, so a failure leaves nothing behind.

Batches. `with db.batch():` opens one transaction for the calling thread;
every `db.transaction()` that thread opens until the batch ends joins it as
a SAVEPOINT instead of being a transaction of its own. An inner transaction
that raises rolls back to its savepoint (only its own writes are undone, as
if it had been a transaction of its own); one that succeeds is kept, but
nothing is durable before the batch commits, and a batch that fails (an
exception inside it, a failed COMMIT) rolls back everything, inner
transactions included. Many units of work then cost one commit (one fsync)
instead of one each. Other threads are not affected: their transactions are
their own (on SQLite they wait for the batch, which holds the write lock).
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from subsidy.platform.metrics import DB_TRANSACTION_SECONDS as TRANSACTION_SECONDS


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached."""


class Transaction:
    """What a unit of work sees: execute with `?` placeholders."""

    def __init__(self, connection: Any, dialect: str):
        self._connection = connection
        self.dialect = dialect

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if self.dialect == "postgresql":
            sql = sql.replace("?", "%s")
        cursor = self._connection.cursor()
        cursor.execute(sql, tuple(params))
        return cursor

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        return self.execute(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return list(self.execute(sql, params).fetchall())


class _Batch:
    """The batch transaction open on one thread (Database.batch)."""

    def __init__(self, tx: Transaction):
        self.tx = tx
        self.depth = 0  # inner transactions open (savepoint names)
        #: An inner rollback that failed: the batch cannot be committed.
        self.failed: BaseException | None = None


class Database:
    """PostgreSQL over TLS is configured in the URL (libpq parameters):
    ``postgresql://user@db:5432/subsidy?sslmode=verify-full&sslrootcert=/etc/subsidy/pg/ca.crt``,
    the password from ``*_DATABASE_URL_FILE`` or PGPASSFILE. The URL is never logged (``__repr__`` redacts it)."""

    def __repr__(self) -> str:
        from subsidy.platform.security.secrets import redact_url

        return f"Database({redact_url(self.url)!r}, store={self.store!r})"

    def __init__(self, url: str, store: str = "store", pool_size: int = 4):
        self.url = url
        self.store = store
        self._local = threading.local()  # .batch: the _Batch open on this thread, if any
        if url.startswith("sqlite:///"):
            self.dialect = "sqlite"
            path = url[len("sqlite:///") :]
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            # One connection, used by one thread at a time: SQLite serialises
            # writers anyway, and BEGIN IMMEDIATE takes the write lock up front.
            self._sqlite = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            self._sqlite.execute("PRAGMA journal_mode=WAL")
            self._sqlite.execute("PRAGMA synchronous=FULL")
            self._sqlite.execute("PRAGMA foreign_keys=ON")
            self._lock = threading.Lock()
        elif url.startswith(("postgresql://", "postgres://")):
            self.dialect = "postgresql"
            self._pool: queue.LifoQueue = queue.LifoQueue()
            self._pool_size = pool_size
            self._opened = 0
            self._pool_lock = threading.Lock()
        else:
            from subsidy.platform.security.secrets import redact_url

            raise ValueError(f"unsupported database URL {redact_url(url)!r}: use sqlite:///PATH or postgresql://...")

    # -------------------------------------------------------------- postgres

    def _pg_connect(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self.url, autocommit=False, connect_timeout=5)
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"PostgreSQL is not reachable: {exc}".splitlines()[0]) from exc

    def _pg_take(self) -> Any:
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            pass
        with self._pool_lock:
            if self._opened < self._pool_size:
                self._opened += 1
                try:
                    return self._pg_connect()
                except Exception:
                    self._opened -= 1
                    raise
        return self._pool.get(timeout=30)

    def _pg_give(self, connection: Any, broken: bool) -> None:
        if broken or connection.closed:
            with contextlib.suppress(Exception):
                connection.close()
            with self._pool_lock:
                self._opened -= 1
        else:
            self._pool.put(connection)

    # ---------------------------------------------------------------- common

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A transaction of its own, or a savepoint of the batch open on this thread."""
        if self.in_batch():
            with self._savepoint(self._local.batch) as tx:
                yield tx
            return
        with self._transaction() as tx:
            yield tx

    def in_batch(self) -> bool:
        """Does this thread hold a batch open (its transactions are savepoints of it)?"""
        return getattr(self._local, "batch", None) is not None

    @contextlib.contextmanager
    def batch(self) -> Iterator[Transaction]:
        """One transaction for everything this thread does inside; see the
        module docstring. A batch inside a batch joins the outer one."""
        if self.in_batch():
            yield self._local.batch.tx
            return
        with self._transaction() as tx:
            batch = self._local.batch = _Batch(tx)
            try:
                yield tx
            finally:
                self._local.batch = None
            if batch.failed is not None:
                raise DatabaseUnavailable(
                    f"a rollback inside the batch failed: {batch.failed}".splitlines()[0]
                ) from batch.failed

    @contextlib.contextmanager
    def _savepoint(self, batch: _Batch) -> Iterator[Transaction]:
        if batch.failed is not None:  # the connection is unusable: fail fast, the batch rolls back
            raise DatabaseUnavailable(f"the batch failed earlier: {batch.failed}".splitlines()[0])
        batch.depth += 1
        name = f"subsidy_inner_{batch.depth}"
        try:
            batch.tx.execute(f"SAVEPOINT {name}")
            try:
                yield batch.tx
            except BaseException:
                try:
                    batch.tx.execute(f"ROLLBACK TO SAVEPOINT {name}")
                    batch.tx.execute(f"RELEASE SAVEPOINT {name}")
                except Exception as exc:  # noqa: BLE001 - the original error is the one to raise
                    batch.failed = exc
                raise
            batch.tx.execute(f"RELEASE SAVEPOINT {name}")
        finally:
            batch.depth -= 1

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Transaction]:
        started = time.perf_counter()
        outcome = "rollback"
        try:
            if self.dialect == "sqlite":
                with self._lock:
                    self._sqlite.execute("BEGIN IMMEDIATE")
                    try:
                        yield Transaction(self._sqlite, "sqlite")
                        self._sqlite.execute("COMMIT")
                        outcome = "commit"
                    except BaseException:
                        self._sqlite.execute("ROLLBACK")
                        raise
            else:
                import psycopg

                connection = self._pg_take()
                broken = False
                try:
                    yield Transaction(connection, "postgresql")
                    connection.commit()
                    outcome = "commit"
                except BaseException as exc:
                    broken = isinstance(exc, psycopg.OperationalError)
                    with contextlib.suppress(Exception):
                        connection.rollback()
                    if broken:
                        raise DatabaseUnavailable(f"PostgreSQL failed: {exc}".splitlines()[0]) from exc
                    raise
                finally:
                    self._pg_give(connection, broken)
        finally:
            TRANSACTION_SECONDS.labels(self.store, outcome).observe(time.perf_counter() - started)

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        """A DB-API connection for a tool that runs its own transactions (the
        schema migrations, subsidy.platform.migrations), for the duration of
        the ``with``; nobody else uses it meanwhile.

        SQLite: the store's own connection (autocommit mode, ``isolation_level
        None``), held under the store's lock: an in-memory database exists only
        on that connection, and one writer at a time is SQLite's rule anyway.
        PostgreSQL: a connection of its own, outside the pool, closed at the
        end: session state a tool leaves behind (advisory locks, type
        adapters) must not reach the connections the store's transactions use."""
        if self.dialect == "sqlite":
            with self._lock:
                yield self._sqlite
            return
        connection = self._pg_connect()
        try:
            yield connection
        finally:
            with contextlib.suppress(Exception):
                connection.close()

    def ping(self) -> bool:
        try:
            with self.transaction() as tx:
                tx.one("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - a health probe: any failure means "not reachable"
            return False

    def close(self) -> None:
        if self.dialect == "sqlite":
            self._sqlite.close()
        else:
            while True:
                try:
                    self._pool.get_nowait().close()
                except queue.Empty:
                    break

    def is_unique_violation(self, exc: BaseException) -> bool:
        if self.dialect == "sqlite":
            return isinstance(exc, sqlite3.IntegrityError)
        import psycopg

        return isinstance(exc, psycopg.errors.UniqueViolation)
