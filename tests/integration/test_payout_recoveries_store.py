"""ListRecoveries' query (subsidy/services/payout/adapters/recoveries_store.py)
on SQLite and on PostgreSQL: recoveries of several firms, open and closed,
newest opened first, paged by the use case (recoveries.py) with tokens bound
to the filter."""

from __future__ import annotations

import pytest

from subsidy.platform.db import Database
from subsidy.services.payout import recoveries
from subsidy.services.payout.adapters.recoveries_store import SqlRecoveryList
from subsidy.services.payout.adapters.store import SqlStore
from subsidy.services.payout.model import InvalidArgument

from .test_payout_support import database_url, new_firm

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    postgres_url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    database = Database(database_url(request.param, tmp_path, postgres_url), store="payout", pool_size=2)
    SqlStore(database).create_schema()
    yield database
    database.close()


def add(tx, rid: str, code: str, opened_on: str, status: str, tranches: int = 2) -> None:
    app = f"{rid}-app"
    tx.execute(
        "INSERT INTO payout_grants (application_id, decision_id, credit_code, clause, outcome, policy_version, "
        "max_award_fen, granted_fen, decision_year, submitted_on, reasons, trace_id, recorded_at, state) "
        "VALUES (?, ?, ?, '4', 'ELIGIBLE', '2025.1', 900000, 900000, 2026, '2026-01-01', '[]', 't', "
        "'2026-01-01T00:00:00Z', 'PAYABLE')",
        (app, app + "@1", code),
    )
    for n in range(tranches):
        tx.execute(
            "INSERT INTO payout_tranches (tranche_id, application_id, credit_code, clause, number, amount_fen, "
            "due_on, budget_year, status, updated_at) VALUES (?, ?, ?, '4', ?, 300000, '2026-06-30', 2026, 'PAID', "
            "'2026-01-01T00:00:00Z')",
            (f"{app}/tranche-{n}", app, code, n),
        )
    recovered = 200000 if status == "RECOVERED" else 0
    tx.execute(
        "INSERT INTO payout_recoveries (recovery_id, application_id, credit_code, clause, amount_fen, recovered_fen, "
        "reason, void_award, opened_on, opened_by, status, created_at, updated_at) "
        "VALUES (?, ?, ?, '4', 200000, ?, '虚报<b>', 0, ?, 'reviewer-1', ?, 'x', 'x')",
        (rid, app, code, recovered, opened_on, status),
    )
    for n in range(tranches):
        tx.execute(
            "INSERT INTO payout_recovery_tranches (recovery_id, tranche_id, position, amount_fen) VALUES (?, ?, ?, ?)",
            (rid, f"{app}/tranche-{n}", n, 100000),
        )


def test_recoveries_across_firms_open_closed_or_all_newest_first_page_by_page(db):
    a, b = new_firm(), new_firm()
    with db.transaction() as tx:
        add(tx, "R-1", a, "2026-03-01", "OPEN")
        add(tx, "R-2", b, "2026-03-02", "RECOVERED")
        add(tx, "R-3", b, "2026-03-02", "OPEN", tranches=1)
        add(tx, "R-4", a, "2026-04-01", "OPEN")
    query = SqlRecoveryList(db)

    def every(name: str, size: int) -> list[list[str]]:
        pages, token = [], ""
        while True:
            rows, token = recoveries.list_recoveries(query, name, size, token)
            pages.append([r.recovery_id for r in rows])
            if not token:
                return pages

    assert every("ALL", 2) == [["R-4", "R-3"], ["R-2", "R-1"]]
    assert every("OPEN", 2) == [["R-4", "R-3"], ["R-1"]]
    assert every("CLOSED", 5) == [["R-2"]]
    [first] = query.page("OPEN", 1, None)
    assert (first.credit_code, first.amount_fen, first.reason, first.tranche_ids) == (
        a,
        200000,
        "虚报<b>",
        ("R-4-app/tranche-0", "R-4-app/tranche-1"),
    )
    # equal opened_on: the id breaks the tie, so no row is skipped or repeated between pages
    assert [r.recovery_id for r in query.page(None, 5, ("2026-03-02", "R-3"))] == ["R-2", "R-1"]


def test_a_token_of_one_filter_is_refused_for_another_naming_page_token(db):
    with db.transaction() as tx:
        for i in range(3):
            add(tx, f"R-{i}", new_firm(), f"2026-03-0{i + 1}", "OPEN", tranches=1)
    query = SqlRecoveryList(db)
    _, token = recoveries.list_recoveries(query, "OPEN", 1)
    with pytest.raises(InvalidArgument, match="^page_token"):
        recoveries.list_recoveries(query, "ALL", 1, token)
    with pytest.raises(InvalidArgument, match="^page_token"):
        recoveries.list_recoveries(query, "OPEN", 1, "bm90LWpzb24")
    with pytest.raises(InvalidArgument, match="^filter"):
        recoveries.list_recoveries(query, "MAYBE")
    with pytest.raises(InvalidArgument, match="^page_size"):
        recoveries.list_recoveries(query, "OPEN", -1)
