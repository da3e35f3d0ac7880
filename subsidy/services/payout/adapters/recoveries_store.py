"""The SQL of ListRecoveries (subsidy/services/payout/recoveries.py): a page
of ``payout_recoveries`` across firms with each one's tranches, in one read
transaction. The same SQL on SQLite and PostgreSQL; values bound, never
spliced. Recoveries are rare (a handful a year), so no index of their own:
the page is a scan of a small table, sorted."""

from __future__ import annotations

from subsidy.platform.db import Database
from subsidy.services.payout.adapters.store import SqlRecoveries
from subsidy.services.payout.model import RecoveryRow


class SqlRecoveryList:
    """recoveries.RecoveryQuery over payout's database."""

    def __init__(self, db: Database):
        self.db = db

    def page(self, status: str | None, limit: int, after: tuple[str, str] | None) -> list[RecoveryRow]:
        where, params = ["1 = 1"], []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if after is not None:
            where.append("(opened_on < ? OR (opened_on = ? AND recovery_id < ?))")
            params += [after[0], after[0], after[1]]
        with self.db.transaction() as tx:
            ids = [
                r[0]
                for r in tx.all(
                    "SELECT recovery_id FROM payout_recoveries WHERE "  # noqa: S608  # nosec B608 - constant conditions, values bound
                    + " AND ".join(where)
                    + " ORDER BY opened_on DESC, recovery_id DESC LIMIT ?",
                    [*params, limit],
                )
            ]
            recoveries = SqlRecoveries(tx)
            rows = [recoveries.get(i) for i in ids]
        return [r for r in rows if r is not None]
