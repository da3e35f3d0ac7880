"""The SQL of GetOutlay (subsidy/services/payout/outlay.py): sums per kind and
year over payout's own tables, in one read transaction (one snapshot on
PostgreSQL's default isolation per statement; the sums are a report, not a
balance that must add up to the cent against concurrent writes). The same
SQL on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

from subsidy.platform.db import Database

_RECOVERED_YEAR = "CAST(SUBSTR(recovered_on, 1, 4) AS INTEGER)"
_TRANCHE_KINDS = {"SCHEDULED": "payable", "DUE": "payable", "HELD": "held", "PAID": "paid", "CANCELLED": "cancelled"}


def _bounds(column: str, from_year: int, to_year: int) -> tuple[str, list[int]]:
    sql, params = "", []
    if from_year:
        sql += f" AND {column} >= ?"
        params.append(from_year)
    if to_year:
        sql += f" AND {column} <= ?"
        params.append(to_year)
    return sql, params


class SqlOutlay:
    """outlay.OutlayQuery over payout's database."""

    def __init__(self, db: Database):
        self.db = db

    def amounts(self, from_year: int, to_year: int) -> Iterator[tuple[str, int, int]]:
        # The SQL is built from the constants above only; the years are bound parameters.
        reserved_where, reserved_params = _bounds("decision_year", from_year, to_year)
        tranche_where, tranche_params = _bounds("budget_year", from_year, to_year)
        recovered_where, recovered_params = _bounds(_RECOVERED_YEAR, from_year, to_year)
        reserved_sql = (
            "SELECT decision_year, SUM(granted_fen) FROM payout_grants WHERE state = 'RESERVED'"  # noqa: S608
            + reserved_where
            + " GROUP BY decision_year"
        )
        tranche_sql = (
            "SELECT status, budget_year, SUM(amount_fen) FROM payout_tranches WHERE 1 = 1"  # noqa: S608
            + tranche_where
            + " GROUP BY status, budget_year"
        )
        recovered_sql = (
            f"SELECT {_RECOVERED_YEAR}, SUM(amount_fen) FROM payout_recovery_confirmations WHERE 1 = 1"  # noqa: S608
            + recovered_where
            + f" GROUP BY {_RECOVERED_YEAR}"
        )
        rows: list[tuple[str, int, int]] = []
        with self.db.transaction() as tx:
            for year, fen in tx.all(reserved_sql, reserved_params):
                rows.append(("reserved", int(year), int(fen or 0)))
            for status, year, fen in tx.all(tranche_sql, tranche_params):
                kind = _TRANCHE_KINDS.get(status)
                if kind is not None:
                    rows.append((kind, int(year), int(fen or 0)))
            for year, fen in tx.all(recovered_sql, recovered_params):
                rows.append(("recovered", int(year), int(fen or 0)))
        yield from rows
