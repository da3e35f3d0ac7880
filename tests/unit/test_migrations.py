"""Schema migrations on SQLite (subsidy.platform.migrations; PostgreSQL, the
lock and the real command in tests/integration/test_migrations.py):

- every service's history is one numbered line, and a broken one is refused;
- a new database gets the baseline, which is the old ``create_schema``
  statement for statement; a second run applies nothing;
- an old database (old tables, rows, no version) is adopted, its rows kept;
  a half-made or foreign one is refused and left alone;
- pending revisions run in one transaction: a failing one changes nothing;
- the service's start-up check: refuses no schema or an older one, naming the
  service, both versions and the command; accepts a newer one; does not load
  Alembic; a service really refuses to start;
- ``subsidy migrate`` prints what it applied and exits 1 when it fails.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import legacy_schema
import pytest

from subsidy.cli import main
from subsidy.platform import migrations
from subsidy.platform.db import Database, DatabaseUnavailable
from subsidy.platform.migrations import History, MigrationError, SchemaNotReady
from subsidy.services.intake.adapters.migrations import HISTORY as INTAKE
from subsidy.services.intake.adapters.store import RELAY_LOCK_KEY as INTAKE_RELAY_LOCK
from subsidy.services.notify.adapters.migrations import HISTORY as NOTIFY
from subsidy.services.payout.adapters.migrations import HISTORY as PAYOUT
from subsidy.services.payout.adapters.store import RELAY_LOCK_KEY as PAYOUT_RELAY_LOCK

ROOT = Path(__file__).resolve().parents[2]
HISTORIES = {"intake": INTAKE, "payout": PAYOUT, "notify": NOTIFY}
LOG = logging.getLogger("test.migrations")


def sqlite(path: Path) -> Database:
    return Database(f"sqlite:///{path}", store="test")


def objects(db: Database, history: History) -> dict[str, str]:
    """name -> SQL of every table and index, but the version table and SQLite's own."""
    with db.transaction() as tx:
        rows = tx.all("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL")
    return {name: sql for name, sql in rows if name not in (history.version_table, "sqlite_sequence")}


def history_with(tmp_path: Path, service: str, *revisions: tuple[str, str]) -> History:
    """``service``'s real history plus extra revision files (name, source)."""
    directory = tmp_path / f"{service}-history"
    directory.mkdir()
    for path in HISTORIES[service].directory.glob("v*.py"):
        shutil.copy(path, directory / path.name)
    for name, source in revisions:
        (directory / name).write_text(source, encoding="utf-8")
    return History(service=service, directory=directory)


def baseline_only(tmp_path: Path, service: str) -> History:
    """``service``'s history cut at its baseline, 0001: what the old
    create_schema made, whatever revisions came after it."""
    directory = tmp_path / f"{service}-baseline"
    directory.mkdir()
    (baseline,) = HISTORIES[service].directory.glob("v0001_*.py")
    shutil.copy(baseline, directory / baseline.name)
    return History(service=service, directory=directory)


ADD_COLUMN = '''"""add a column: notify_log.template_version

So a later revision can be told apart from the baseline."""
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.execute("ALTER TABLE notify_log ADD COLUMN template_version TEXT")
'''

FAILING = '''"""create a table, then fail"""
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.execute("CREATE TABLE notify_half_done (x TEXT)")
    op.execute("INSERT INTO no_such_table VALUES (1)")
'''


# ----------------------------------------------------------------------------- the histories


@pytest.mark.parametrize("service", sorted(HISTORIES))
def test_every_history_is_one_numbered_line_that_alembic_reads_the_same(service):
    history = HISTORIES[service]
    assert history.version_table == f"{service}_schema_version"
    revisions = history.revisions()
    assert revisions[0] == "0001" and history.head() == revisions[-1]
    script = migrations._scripts(history)  # raises on a revision that does not match its file
    assert [s.revision for s in reversed(list(script.walk_revisions()))] == revisions


def test_the_advisory_lock_keys_are_distinct_from_each_other_and_from_the_relays():
    keys = [h.lock_key for h in HISTORIES.values()]
    assert len(set(keys + [INTAKE_RELAY_LOCK, PAYOUT_RELAY_LOCK])) == 5
    assert all(0 < k < 2**31 for k in keys)


def test_a_gap_in_the_numbers_is_refused(tmp_path):
    history = history_with(tmp_path, "notify", ("v0003_later.py", ADD_COLUMN.replace('"0002"', '"0003"')))
    with pytest.raises(MigrationError, match=r"numbered \['0001', '0002'\]"):
        history.head()


def test_a_file_whose_revision_is_not_its_number_is_refused(tmp_path):
    history = history_with(
        tmp_path, "notify", ("v0002_mislabelled.py", ADD_COLUMN.replace('revision = "0002"', 'revision = "abcd"'))
    )
    with pytest.raises(MigrationError, match=r"v0002_mislabelled.py declares revision 'abcd'"):
        migrations.upgrade(sqlite(tmp_path / "n.db"), history)


def test_a_file_that_is_not_a_revision_name_is_refused(tmp_path):
    history = history_with(tmp_path, "notify", ("helpers.py", "X = 1\n"))
    with pytest.raises(MigrationError, match="helpers.py: not a revision file name"):
        history.revisions()


# ----------------------------------------------------------------------------- new and old databases


@pytest.mark.parametrize("service", sorted(HISTORIES))
def test_a_new_database_gets_the_baseline_which_is_the_old_create_schema_statement_for_statement(tmp_path, service):
    history = baseline_only(tmp_path, service)
    migrated = sqlite(tmp_path / "migrated.db")
    outcome = migrations.upgrade(migrated, history)
    assert outcome.before is None and outcome.after == "0001" and not outcome.adopted
    assert [revision for revision, _ in outcome.applied] == ["0001"]
    assert outcome.lines()[-1] == f"{service}: schema at 0001 (was empty)"

    old = sqlite(tmp_path / "old.db")
    with old.transaction() as tx:
        legacy_schema.create(tx, service)
    # SQLite keeps each statement's text (less IF NOT EXISTS): the same text, the same schema.
    assert objects(migrated, history) == objects(old, history)
    assert set(legacy_schema.TABLES[service]) <= set(objects(migrated, history))

    again = migrations.upgrade(migrated, history)
    assert again.applied == () and again.before == again.after == "0001"
    assert again.lines() == [f"{service}: schema at 0001, nothing to apply"]
    assert migrations.check(migrated, history) == "0001"

    # The revisions after the baseline go on from there.
    newest = HISTORIES[service]
    rest = migrations.upgrade(migrated, newest)
    assert rest.before == "0001" and rest.after == newest.head()
    assert [revision for revision, _ in rest.applied] == newest.revisions()[1:]


@pytest.mark.parametrize("service", sorted(HISTORIES))
def test_an_old_database_with_rows_is_adopted_at_the_baseline_and_its_rows_kept(tmp_path, service):
    history = baseline_only(tmp_path, service)
    db = sqlite(tmp_path / "old.db")
    with db.transaction() as tx:
        legacy_schema.create(tx, service)
        legacy_schema.fill(tx, service)
        before = legacy_schema.dump(tx, service)
    schema_before = objects(db, history)
    with pytest.raises(SchemaNotReady, match="created before versioned migrations"):
        migrations.check(db, history)

    outcome = migrations.upgrade(db, history)
    assert outcome.adopted and outcome.applied == () and outcome.after == "0001"
    assert "adopted a database created before versioned migrations" in outcome.lines()[0]
    with db.transaction() as tx:
        assert legacy_schema.dump(tx, service) == before
    assert objects(db, history) == schema_before
    assert migrations.check(db, history) == "0001"

    newest = HISTORIES[service]
    assert migrations.upgrade(db, newest).after == newest.head()
    assert migrations.check(db, newest) == newest.head()


def test_the_adopted_stores_work_on_their_old_rows(tmp_path):
    """Past the version row: the code of today reads what the old code wrote,
    and the outbox ids go on from where the old code left them."""
    from subsidy.services.intake.adapters.store import SqlStore as IntakeStore
    from subsidy.services.payout.adapters.store import SqlStore as PayoutStore

    for service in ("intake", "payout"):
        db = sqlite(tmp_path / f"{service}.db")
        with db.transaction() as tx:
            legacy_schema.create(tx, service)
            legacy_schema.fill(tx, service)
        migrations.upgrade(db, HISTORIES[service])
    intake = IntakeStore(sqlite(tmp_path / "intake.db"))
    stored = intake.get("SJ-LEGACY-0001")
    assert stored.payload == legacy_schema.PAYLOAD and stored.grant == b"\x10\x80\xa4\xe8\x03\x00grant"
    assert [row.id for row in intake.outbox.pending()] == [2]
    payout = PayoutStore(sqlite(tmp_path / "payout.db"))
    assert [row.id for row in payout.outbox_table.pending()] == [2]
    # Grants from before the notice gate (payout 0003) are PAYABLE, their tranches as they were.
    from subsidy.services.payout import handlers
    from subsidy.services.payout.model import GrantState

    [grant] = handlers.ledger(payout, legacy_schema.FIRM).grants
    assert (grant.state, grant.uses, len(grant.tranches)) == (GrantState.PAYABLE, (), 3)
    [scope] = handlers.ledger(payout, legacy_schema.FIRM).scopes
    assert (scope.used_fen, scope.reserved_fen, scope.payable_fen) == (240_000_000, 0, 240_000_000)
    with payout.db.transaction() as tx:
        tx.execute(
            "INSERT INTO payout_outbox (event_id, topic, key, value, headers, created_at) "
            "VALUES ('new', 't', x'00', x'00', '[]', 'now')"
        )
        assert tx.one("SELECT id FROM payout_outbox WHERE event_id = 'new'")[0] == 3


def test_a_half_made_or_foreign_schema_is_refused_and_left_alone(tmp_path):
    db = sqlite(tmp_path / "foreign.db")
    with db.transaction() as tx:
        tx.execute("CREATE TABLE payout_firms (credit_code TEXT PRIMARY KEY, name TEXT)")
    with pytest.raises(MigrationError) as refused:
        migrations.upgrade(db, PAYOUT)
    message = str(refused.value)
    assert "table payout_grants is missing" in message
    assert (
        "table payout_firms has columns ['credit_code', 'name'], the baseline ['credit_code', 'created_at']" in message
    )
    assert "nothing was changed" in message
    assert set(objects(db, PAYOUT)) == {"payout_firms"}
    assert migrations.current_version(db, PAYOUT) is None


def test_an_old_database_missing_an_index_is_refused(tmp_path):
    db = sqlite(tmp_path / "old.db")
    with db.transaction() as tx:
        legacy_schema.create(tx, "notify")
        tx.execute("DROP INDEX notify_log_event")
    with pytest.raises(MigrationError, match=r"table notify_log lacks the indexes \['notify_log_event'\]"):
        migrations.upgrade(db, NOTIFY)


def test_pending_revisions_run_in_one_transaction_and_a_failure_changes_nothing(tmp_path):
    history = history_with(tmp_path, "notify", ("v0002_fails.py", FAILING))
    db = sqlite(tmp_path / "n.db")
    with pytest.raises(MigrationError) as failed:
        migrations.upgrade(db, history)
    assert "notify: migration 0002 (" in str(failed.value) and "v0002_fails.py" in str(failed.value)
    assert "no such table: no_such_table" in str(failed.value) and "nothing was changed" in str(failed.value)
    # Not even the baseline, which succeeded before 0002 failed: one transaction.
    assert objects(db, history) == {} and migrations.current_version(db, history) is None

    migrations.upgrade(db, NOTIFY)
    with pytest.raises(MigrationError, match="migration 0002"):
        migrations.upgrade(db, history)
    assert "notify_half_done" not in objects(db, history)
    assert migrations.current_version(db, history) == "0001"


# ----------------------------------------------------------------------------- the services' check


def test_a_later_revision_is_applied_and_the_services_follow_the_version(tmp_path):
    newer = history_with(tmp_path, "notify", ("v0002_template_version.py", ADD_COLUMN))
    db = sqlite(tmp_path / "n.db")
    migrations.upgrade(db, NOTIFY)
    with pytest.raises(SchemaNotReady) as refused:
        migrations.check(db, newer)
    message = str(refused.value)
    for part in (
        "notify cannot start",
        "schema is at version 0001",
        "this notify needs version 0002",
        "`subsidy migrate --service notify`",
        "SUBSIDY_NOTIFY_DATABASE_URL",
        "subsidy-notify-migrate",
    ):
        assert part in message, (part, message)

    outcome = migrations.upgrade(db, newer)
    assert outcome.applied == (("0002", "add a column: notify_log.template_version"),)
    assert outcome.lines() == [
        "notify: applied 0002 (add a column: notify_log.template_version)",
        "notify: schema at 0002 (was 0001)",
    ]
    with db.transaction() as tx:
        tx.execute(
            "INSERT INTO notify_log (notification_id, event_id, channel, kind, credit_code, sent_at, "
            "template_version) VALUES ('n', 'e', 'email', 'k', 'c', 't', 'v2')"
        )
    assert migrations.check(db, newer) == "0002"
    # The release before (a rollback): it runs on the newer schema, and says so.
    assert migrations.check(db, NOTIFY) == "0002"
    # ... but its migrate does not pretend to know the newer revision.
    with pytest.raises(MigrationError, match="at version 0002, newer than this release's newest .0001."):
        migrations.upgrade(db, NOTIFY)


def test_the_check_on_an_empty_database_says_what_to_run(tmp_path):
    with pytest.raises(SchemaNotReady) as refused:
        migrations.check(sqlite(tmp_path / "empty.db"), PAYOUT)
    assert str(refused.value).startswith(
        "payout cannot start: the database has no payout schema version (no table payout_schema_version), "
        f"payout needs schema version {PAYOUT.head()}."
    )
    assert "Run `subsidy migrate --service payout`" in str(refused.value)


def test_require_waits_for_the_database_but_not_for_an_old_schema(tmp_path):
    started = time.monotonic()
    with pytest.raises(SchemaNotReady):
        migrations.require(sqlite(tmp_path / "empty.db"), PAYOUT, LOG, wait_s=30)
    assert time.monotonic() - started < 5
    unreachable = Database("postgresql://nobody@127.0.0.1:1/none", store="test")
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable):
        migrations.require(unreachable, PAYOUT, LOG, wait_s=1.0)
    assert 1.0 <= time.monotonic() - started < 15


def test_the_services_check_without_loading_alembic_or_sqlalchemy(tmp_path):
    """Start-up stays light: the version is read with the store's own SQL."""
    db_path = tmp_path / "p.db"
    migrations.upgrade(sqlite(db_path), PAYOUT)
    code = (
        "import sys, logging\n"
        "from subsidy.platform import migrations\n"
        "from subsidy.platform.db import Database\n"
        "from subsidy.services.payout.bootstrap import HISTORY\n"
        f"assert migrations.require(Database('sqlite:///{db_path}'), HISTORY, logging.getLogger()) == '{PAYOUT.head()}'\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'sqlalchemy'))\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("service", sorted(HISTORIES))
def test_a_service_refuses_to_start_on_a_database_without_its_schema(tmp_path, service):
    import importlib

    bootstrap = importlib.import_module(f"subsidy.services.{service}.bootstrap")
    config = importlib.import_module(f"subsidy.services.{service}.config")
    app_class = {"intake": "IntakeApp", "payout": "PayoutApp", "notify": "NotifyApp"}[service]
    settings = config.Settings(
        database_url=f"sqlite:///{tmp_path / 'old.db'}",
        kafka_bootstrap="127.0.0.1:1",
        metrics_address="",
        grpc_address="127.0.0.1:0",
    )
    db = sqlite(tmp_path / "old.db")
    with db.transaction() as tx:  # what the code before migrations left: tables, no version
        legacy_schema.create(tx, service)
    app = getattr(bootstrap, app_class)(settings)
    with pytest.raises(SchemaNotReady, match=f"{service} cannot start: .* Run `subsidy migrate --service {service}`"):
        asyncio.run(app.start())
    assert app.server is None  # refused before listening


# ----------------------------------------------------------------------------- the command


def test_migrate_prints_what_it_applied_then_that_nothing_is_left(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'payout.db'}"
    assert main(["migrate", "--service", "payout", "--database-url", url]) == 0
    head = PAYOUT.head()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"payout: migrating {url} to schema version {head}"
    assert (
        lines[1] == "payout: applied 0001 (baseline: the schema payout created at start-up before versioned migrations)"
    )
    assert [line.split()[2] for line in lines[1:-1]] == PAYOUT.revisions()  # "payout: applied NNNN (...)"
    assert lines[-1] == f"payout: schema at {head} (was empty)"
    assert main(["migrate", "--service", "payout", "--database-url", url]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [f"payout: schema at {head}, nothing to apply"]


def test_migrate_reads_the_services_own_database_setting(tmp_path, capsys, monkeypatch):
    url_file = tmp_path / "url"
    url_file.write_text(f"sqlite:///{tmp_path / 'from-secret.db'}\n")
    monkeypatch.setenv("SUBSIDY_INTAKE_DATABASE_URL_FILE", str(url_file))
    assert main(["migrate", "--service", "intake"]) == 0
    assert "intake: applied 0001" in capsys.readouterr().out
    assert migrations.current_version(sqlite(tmp_path / "from-secret.db"), INTAKE) == INTAKE.head()


def test_migrate_exits_1_naming_the_problem_when_it_cannot_migrate(tmp_path, capsys):
    db = sqlite(tmp_path / "foreign.db")
    with db.transaction() as tx:
        tx.execute("CREATE TABLE notify_log (id TEXT)")
    assert main(["migrate", "--service", "notify", "--database-url", f"sqlite:///{tmp_path / 'foreign.db'}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("subsidy migrate: error: notify: the database has notify tables but no schema version")
    assert main(["migrate", "--service", "notify", "--database-url", "mysql://db/x"]) == 2
    assert "unsupported database URL" in capsys.readouterr().err


def test_migrate_knows_only_the_services_with_a_database(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["migrate", "--service", "eligibility"])
    assert exited.value.code == 2
    assert "invalid choice: 'eligibility'" in capsys.readouterr().err
