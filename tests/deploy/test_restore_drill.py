"""The restore drill (docs/operations.md#restore-drill), rehearsed on a local
PostgreSQL with deploy/backup/restore_drill.py: the payout ledger written by
the service's own code (its migrations, handlers.apply_decision over its
SqlStore), a base backup, more writes, a named restore point, more writes,
the database lost, restored to the point from the base backup and the
archived WAL, then the decisions redelivered as Kafka would after the
consumer group is reset to before the restore point.

Checked: the restored database is exactly the state at the restore point
(every table's content); the writes before the base backup and those
replayed from WAL are there, those after the point are not; ledger and
outbox agree (an outbox event per ledger fact, none twice); after the
redelivery the ledger equals what it was before the loss, and no event is
lost or doubled.

Slow (a PostgreSQL cluster of its own, ~20 s) and needs the Debian
postgresql package: not part of `make test`; `make restore-drill` runs it
(SUBSIDY_RESTORE_DRILL=1).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "backup"))

from restore_drill import RestoreDrill  # noqa: E402

pytestmark = pytest.mark.skipif(
    os.environ.get("SUBSIDY_RESTORE_DRILL") != "1", reason="the restore drill runs with `make restore-drill`"
)

TABLES = ("payout_firms", "payout_inbox", "payout_grants", "payout_tranches", "payout_usage", "payout_payments")
RENT_CAP = 500_000_000
AT = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


def decision(n: int):
    from subsidy.core.domain import Decision, Entitlement, LimitKind, Reason

    firm = f"91310117MA1{n:07d}"[:18]
    amount = 1_000_000 * (n + 1)
    return Decision(
        decision_id=f"DRILL-{n:04d}@drill",
        application_id=f"DRILL-{n:04d}",
        credit_code=firm,
        clause="1.rent",
        outcome="ELIGIBLE",
        max_award_fen=amount,
        reasons=(Reason("AWARD_BASIS", "1", "依据第1条"),),
        policy_version="drill",
        decision_year=2026,
        submitted_on=dt.date(2026, 2, 20),
        entitlements=(Entitlement("1.rent", LimitKind.CUMULATIVE_CAP, amount, RENT_CAP),),
        tranche_shares_percent=(40, 30, 30),
    )


def apply(url: str, numbers: range) -> list[str]:
    """Apply decisions through payout's own code; the results."""
    from subsidy.platform.db import Database
    from subsidy.services.payout import handlers
    from subsidy.services.payout.adapters.store import SqlStore

    db = Database(url)
    try:
        store = SqlStore(db)
        return [handlers.apply_decision(store, decision(n), f"trace-{n:04d}", AT).result for n in numbers]
    finally:
        db.close()


def snapshot(drill: RestoreDrill) -> dict[str, str]:
    """Every payout table's content, as text, in a stable order."""
    out = {}
    for table in (*TABLES, "payout_outbox"):
        out[table] = drill.psql(f"SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '') FROM {table} t")
    return out


def event_ids(drill: RestoreDrill) -> set[str]:
    return set(drill.psql("SELECT event_id FROM payout_outbox").splitlines())


def outbox(drill: RestoreDrill) -> list[tuple[str, str, str]]:
    rows = drill.psql(
        "SELECT event_id || '|' || topic || '|' || encode(key, 'escape') FROM payout_outbox ORDER BY event_id"
    )
    return [tuple(r.split("|")) for r in rows.splitlines() if r]


def check_ledger_and_outbox_agree(drill: RestoreDrill) -> None:
    grants = int(drill.psql("SELECT count(*) FROM payout_grants"))
    inbox = int(drill.psql("SELECT count(*) FROM payout_inbox"))
    events = outbox(drill)
    assert grants == inbox
    assert len({e[0] for e in events}) == len(events), "an event twice in the outbox"
    # Every grant's firm has its events; no event for a firm without a grant.
    firms = set(drill.psql("SELECT credit_code FROM payout_grants").splitlines())
    assert {e[2] for e in events} == firms
    assert int(drill.psql("SELECT count(*) FROM payout_usage")) == len(firms)


@pytest.fixture
def drill():
    d = RestoreDrill()
    try:
        yield d
    finally:
        d.cleanup()


def test_backup_lose_restore_to_a_point_redeliver(drill):
    drill.start()
    migrate = subprocess.run(
        [sys.executable, "-m", "subsidy.cli", "migrate", "--service", "payout", "--database-url", drill.url],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr

    assert apply(drill.url, range(5)) == ["applied"] * 5  # before the base backup
    drill.base_backup()
    assert apply(drill.url, range(5, 10)) == ["applied"] * 5  # only in the WAL
    at_point = snapshot(drill)
    drill.restore_point("drill")
    assert apply(drill.url, range(10, 15)) == ["applied"] * 5  # after the point
    before_loss = snapshot(drill)
    events_before_loss = event_ids(drill)
    check_ledger_and_outbox_agree(drill)
    assert before_loss != at_point

    drill.lose()
    assert not drill.reachable()

    drill.restore("drill")
    restored = snapshot(drill)
    assert restored == at_point, "the restored database is not the state at the restore point"
    assert drill.psql("SELECT count(*) FROM payout_grants") == "10"
    assert drill.psql("SELECT count(*) FROM payout_grants WHERE application_id >= 'DRILL-0010'") == "0"
    check_ledger_and_outbox_agree(drill)

    # Kafka still holds every decision; the payout group, reset to before the
    # restore point, redelivers them all: the inbox drops what the restored
    # ledger has, the rest is applied again.
    assert apply(drill.url, range(15)) == ["replayed"] * 10 + ["applied"] * 5
    after = snapshot(drill)
    for table in TABLES:
        assert after[table] == before_loss[table], f"{table} differs from before the loss"
    check_ledger_and_outbox_agree(drill)
    events_after = outbox(drill)
    assert len(events_after) == len(before_loss["payout_outbox"].splitlines()), "an event lost or doubled"
    # The event ids are derived from the ledger facts: the same events as before the loss.
    assert event_ids(drill) == events_before_loss
    # Redelivering once more changes nothing.
    assert apply(drill.url, range(15)) == ["replayed"] * 15
    assert snapshot(drill) == after


def rendered_grants() -> list[str]:
    """The statements prod's Cluster runs at creation (components/secure/postgres-roles.yaml)."""
    from tests.ops.test_k8s import named, rendered

    cluster = named(rendered("overlays/prod"), "Cluster", "subsidy-pg")
    return cluster["spec"]["bootstrap"]["initdb"]["postInitApplicationSQL"]


def test_the_services_role_writes_the_ledger_and_cannot_change_the_schema(drill):
    """The owner "subsidy" migrates (DDL); the services' role "subsidy_app",
    with exactly the grants prod's Cluster runs, writes the payout ledger
    through payout's own code and is refused DDL."""
    drill.start()
    drill.psql("CREATE ROLE subsidy LOGIN", database="postgres")
    drill.psql("ALTER DATABASE subsidy OWNER TO subsidy", database="postgres")
    drill.psql("ALTER SCHEMA public OWNER TO subsidy")
    for statement in rendered_grants():
        drill.psql(statement)
    migrate = subprocess.run(
        [
            sys.executable,
            "-m",
            "subsidy.cli",
            "migrate",
            "--service",
            "payout",
            "--database-url",
            drill.url_as("subsidy"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    assert drill.psql("SELECT tableowner FROM pg_tables WHERE tablename = 'payout_grants'") == "subsidy"

    service = drill.url_as("subsidy_app")
    assert apply(service, range(3)) == ["applied"] * 3
    assert apply(service, range(3)) == ["replayed"] * 3
    assert drill.psql("SELECT count(*) FROM payout_grants") == "3"

    import psycopg

    for ddl in (
        "CREATE TABLE payout_evil (x int)",
        "DROP TABLE payout_outbox",
        "ALTER TABLE payout_grants ADD COLUMN x int",
        "TRUNCATE payout_grants CASCADE",
    ):
        with psycopg.connect(service) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(ddl)
