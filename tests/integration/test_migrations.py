"""Schema migrations against a real PostgreSQL (the harness's) and SQLite, through
the real command (``python -m subsidy.cli migrate``, what the Kubernetes Job runs):

- an old database WITH DATA, as the code before migrations created and filled
  it, is migrated forward: adopted at the baseline, every row intact, the
  version current, the outbox ids going on where they were;
- on PostgreSQL the baseline is the old schema exactly (columns, types,
  defaults, identity, indexes, constraints, from the catalogue);
- two ``migrate`` runs at once take turns on the advisory lock: one waits
  while another holds it, and two started together both succeed, one applying;
- the three services migrate side by side into one database, as in deploy/k8s;
- a service process refuses to start on a database without its schema, saying
  what to run.

No Kafka: nothing here gets that far.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import legacy_schema
import psycopg
import pytest

from subsidy.platform import migrations
from subsidy.platform.db import Database
from subsidy.services.intake.adapters.migrations import HISTORY as INTAKE
from subsidy.services.notify.adapters.migrations import HISTORY as NOTIFY
from subsidy.services.payout.adapters.migrations import HISTORY as PAYOUT

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HISTORIES = {"intake": INTAKE, "payout": PAYOUT, "notify": NOTIFY}
OUTBOX = {"intake": "intake_outbox", "payout": "payout_outbox"}


def pg_schema(postgres_url: str) -> tuple[str, str]:
    """A fresh schema of the test database, and a URL whose search_path is it."""
    schema = f"mig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in postgres_url else "?"
    return schema, f"{postgres_url}{sep}options=-csearch_path%3D{schema}"


def database_url(kind: str, tmp_path: Path, postgres_url: str) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}" if kind == "sqlite" else pg_schema(postgres_url)[1]


def migrate(service: str, url: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "subsidy.cli", "migrate", "--service", service, "--database-url", url, *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def start_migrate(service: str, url: str) -> tuple[subprocess.Popen, queue.Queue[str | None]]:
    """``migrate`` in the background; its output lines arrive on the queue (None at the end)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "subsidy.cli", "migrate", "--service", service, "--database-url", url],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return process, lines


def next_line(lines: queue.Queue[str | None], timeout: float = 60.0) -> str | None:
    return lines.get(timeout=timeout)


# ----------------------------------------------------------------------------- old data forward

#: Columns appended to a baseline table by later revisions (nullable; TEXT
#: unless LATER_TYPES says otherwise), and what an old row holds in them: 0002
#: the outbox's parked_at and parked_reason (NULL); payout's 0003 the grant
#: state (PAYABLE: a grant recorded before the notice gate had its tranches at
#: once) and its notice columns (NULL); payout's 0004 a grant's void flag and
#: cap released, a tranche's hold (all NULL: nothing was void or held).
_PARKED = ("parked_at", "parked_reason")
_GRANT_STATE = (
    "state",
    "uses",
    "tranche_shares",
    "notice_id",
    "payable_on",
    "withdrawn_on",
    "withdraw_reason",
    "state_changed_at",
)
_GRANT_VOID = ("void", "cap_released_fen")
_TRANCHE_HOLD = ("held_on", "hold_until", "hold_reason", "hold_count")
LATER_COLUMNS = {
    "intake_applications": ("firm_name", "firm_name_key", "clause"),  # intake's 0005: the search across firms
    "intake_outbox": _PARKED,
    "payout_outbox": _PARKED,
    "payout_grants": _GRANT_STATE + _GRANT_VOID,
    "payout_tranches": _TRANCHE_HOLD,
}
LATER_TYPES = {("payout_grants", "cap_released_fen"): "bigint", ("payout_tranches", "hold_count"): "integer"}
OLD_ROWS_HOLD = {
    # intake's 0005 fills the search columns from the payload: the legacy
    # rows' payloads are not Applications, so empty name, key and clause.
    "intake_applications": ("", "", ""),
    "intake_outbox": (None, None),
    "payout_outbox": (None, None),
    "payout_grants": ("PAYABLE",) + (None,) * 9,
    "payout_tranches": (None,) * 4,
}
#: Indexes later revisions add to baseline tables.
LATER_INDEXES = (
    "payout_grants_by_decision",
    # intake's 0005: the listings across firms
    "intake_applications_by_time",
    "intake_applications_by_clause",
    "intake_applications_by_state",
    "intake_proposals_by_time",
    "intake_proposals_by_state",
)
#: Tables later revisions create (payout's 0004: firm facts and recoveries;
#: intake's 0003: 免申即享 proposals; intake's 0004: the decision history).
LATER_TABLES = (
    "intake_decisions",
    "intake_proposals",
    "payout_firm_facts",
    "payout_recoveries",
    "payout_recovery_tranches",
    "payout_recovery_confirmations",
)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@pytest.mark.parametrize("service", sorted(HISTORIES))
def test_an_old_database_with_data_is_migrated_forward(kind, service, tmp_path, postgres_url):
    url = database_url(kind, tmp_path, postgres_url)
    history = HISTORIES[service]
    db = Database(url, store="legacy")
    try:
        with db.transaction() as tx:  # what the code before migrations created and wrote
            legacy_schema.create(tx, service)
            legacy_schema.fill(tx, service)
            before = legacy_schema.dump(tx, service)
        assert migrations.current_version(db, history) is None

        result = migrate(service, url)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[1] == (
            f"{service}: adopted a database created before versioned migrations (its tables match "
            "the baseline): marked at 0001 without changing it"
        )
        assert lines[-1].startswith(f"{service}: schema at {history.head()}")

        with db.transaction() as tx:
            after = legacy_schema.dump(tx, service)
        # Columns later revisions add hold what OLD_ROWS_HOLD says on old rows.
        for table, held in OLD_ROWS_HOLD.items():
            if table in after:
                assert all(row[-len(held) :] == held for row in after[table]), table
                after[table] = [row[: -len(held)] for row in after[table]]
        assert after == before
        assert migrations.check(db, history) == history.head()
        if service in OUTBOX:  # the id sequence was kept, not restarted: the next row follows the old ones
            with db.transaction() as tx:
                columns = "event_id, " if service == "payout" else ""
                values = "'after-migration', " if service == "payout" else ""
                tx.execute(
                    f"INSERT INTO {OUTBOX[service]} ({columns}topic, key, value, headers, created_at) "
                    f"VALUES ({values}'t', ?, ?, '[]', 'now')",
                    (b"k", b"v"),
                )
                ids = [r[0] for r in tx.all(f"SELECT id FROM {OUTBOX[service]} ORDER BY id")]
            assert ids == [1, 2, 3]

        again = migrate(service, url)
        assert again.returncode == 0 and again.stdout.splitlines()[-1] == (
            f"{service}: schema at {history.head()}, nothing to apply"
        )
    finally:
        db.close()


# ----------------------------------------------------------------------------- the baseline is the old schema


def catalogue(postgres_url: str, schema: str) -> dict[str, list[tuple]]:
    """Columns, indexes and constraints of a schema, with its name taken out."""
    with psycopg.connect(postgres_url) as conn:
        columns = conn.execute(
            "SELECT table_name, ordinal_position, column_name, data_type, is_nullable, column_default, is_identity, "
            "identity_generation FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name NOT LIKE '%%schema_version' ORDER BY 1, 2",
            (schema,),
        ).fetchall()
        indexes = conn.execute(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = %s "
            "AND tablename NOT LIKE '%%schema_version' ORDER BY 1, 2",
            (schema,),
        ).fetchall()
        constraints = conn.execute(
            "SELECT t.relname, c.conname, c.contype, pg_get_constraintdef(c.oid) FROM pg_constraint c "
            "JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
            "WHERE n.nspname = %s AND t.relname NOT LIKE '%%schema_version' ORDER BY 1, 2",
            (schema,),
        ).fetchall()
    strip = lambda row: tuple(v.replace(f"{schema}.", "") if isinstance(v, str) else v for v in row)  # noqa: E731
    return {
        "columns": [strip(r) for r in columns],
        "indexes": [strip(r) for r in indexes],
        "constraints": [strip(r) for r in constraints],
    }


@pytest.mark.parametrize("service", sorted(HISTORIES))
def test_on_postgresql_the_baseline_is_the_old_schema_exactly(service, postgres_url):
    old_schema, old_url = pg_schema(postgres_url)
    new_schema, new_url = pg_schema(postgres_url)
    db = Database(old_url, store="legacy")
    with db.transaction() as tx:
        legacy_schema.create(tx, service)
    db.close()
    assert migrate(service, new_url).returncode == 0
    old, new = catalogue(postgres_url, old_schema), catalogue(postgres_url, new_schema)
    assert old["columns"] and old["indexes"] and old["constraints"]
    # migrate goes to the head: the columns (nullable TEXT) and indexes later
    # revisions append are the only difference
    for part in ("columns", "indexes", "constraints"):
        new[part] = [row for row in new[part] if row[0] not in LATER_TABLES]
    later = [c for c in new["columns"] if c[2] in LATER_COLUMNS.get(c[0], ())]
    assert sorted((c[0], c[2], c[3], c[4]) for c in later) == sorted(
        (table, column, LATER_TYPES.get((table, column), "text"), "YES")
        for table, columns in LATER_COLUMNS.items()
        if table in {c[0] for c in later}
        for column in columns
    )
    new["columns"] = [c for c in new["columns"] if c not in later]
    new["indexes"] = [i for i in new["indexes"] if i[1] not in LATER_INDEXES]
    assert new == old


# ----------------------------------------------------------------------------- two at once


def test_a_migrate_waits_while_another_holds_the_services_lock(postgres_url):
    schema, url = pg_schema(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (PAYOUT.lock_key,))
        holder_pid = holder.execute("SELECT pg_backend_pid()").fetchone()[0]
        process, lines = start_migrate("payout", url)
        try:
            assert next_line(lines).startswith("payout: migrating ")
            assert next_line(lines) == (
                "payout: waiting for the migration lock: another `subsidy migrate --service "
                f"payout` is running (PostgreSQL backend pid {holder_pid})"
            )
            time.sleep(1.5)
            assert process.poll() is None, "it went on without the lock"
            with psycopg.connect(url) as peek:
                assert peek.execute("SELECT to_regclass('payout_grants')").fetchone()[0] is None
            holder.execute("SELECT pg_advisory_unlock(%s)", (PAYOUT.lock_key,))
            assert process.wait(60) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    rest = []
    while (line := next_line(lines)) is not None:
        rest.append(line)
    assert rest[0].startswith("payout: applied 0001 (") and rest[-1] == f"payout: schema at {PAYOUT.head()} (was empty)"
    db = Database(url, store="check")
    assert migrations.check(db, PAYOUT) == PAYOUT.head()
    db.close()


def test_two_migrates_started_together_both_succeed_and_one_applies(postgres_url):
    schema, url = pg_schema(postgres_url)
    runs = [start_migrate("payout", url) for _ in range(2)]
    outputs = []
    for process, lines in runs:
        assert process.wait(120) == 0
        output = []
        while (line := next_line(lines)) is not None:
            output.append(line)
        outputs.append(output)
    applied = [o for o in outputs if any(line.startswith("payout: applied 0001") for line in o)]
    assert len(applied) == 1, outputs
    other = next(o for o in outputs if o is not applied[0])
    assert other[-1] == f"payout: schema at {PAYOUT.head()}, nothing to apply", outputs
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version_num FROM payout_schema_version").fetchall() == [(PAYOUT.head(),)]


# ----------------------------------------------------------------------------- one database, three histories


def test_the_three_services_migrate_side_by_side_in_one_database(postgres_url):
    schema, url = pg_schema(postgres_url)
    for service, history in HISTORIES.items():
        result = migrate(service, url)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1] == f"{service}: schema at {history.head()} (was empty)"
    db = Database(url, store="check")
    try:
        for service, history in HISTORIES.items():
            assert migrations.check(db, history) == history.head()
            with db.transaction() as tx:
                for table in legacy_schema.TABLES[service]:
                    assert tx.one(f"SELECT COUNT(*) FROM {table}")[0] == 0
    finally:
        db.close()
    for service, history in HISTORIES.items():
        assert (
            migrate(service, url).stdout.splitlines()[-1] == f"{service}: schema at {history.head()}, nothing to apply"
        )


# ----------------------------------------------------------------------------- a service on an old schema


def test_a_service_process_refuses_to_start_on_a_database_from_before_migrations(postgres_url, tmp_path):
    schema, url = pg_schema(postgres_url)
    db = Database(url, store="legacy")
    with db.transaction() as tx:
        legacy_schema.create(tx, "payout")
        legacy_schema.fill(tx, "payout")
    db.close()
    env = {
        **os.environ,
        "SUBSIDY_PAYOUT_DATABASE_URL": url,
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "SUBSIDY_PAYOUT_GRPC_ADDRESS": "127.0.0.1:0",
        "SUBSIDY_PAYOUT_METRICS_ADDRESS": "",
    }
    result = subprocess.run(
        [sys.executable, "-m", "subsidy.services.payout"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert (
        "payout cannot start: the database has no payout schema version (no table payout_schema_version), "
        f"payout needs schema version {PAYOUT.head()}"
    ) in result.stderr
    assert "Run `subsidy migrate --service payout`" in result.stderr
    assert migrate("payout", url).returncode == 0  # what the message says to do, and then it would start
