"""Versioned schema migrations for the services' stores (Alembic; why Alembic:
docs/adr/0010-schema-migrations.md; how to add one: docs/operations.md#schema-migrations).

Each service with a store (intake, payout, notify) owns its migration history:
a ``History`` naming a folder of numbered Alembic revision scripts
(``subsidy/services/<name>/adapters/migrations/v0001_baseline.py``, ...) and a
version table of its own, ``<name>_schema_version``, in its database. The
histories are independent, so the three services may share one PostgreSQL
database (deploy/k8s does) or have one each.

- ``upgrade(db, history)`` brings a database to the newest revision: what
  ``subsidy migrate --service NAME`` (the migration Job before a rollout, and
  the dev and test harnesses before they start a service) runs. Everything
  pending runs in ONE transaction, with the version row: a failure leaves
  the database as it was. On PostgreSQL the transaction first takes the
  service's advisory lock, so two ``migrate`` runs at once take turns (the
  second finds nothing left to do); on SQLite ``BEGIN IMMEDIATE`` serialises
  them. A database created by the code before versioned migrations (tables
  made with ``CREATE TABLE IF NOT EXISTS`` at start-up, no version table) is
  adopted: its tables are compared with what the baseline revision creates
  and, when they match, it is marked at the baseline instead of failing on
  tables that already exist.
- ``require(db, history)`` is what a service runs at start instead of creating
  tables: it reads the version and refuses a schema older than the code
  needs, naming the service, both versions and the command to run. It does
  not import Alembic (or SQLAlchemy): the head is the newest revision file's
  number, which ``upgrade`` checks against Alembic's own reading of the folder.

Revisions are forward only: four-digit numbers, each one's ``down_revision``
the one before (checked), no downgrades. A new revision must keep the
previous release working on the migrated schema (add, do not rename or drop,
in the release that needs it; remove in a later one), because during a
rollout the old pods run beside the new schema.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from subsidy.platform.db import Database, DatabaseUnavailable

_REVISION_FILE = re.compile(r"v(\d{4})_[a-z0-9_]+\.py")


class MigrationError(RuntimeError):
    """A migration could not run; nothing was changed."""


class SchemaNotReady(RuntimeError):
    """The database's schema is older than the service needs (or absent)."""


@dataclasses.dataclass(frozen=True)
class History:
    """One service's migrations: ``directory`` holds ``vNNNN_<slug>.py``
    Alembic revision scripts, NNNN being the revision id (0001 the baseline)."""

    service: str
    directory: Path

    @property
    def version_table(self) -> str:
        return f"{self.service}_schema_version"

    @property
    def lock_key(self) -> int:
        """The PostgreSQL advisory lock ``migrate`` holds for this service (a
        positive 31-bit number, so pg_locks shows it as classid 0, objid key)."""
        return zlib.crc32(f"subsidy-migrate:{self.service}".encode()) & 0x7FFF_FFFF

    @property
    def command(self) -> str:
        return f"subsidy migrate --service {self.service}"

    def revisions(self) -> list[str]:
        """The revision ids, oldest first, from the file names (no Alembic)."""
        found = []
        for path in sorted(self.directory.glob("*.py")):
            if path.name == "__init__.py":
                continue
            match = _REVISION_FILE.fullmatch(path.name)
            if match is None:
                raise MigrationError(
                    f"{self.service}: {path}: not a revision file name: "
                    "want vNNNN_<slug>.py (four digits, lower-case slug)"
                )
            found.append(match.group(1))
        expected = [f"{n:04d}" for n in range(1, len(found) + 1)]
        if found != expected:
            raise MigrationError(
                f"{self.service}: the revisions in {self.directory} are {found}; "
                f"they must be numbered {expected} with no gap or repeat"
            )
        return found

    def head(self) -> str:
        revisions = self.revisions()
        if not revisions:
            raise MigrationError(f"{self.service}: no revision files in {self.directory}")
        return revisions[-1]


class OwnedSchema:
    """What the store of a service with a history (intake, payout, notify)
    has beside its tables: ``history``, the database ``db``, and

    - ``create_schema()``: bring the database to the newest revision, as
      ``subsidy migrate --service NAME`` does — for tests and tools that make
      a store of their own. The service never calls it: at start it only
      checks the version (``require``, subsidy/platform/process.py);
    - ``ping()``: does the database answer (the services' health)?
    """

    history: History
    db: Database

    def create_schema(self) -> None:
        upgrade(self.db, self.history)

    def ping(self) -> bool:
        return self.db.ping()


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What ``upgrade`` did: the version before (None: no schema; the
    baseline when an old database was adopted) and after, the revisions
    applied (id, description), and whether an old database was adopted."""

    service: str
    before: str | None
    after: str
    applied: tuple[tuple[str, str], ...]
    adopted: bool

    def lines(self) -> list[str]:
        s = self.service
        out = []
        if self.adopted:
            out.append(
                f"{s}: adopted a database created before versioned migrations "
                f"(its tables match the baseline): marked at {self.before} without changing it"
            )
        for revision, doc in self.applied:
            out.append(f"{s}: applied {revision} ({doc})")
        if self.applied:
            out.append(f"{s}: schema at {self.after} (was {self.before or 'empty'})")
        else:
            out.append(f"{s}: schema at {self.after}, nothing to apply")
        return out


# ----------------------------------------------------------------------------- service start


def current_version(db: Database, history: History) -> str | None:
    """The version recorded in the database; None when there is none. Plain
    SQL through the store's own Database: no Alembic at service start."""
    table = history.version_table
    with db.transaction() as tx:
        if db.dialect == "sqlite":
            exists = tx.one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
        else:  # to_regclass follows search_path, as the store's own queries do
            exists = tx.one("SELECT to_regclass(?)", (table,))[0]
        if not exists:
            return None
        rows = tx.all(f"SELECT version_num FROM {table}")  # nosec B608 - a name built from the service's
    if len(rows) > 1:
        raise SchemaNotReady(
            f"{history.service}: {table} holds {len(rows)} versions "
            f"({', '.join(sorted(r[0] for r in rows))}); a history has one line"
        )
    return rows[0][0] if rows else None


def check(db: Database, history: History) -> str:
    """The schema version if this code can run on it (the newest it knows or
    a newer one); raises SchemaNotReady, saying what to run, otherwise."""
    s, needed = history.service, history.head()
    run = (
        f"Run `{history.command}` against this database first (it reads SUBSIDY_{s.upper()}_DATABASE_URL, "
        f"or pass --database-url; in Kubernetes that is the Job subsidy-{s}-migrate)"
    )
    found = current_version(db, history)
    if found is None:
        raise SchemaNotReady(
            f"{s} cannot start: the database has no {s} schema version (no table {history.version_table}), "
            f"{s} needs schema version {needed}. The database is new or was created before versioned "
            f"migrations. {run}."
        )
    if not (len(found) == 4 and found.isdigit()):
        raise SchemaNotReady(
            f"{s} cannot start: {history.version_table} records version {found!r}, "
            "which is not one of this system's revisions (four digits)"
        )
    if int(found) < int(needed):
        raise SchemaNotReady(
            f"{s} cannot start: the database schema is at version {found}, this {s} needs version {needed}. {run}."
        )
    return found


def require(db: Database, history: History, log: logging.Logger, wait_s: float = 30.0) -> str:
    """``check``, waiting up to ``wait_s`` for the database to answer (a pod
    may start before its database); a schema that is too old fails at once."""
    deadline = time.monotonic() + wait_s
    delay = 0.25
    while True:
        try:
            found = check(db, history)
            break
        except SchemaNotReady:
            raise
        except Exception as exc:
            if time.monotonic() >= deadline:
                raise
            log.warning("database not ready, retrying", extra={"fields": {"error": str(exc)[:300]}})
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    head = history.head()
    if found != head:
        # A rollback of the code after a migration: the revisions are written
        # to keep the previous release working (module docstring).
        log.warning(
            "database schema is newer than this release",
            extra={"fields": {"schema_version": found, "release_schema_version": head}},
        )
    else:
        log.info("database schema is current", extra={"fields": {"schema_version": found}})
    return found


# ----------------------------------------------------------------------------- migrate


def upgrade(
    db: Database,
    history: History,
    *,
    lock_wait_s: float = 600.0,
    wait_s: float = 0.0,
    say: Callable[[str], None] = lambda line: None,
) -> Outcome:
    """Bring ``db`` to ``history``'s newest revision (see the module doc).
    ``wait_s``: how long to keep trying while the database cannot be reached;
    ``lock_wait_s``: how long to wait for another migration of the same
    service; ``say`` hears about the waits as they happen."""
    from sqlalchemy.exc import SQLAlchemyError

    deadline = time.monotonic() + wait_s
    told = False
    while True:
        try:
            with db.connection() as raw:
                return _upgrade(raw, db.dialect, history, lock_wait_s, say)
        except DatabaseUnavailable as exc:
            if time.monotonic() >= deadline:
                raise MigrationError(f"{history.service}: {exc}") from exc
            if not told:
                say(f"{history.service}: database not reachable yet ({exc}); retrying for up to {wait_s:.0f}s")
                told = True
            time.sleep(2.0)
        except SQLAlchemyError as exc:  # e.g. the connection lost midway: rolled back with it
            raise MigrationError(f"{history.service}: {str(exc).splitlines()[0]}; nothing was changed") from exc


def _engine(raw: Any, dialect: str) -> Any:
    """A SQLAlchemy engine (what Alembic speaks) over one DB-API connection
    we already have: the store's SQLite connection or a PostgreSQL one of
    our own (Database.connection). It never opens or closes connections."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.pool import StaticPool

    if dialect == "sqlite":
        engine = create_engine("sqlite://", creator=lambda: raw, poolclass=StaticPool)

        # The connection is in autocommit mode (isolation_level None), so the
        # driver begins nothing itself: begin here, taking SQLite's write lock
        # at once, which also makes a second migrator wait for this one.
        @event.listens_for(engine, "begin")
        def _begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine("postgresql+psycopg://", creator=lambda: raw, poolclass=StaticPool)


def _upgrade(raw: Any, dialect: str, history: History, lock_wait_s: float, say: Callable[[str], None]) -> Outcome:
    engine = _engine(raw, dialect)
    try:
        with engine.connect() as connection, connection.begin():
            return _migrate(connection, history, lock_wait_s, say)
    finally:
        engine.dispose(close=False)  # the connection is Database.connection's to close


def _config(history: History, connection: Any, applied: list) -> Any:
    from alembic.config import Config

    def on_version_apply(ctx: Any, step: Any, heads: Any, run_args: Any) -> None:
        if not step.is_stamp:
            applied.append((step.up_revision_id, step.up_revision.doc or ""))

    config = Config(
        attributes={
            "connection": connection,
            "version_table": history.version_table,
            "on_version_apply": on_version_apply,
        }
    )
    config.set_main_option("script_location", str(Path(__file__).parent))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(history.directory))
    return config


def _scripts(history: History) -> Any:
    """Alembic's reading of the folder, checked against the file names: one
    line 0001 <- 0002 <- ..., each file's revision its name's number."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(Path(__file__).parent), version_locations=[str(history.directory)])
    names = history.revisions()
    chain = list(reversed(list(script.walk_revisions())))
    for position, sc in enumerate(chain):
        number = _REVISION_FILE.fullmatch(Path(sc.path).name).group(1)
        previous = names[position - 1] if position else None
        if sc.revision != number or sc.down_revision != previous:
            raise MigrationError(
                f"{history.service}: {Path(sc.path).name} declares revision {sc.revision!r} after "
                f"{sc.down_revision!r}; it must be revision {number!r} after {previous!r}"
            )
    if [sc.revision for sc in chain] != names:
        raise MigrationError(
            f"{history.service}: Alembic reads revisions {[sc.revision for sc in chain]} "
            f"from {history.directory}, the files are {names}"
        )
    return script


def _current(connection: Any, history: History) -> str | None:
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(connection, opts={"version_table": history.version_table})
    return context.get_current_revision()


def _lock(connection: Any, history: History, wait_s: float, say: Callable[[str], None]) -> None:
    """PostgreSQL: this transaction's advisory lock for the service, waiting
    up to ``wait_s`` for another ``migrate`` to finish (released at commit or
    rollback, and by the server if the process dies)."""
    from sqlalchemy import text

    key = history.lock_key
    deadline = time.monotonic() + wait_s
    told = False
    while not connection.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": key}).scalar():
        holder = connection.execute(
            text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = 0 "
                "AND objid::bigint = :key AND objsubid = 1 "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
            {"key": key},
        ).scalar()
        if time.monotonic() >= deadline:
            raise MigrationError(
                f"{history.service}: another migration of {history.service} (PostgreSQL backend pid {holder}) "
                f"still holds the migration lock after {wait_s:.0f}s; nothing was changed"
            )
        if not told:
            say(
                f"{history.service}: waiting for the migration lock: another `{history.command}` is running "
                f"(PostgreSQL backend pid {holder})"
            )
            told = True
        time.sleep(0.5)


def _migrate(connection: Any, history: History, lock_wait_s: float, say: Callable[[str], None]) -> Outcome:
    from alembic import command
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    script = _scripts(history)
    if connection.dialect.name == "postgresql":
        _lock(connection, history, lock_wait_s, say)
    revisions = history.revisions()
    head, baseline = revisions[-1], revisions[0]
    before = _current(connection, history)
    if before is not None and before not in revisions:
        raise MigrationError(
            f"{history.service}: the database is at version {before}, newer than this release's "
            f"newest ({head}): run the migrate of the release that wrote it; nothing was changed"
        )
    applied: list[tuple[str, str]] = []
    config = _config(history, connection, applied)
    adopted = False
    if before is None and _is_legacy(connection, history):
        command.stamp(config, baseline)
        adopted, before = True, baseline
    pending = revisions[revisions.index(before) + 1 :] if before else revisions
    try:
        command.upgrade(config, "head")
    except (CommandError, SQLAlchemyError) as exc:
        failed = pending[len(applied)] if len(applied) < len(pending) else "?"
        where = script.get_revision(failed).path if failed != "?" else history.directory
        raise MigrationError(
            f"{history.service}: migration {failed} ({where}) failed: "
            f"{str(exc).splitlines()[0]}; nothing was changed (all pending migrations "
            "run in one transaction, rolled back)"
        ) from exc
    after = _current(connection, history)
    if after != head:
        raise MigrationError(f"{history.service}: after migrating the database is at {after}, not {head}")
    return Outcome(history.service, before, after, tuple(applied), adopted)


# ----------------------------------------------------------------------------- adopting old databases


def _shape(connection: Any, tables: list[str]) -> dict[str, tuple[list[str], set[str]]]:
    """Per table present: its columns in order and its index names."""
    from sqlalchemy import inspect

    inspector = inspect(connection)
    present = set(inspector.get_table_names())
    return {
        t: ([c["name"] for c in inspector.get_columns(t)], {i["name"] for i in inspector.get_indexes(t)})
        for t in tables
        if t in present
    }


@functools.cache
def _baseline_shape(history: History) -> dict[str, tuple[list[str], set[str]]]:
    """The tables, columns and indexes the baseline revision creates: run it
    on a scratch in-memory SQLite database and look (one source of truth:
    the baseline itself, not a second list to keep in step)."""
    import sqlite3

    from alembic import command

    raw = sqlite3.connect(":memory:", isolation_level=None)
    try:
        engine = _engine(raw, "sqlite")
        with engine.connect() as connection:
            with connection.begin():
                command.upgrade(_config(history, connection, []), history.revisions()[0])
            from sqlalchemy import inspect

            tables = [
                t for t in inspect(connection).get_table_names() if t not in (history.version_table, "sqlite_sequence")
            ]
            return _shape(connection, tables)
    finally:
        raw.close()


def _is_legacy(connection: Any, history: History) -> bool:
    """Whether an unversioned database holds the tables the code before
    migrations created; raises when it holds some or different ones (adopting
    them could hide a wrong database URL or a half-made schema)."""
    expected = _baseline_shape(history)
    found = _shape(connection, list(expected))
    if not found:
        return False
    problems = [f"table {t} is missing" for t in expected if t not in found]
    for table, (columns, indexes) in found.items():
        want_columns, want_indexes = expected[table]
        if columns != want_columns:
            problems.append(f"table {table} has columns {columns}, the baseline {want_columns}")
        if not want_indexes <= indexes:
            problems.append(f"table {table} lacks the indexes {sorted(want_indexes - indexes)}")
    if problems:
        raise MigrationError(
            f"{history.service}: the database has {history.service} tables but no schema version, and they are "
            f"not the schema {history.service} created before versioned migrations: {'; '.join(problems)}. "
            "Not adopting it (check the database URL); nothing was changed"
        )
    return True
