"""The finance bureau's CSV of one budget year's tranches (``subsidy
export-tranches``): one row per tranche, sorted by due date then tranche id,
amounts in integer fen and in yuan with exactly two decimals (integer
arithmetic, no floats)."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import TextIO

from subsidy.core.money import yuan
from subsidy.platform.db import Database
from subsidy.services.payout import handlers
from subsidy.services.payout.adapters.store import SqlStore
from subsidy.services.payout.model import TrancheRow

COLUMNS = (
    "tranche_id",
    "application_id",
    "credit_code",
    "clause",
    "number",
    "amount_fen",
    "amount_yuan",
    "due_on",
    "budget_year",
    "status",
    "paid_on",
    "payment_id",
)


class ExportError(Exception):
    pass


def csv_rows(tranches: Iterable[TrancheRow]) -> Iterable[list[str]]:
    yield list(COLUMNS)
    for t in tranches:
        yield [
            t.tranche_id,
            t.application_id,
            t.credit_code,
            t.clause,
            str(t.number),
            str(t.amount_fen),
            yuan(t.amount_fen, fixed=True),
            t.due_on,
            str(t.budget_year),
            t.status,
            t.paid_on,
            t.payment_id,
        ]


def write_csv(tranches: Iterable[TrancheRow], out: TextIO) -> int:
    writer = csv.writer(out, lineterminator="\n")
    count = -1
    for row in csv_rows(tranches):
        writer.writerow(row)
        count += 1
    return count


def tranches_of_year(database_url: str, year: int) -> list[TrancheRow]:
    try:
        db = Database(database_url, store="payout-export")
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    try:
        return handlers.tranches_of_budget_year(SqlStore(db), year)
    except Exception as exc:  # noqa: BLE001 - no ledger there, or the database is down
        raise ExportError(
            f"cannot read the payout ledger at {redact(database_url)}: {type(exc).__name__}: {exc}".splitlines()[0]
        ) from None
    finally:
        db.close()


def redact(url: str) -> str:
    """The URL without a password."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}" if ":" in credentials else url
    return url
