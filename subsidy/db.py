"""One small database layer for the services' stores: SQLite (the embedded
default, a file per service) or PostgreSQL (production), chosen by URL.

    sqlite:///var/intake.db        sqlite:///:memory:
    postgresql://user@host:5432/db

SQL is written once with `?` placeholders; for PostgreSQL they become `%s`.
Every write happens inside `with db.transaction() as tx:`, which commits on
success and rolls back on any exception, so a failure leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from subsidy.metrics import DB_TRANSACTION_SECONDS as TRANSACTION_SECONDS


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


class Database:
    """PostgreSQL over TLS is configured in the URL (libpq parameters):
    ``postgresql://user@db:5432/subsidy?sslmode=verify-full&sslrootcert=/etc/subsidy/pg/ca.crt``,
    the password from ``*_DATABASE_URL_FILE`` or PGPASSFILE. The URL is never logged (``__repr__`` redacts it)."""

    def __repr__(self) -> str:
        from subsidy.security.secrets import redact_url

        return f"Database({redact_url(self.url)!r}, store={self.store!r})"

    def __init__(self, url: str, store: str = "store", pool_size: int = 4):
        self.url = url
        self.store = store
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
            from subsidy.security.secrets import redact_url

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

    def ping(self) -> bool:
        try:
            with self.transaction() as tx:
                tx.one("SELECT 1")
            return True
        except Exception:
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
