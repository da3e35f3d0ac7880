"""GetOutlay's sums (subsidy/services/payout/outlay.py over
adapters/outlay_store.py) on payout's real schema in SQLite: reserved grants
in their decision year, tranches by status in their budget year, recoveries
in the year finance confirmed them; withdrawn grants count nowhere."""

from __future__ import annotations

import pytest

from subsidy.platform import migrations
from subsidy.platform.db import Database
from subsidy.services.payout import outlay
from subsidy.services.payout.adapters.migrations import HISTORY
from subsidy.services.payout.adapters.outlay_store import SqlOutlay
from subsidy.services.payout.model import InvalidArgument

FIRM = "91310117313Q6C3D6G"


@pytest.fixture
def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'payout.db'}", store="payout")
    migrations.upgrade(database, HISTORY)
    yield database
    database.close()


def grant(tx, app: str, fen: int, year: int, state: str) -> None:
    tx.execute(
        "INSERT INTO payout_grants (application_id, decision_id, credit_code, clause, outcome, policy_version, "
        "max_award_fen, granted_fen, decision_year, submitted_on, reasons, trace_id, recorded_at, state) "
        "VALUES (?, ?, ?, '4', 'ELIGIBLE', '2025.1', ?, ?, ?, '2026-01-01', '[]', 't', '2026-01-01T00:00:00Z', ?)",
        (app, app + "@1", FIRM, fen, fen, year, state),
    )


def tranche(tx, app: str, number: int, fen: int, year: int, status: str) -> None:
    tx.execute(
        "INSERT INTO payout_tranches (tranche_id, application_id, credit_code, clause, number, amount_fen, due_on, "
        "budget_year, status, updated_at) VALUES (?, ?, ?, '4', ?, ?, ?, ?, ?, '2026-01-01T00:00:00Z')",
        (f"{app}/tranche-{number}", app, FIRM, number, fen, f"{year}-06-30", year, status),
    )


def recovery(tx, app: str, confirmations: list[tuple[str, int, str]]) -> None:
    tx.execute(
        "INSERT INTO payout_recoveries (recovery_id, application_id, credit_code, clause, amount_fen, recovered_fen, "
        "reason, void_award, opened_on, opened_by, status, created_at, updated_at) "
        "VALUES (?, ?, ?, '4', 500000, 0, 'r', 0, '2026-03-01', 'reviewer', 'OPEN', 'x', 'x')",
        (app + "/recovery-1", app, FIRM),
    )
    for cid, fen, day in confirmations:
        tx.execute(
            "INSERT INTO payout_recovery_confirmations (confirmation_id, recovery_id, credit_code, amount_fen, "
            "recovered_on, applied_at) VALUES (?, ?, ?, ?, ?, 'x')",
            (cid, app + "/recovery-1", FIRM, fen, day),
        )


def test_each_kind_in_its_year(db):
    with db.transaction() as tx:
        grant(tx, "R-1", 300_000, 2026, "RESERVED")
        grant(tx, "W-1", 900_000, 2026, "WITHDRAWN")
        grant(tx, "P-1", 1_000_000, 2025, "PAYABLE")
        tranche(tx, "P-1", 0, 400_000, 2025, "PAID")
        tranche(tx, "P-1", 1, 300_000, 2026, "DUE")
        tranche(tx, "P-1", 2, 200_000, 2027, "SCHEDULED")
        tranche(tx, "P-1", 3, 50_000, 2027, "HELD")
        tranche(tx, "P-1", 4, 50_000, 2027, "CANCELLED")
        recovery(tx, "P-1", [("c-1", 100_000, "2026-04-01"), ("c-2", 20_000, "2027-01-15")])
    years, total = outlay.outlay(SqlOutlay(db))
    assert years == [
        outlay.YearOutlay(2025, paid_fen=400_000),
        outlay.YearOutlay(2026, reserved_fen=300_000, payable_fen=300_000, recovered_fen=100_000),
        outlay.YearOutlay(2027, payable_fen=200_000, held_fen=50_000, cancelled_fen=50_000, recovered_fen=20_000),
    ]
    assert total == outlay.YearOutlay(
        0,
        reserved_fen=300_000,
        payable_fen=500_000,
        held_fen=50_000,
        paid_fen=400_000,
        recovered_fen=120_000,
        cancelled_fen=50_000,
    )
    only_2026, _ = outlay.outlay(SqlOutlay(db), 2026, 2026)
    assert [y.budget_year for y in only_2026] == [2026] and only_2026[0].recovered_fen == 100_000


def test_an_empty_ledger_has_no_years(db):
    years, total = outlay.outlay(SqlOutlay(db))
    assert years == [] and total == outlay.YearOutlay(0)


@pytest.mark.parametrize(
    ("low", "high", "field"), [(1999, 0, "from_year"), (0, 2101, "to_year"), (2027, 2026, "from_year")]
)
def test_bad_bounds_name_the_field(db, low, high, field):
    with pytest.raises(InvalidArgument, match=field):
        outlay.outlay(SqlOutlay(db), low, high)
