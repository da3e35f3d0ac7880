"""The ledger's operator gauges, read from payout's database (issue 16, issue
13 item 7): tranches SCHEDULED past their due date, HELD past their hold
grace, the oldest open recovery, and the rows the cap reconciliation
(subsidy/services/payout/reconcile.py) recomputes usage from.

Read-only queries, kept apart from adapters/store.py (the ledger's writes).
Dates are the service clock's ``today`` (YYYY-MM-DD), passed in, never read
here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from subsidy.platform.db import Database
from subsidy.services.payout.reconcile import GrantUses, Reconciliation, UsageRecord, reconcile


@dataclasses.dataclass(frozen=True)
class LedgerGauges:
    """What refresh_gauges sets, as of one ``today``."""

    scheduled_past_due: int  # SCHEDULED tranches whose due_on is before today (the scheduler should have moved them)
    held: int  # HELD tranches
    held_past_grace: int  # HELD tranches whose hold_until is before today (the scheduler should have cancelled them)
    recoveries_open: int  # recoveries not yet fully recovered
    oldest_open_recovery_days: int  # days since the oldest open recovery was opened; 0 when none


class LedgerGaugeReader:
    def __init__(self, db: Database):
        self.db = db

    def read(self, today: dt.date) -> LedgerGauges:
        day = today.isoformat()
        with self.db.transaction() as tx:
            row = tx.one(
                "SELECT "
                "SUM(CASE WHEN status = 'SCHEDULED' AND due_on < ? THEN 1 ELSE 0 END), "
                "SUM(CASE WHEN status = 'HELD' THEN 1 ELSE 0 END), "
                "SUM(CASE WHEN status = 'HELD' AND hold_until IS NOT NULL AND hold_until < ? THEN 1 ELSE 0 END) "
                "FROM payout_tranches",
                (day, day),
            )
            recoveries = tx.one("SELECT COUNT(*), MIN(opened_on) FROM payout_recoveries WHERE status = 'OPEN'")
        assert row is not None and recoveries is not None  # aggregates always answer one row
        oldest = recoveries[1]
        age = max(0, (today - dt.date.fromisoformat(str(oldest)[:10])).days) if oldest else 0
        return LedgerGauges(
            scheduled_past_due=int(row[0] or 0),
            held=int(row[1] or 0),
            held_past_grace=int(row[2] or 0),
            recoveries_open=int(recoveries[0] or 0),
            oldest_open_recovery_days=age,
        )

    def reconcile(self) -> Reconciliation:
        """The cap reconciliation over one snapshot: the grants and the usage
        are read by ONE statement, so a grant committed meanwhile is either in
        both or in neither (READ COMMITTED gives each statement its snapshot)."""
        with self.db.transaction() as tx:
            rows = tx.all(
                "SELECT 'g', credit_code, outcome, state, uses, CAST(COALESCE(cap_released_fen, 0) AS TEXT) "
                "FROM payout_grants "
                "UNION ALL "
                "SELECT 'u', credit_code, scope, limit_kind, CAST(cap_fen AS TEXT), CAST(used_fen AS TEXT) "
                "FROM payout_usage"
            )
        grants = [GrantUses(r[1], r[2], r[3], r[4], int(r[5])) for r in rows if r[0] == "g"]
        usage = [UsageRecord(r[1], r[2], r[3], int(r[4]), int(r[5])) for r in rows if r[0] == "u"]
        return reconcile(grants, usage)
