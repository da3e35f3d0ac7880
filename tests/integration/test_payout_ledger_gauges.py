"""The ledger's operator gauges and the cap reconciliation
(subsidy/services/payout/adapters/ledger_gauges.py, reconcile.py) on the
real PostgreSQL the harness starts (and SQLite): a ledger written by
payout's own use cases, the gauges read against known answers, then the
scheduler's pass that must bring them back to 0; the reconciliation clean
on a ledger with withdrawn and void grants, and catching a usage row that
was changed behind the ledger's back."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest

from subsidy.platform.db import Database
from subsidy.services.payout import handlers, metrics
from subsidy.services.payout.adapters.ledger_gauges import LedgerGaugeReader
from subsidy.services.payout.adapters.store import SqlStore
from subsidy.services.payout.bootstrap import publish_reconciliation
from subsidy.services.payout.model import Payment, RecoveryConfirmation, RecoveryRequest

from .running import migrate
from .test_payout_support import RENT_CAP, database_url, new_firm, new_id, notice_line, rent_decision

pytestmark = pytest.mark.integration

AT = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)


@pytest.fixture(params=["postgresql", "sqlite"])
def db(request, tmp_path):
    postgres_url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    url = database_url(request.param, tmp_path, postgres_url)
    migrate("payout", url)  # the schema the migration Job makes, not create_schema's
    database = Database(url, store="payout", pool_size=2)
    yield database
    database.close()


def payable_grant(store: SqlStore, firm: str, amount_fen: int, payable_on: str = "2025-03-01"):
    decision = rent_decision(new_id("G"), firm, amount_fen, shares=(40, 30, 30))
    assert handlers.apply_decision(store, decision, "ab" * 16, AT).result == "applied"
    result, _, tranches = handlers.apply_notice_line(store, notice_line(decision, day=payable_on), AT)
    assert result == "applied"
    return decision, sorted(tranches, key=lambda t: t.number)


def test_gauges_count_what_the_scheduler_left_undone(db):
    store, reader = SqlStore(db), LedgerGaugeReader(db)
    firm_a, firm_b = new_firm(), new_firm()
    _, a = payable_grant(store, firm_a, 60_000_000)
    _, b = payable_grant(store, firm_b, 30_000_000)
    first_due = min(t.due_on for t in a + b)
    day_of = dt.date.fromisoformat(first_due)
    # The day the first tranches fall due they are not past due yet; the day after, they are.
    assert reader.read(day_of).scheduled_past_due == 0
    due_by_next_day = [t for t in a + b if t.due_on < (day_of + dt.timedelta(days=1)).isoformat()]
    assert len(due_by_next_day) == 2  # tranche 1 of each grant
    assert reader.read(day_of + dt.timedelta(days=1)).scheduled_past_due == 2
    late = dt.date.fromisoformat(max(t.due_on for t in a + b)) + dt.timedelta(days=1)
    assert reader.read(late).scheduled_past_due == 6

    # Two of firm B's tranches HELD by hand: one whose grace ended yesterday, one that still runs.
    yesterday, tomorrow = (late - dt.timedelta(days=1)).isoformat(), (late + dt.timedelta(days=1)).isoformat()
    with db.transaction() as tx:
        for tranche, until in ((b[1], yesterday), (b[2], tomorrow)):
            tx.execute(
                "UPDATE payout_tranches SET status = 'HELD', held_on = ?, hold_until = ?, hold_reason = 'test' "
                "WHERE tranche_id = ?",
                ("2025-01-01", until, tranche.tranche_id),
            )
    gauges = reader.read(late)
    assert (gauges.scheduled_past_due, gauges.held, gauges.held_past_grace) == (4, 2, 1)

    # The scheduler's pass (no facts heard: the gate passes) moves every tranche it should:
    # the four past due become DUE, the hold past its grace is cancelled, the other released.
    done = handlers.advance_tranches(store, late, AT)
    assert (len(done.due), len(done.cancelled), len(done.released)) == (5, 1, 1)
    gauges = reader.read(late)
    assert (gauges.scheduled_past_due, gauges.held, gauges.held_past_grace) == (0, 0, 0)


def test_recoveries_open_and_the_oldest_age(db):
    store, reader = SqlStore(db), LedgerGaugeReader(db)
    assert reader.read(dt.date(2025, 6, 1)).oldest_open_recovery_days == 0
    firm = new_firm()
    decision, tranches = payable_grant(store, firm, 60_000_000, payable_on="2025-03-01")
    handlers.advance_tranches(store, dt.date.fromisoformat(tranches[0].due_on), AT)
    paid = tranches[0]
    handlers.apply_payment(store, Payment(new_id("P"), paid.tranche_id, firm, paid.amount_fen, paid.due_on), AT)
    opened = []
    for day, amount in (("2025-04-01", 1_000_000), ("2025-05-11", 2_000_000)):
        request = RecoveryRequest(decision.application_id, (paid.tranche_id,), amount, f"核查 {day}", False, "reviewer")
        opened.append(handlers.open_recovery(store, request, dt.date.fromisoformat(day), AT))
    gauges = reader.read(dt.date(2025, 6, 30))
    assert (gauges.recoveries_open, gauges.oldest_open_recovery_days) == (2, 90)  # 2025-04-01 -> 06-30
    first = opened[0].recovery
    handlers.apply_recovery_confirmation(
        store, RecoveryConfirmation(new_id("R"), first.recovery_id, firm, first.amount_fen, "2025-06-01"), AT
    )
    gauges = reader.read(dt.date(2025, 6, 30))
    assert (gauges.recoveries_open, gauges.oldest_open_recovery_days) == (1, 50)  # 2025-05-11 -> 06-30


def test_reconciliation_is_clean_on_the_ledger_and_catches_a_changed_usage_row(db):
    store, reader = SqlStore(db), LedgerGaugeReader(db)
    firm, other = new_firm(), new_firm()
    # Firm: three grants up to the rent cap (the third limited), one withdrawn,
    # one void after a recovery that frees part of its cap.
    kept, tranches = payable_grant(store, firm, 200_000_000)
    payable_grant(store, firm, 200_000_000)
    withdrawn = rent_decision(new_id("W"), firm, 80_000_000)
    handlers.apply_decision(store, withdrawn, "cd" * 16, AT)
    handlers.apply_notice_line(store, notice_line(withdrawn, kind="withdrawn", reason="公示异议成立"), AT)
    payable_grant(store, other, 10_000_000)
    handlers.advance_tranches(store, dt.date.fromisoformat(tranches[0].due_on), AT)
    paid = tranches[0]
    handlers.apply_payment(store, Payment(new_id("P"), paid.tranche_id, firm, paid.amount_fen, paid.due_on), AT)
    request = RecoveryRequest(kept.application_id, (paid.tranche_id,), 30_000_000, "虚报", True, "reviewer")
    recovery = handlers.open_recovery(store, request, dt.date(2025, 9, 1), AT).recovery
    handlers.apply_recovery_confirmation(
        store, RecoveryConfirmation(new_id("R"), recovery.recovery_id, firm, 30_000_000, "2025-09-10"), AT
    )
    used = handlers.ledger(store, firm).scopes[0].used_fen
    assert used < RENT_CAP  # the void award freed cap room: the reconciliation must follow that

    result = reader.reconcile()
    assert result.mismatches == () and result.unverifiable_firms == ()
    assert result.firms >= 2

    # A usage row changed behind the ledger's back: one mismatch, naming firm and scope, then over the cap too.
    with db.transaction() as tx:
        tx.execute("UPDATE payout_usage SET used_fen = used_fen + 1 WHERE credit_code = ?", (firm,))
    result = reader.reconcile()
    assert [(m.credit_code, m.scope, m.kind, m.recorded_fen, m.recomputed_fen) for m in result.mismatches] == [
        (firm, "1.rent", "usage", used + 1, used)
    ]
    publish_reconciliation(result, AT)
    assert metrics.CAP_MISMATCHES.labels("usage")._value.get() == 1
    assert metrics.CAP_MISMATCHES.labels("over_cap")._value.get() == 0
    with db.transaction() as tx:
        tx.execute("UPDATE payout_usage SET used_fen = ? WHERE credit_code = ?", (RENT_CAP + 5, firm))
    kinds = sorted(m.kind for m in reader.reconcile().mismatches)
    assert kinds == ["over_cap", "usage"]


def test_the_cron_job_command_exits_1_on_a_mismatch_and_0_when_clean(db, monkeypatch):
    from subsidy.services.payout import reconcile_cli

    store = SqlStore(db)
    firm = new_firm()
    payable_grant(store, firm, 50_000_000)
    monkeypatch.setenv("SUBSIDY_PAYOUT_DATABASE_URL", db.url)
    out = io.StringIO()
    assert reconcile_cli.main((), out) == reconcile_cli.EXIT_CLEAN
    assert json.loads(out.getvalue().splitlines()[-1])["reconciliation"]["mismatches"] == 0
    with db.transaction() as tx:
        tx.execute("UPDATE payout_usage SET used_fen = 1 WHERE credit_code = ?", (firm,))
    out = io.StringIO()
    assert reconcile_cli.main((), out) == reconcile_cli.EXIT_MISMATCH
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["mismatch"]["credit_code"] == firm and lines[0]["mismatch"]["recomputed_fen"] == 50_000_000
    assert lines[-1]["reconciliation"]["usage"] == 1
    monkeypatch.setenv("SUBSIDY_PAYOUT_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    assert reconcile_cli.main((), io.StringIO()) == reconcile_cli.EXIT_UNREADABLE


def test_the_scheduler_stamps_each_completed_pass_and_not_a_failed_one(db):
    from subsidy.platform.clock import FixedClock
    from subsidy.services.payout.adapters.scheduler import Scheduler

    store = SqlStore(db)
    passes = iter([dt.datetime(2026, 12, 2, 3, 0, tzinfo=dt.UTC), dt.datetime(2026, 12, 2, 3, 1, tzinfo=dt.UTC)])
    scheduler = Scheduler(store, FixedClock(dt.date(2026, 12, 2)), now=lambda: next(passes))
    assert scheduler.run_once() == 0  # nothing to move is still a pass
    assert metrics.SCHEDULER_LAST_RUN._value.get() == dt.datetime(2026, 12, 2, 3, 0, tzinfo=dt.UTC).timestamp()
    with db.transaction() as tx:  # the ledger unreadable: the pass fails and the stamp stays where it was
        tx.execute("ALTER TABLE payout_tranches RENAME TO payout_tranches_gone")
    with pytest.raises(Exception, match="payout_tranches"):
        scheduler.run_once()
    assert metrics.SCHEDULER_LAST_RUN._value.get() == dt.datetime(2026, 12, 2, 3, 0, tzinfo=dt.UTC).timestamp()
