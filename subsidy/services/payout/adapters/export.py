"""The finance bureau's CSV of one budget year's tranches (``subsidy
export-tranches``): one row per tranche, sorted by due date then tranche id,
amounts in integer fen and in yuan with exactly two decimals (integer
arithmetic, no floats).

The file is opened in a spreadsheet: every text cell that starts with a
character a spreadsheet reads as a formula (``= + - @``, tab, CR, and their
full-width forms, which some CJK locales also take) gets a leading single
quote, as OWASP's "CSV Injection" page recommends (``text_cell``). The
amounts, numbers and years are written by the program, not taken from
input, and stay numeric. Ids are validated at the edge (the identifier
grammar, docs/contract.md), but rows stored before it exist: the export is
safe on its own."""

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


# The first characters a spreadsheet (Excel, LibreOffice, WPS) takes as
# the start of a formula or a DDE call.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


class ExportError(Exception):
    pass


def text_cell(value: str) -> str:
    """A text value as a cell no spreadsheet evaluates."""
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


def csv_rows(tranches: Iterable[TrancheRow]) -> Iterable[list[str]]:
    yield list(COLUMNS)
    for t in tranches:
        yield [
            text_cell(t.tranche_id),
            text_cell(t.application_id),
            text_cell(t.credit_code),
            text_cell(t.clause),
            str(t.number),
            str(t.amount_fen),
            yuan(t.amount_fen, fixed=True),
            text_cell(t.due_on),
            str(t.budget_year),
            text_cell(t.status),
            text_cell(t.paid_on),
            text_cell(t.payment_id),
        ]


def write_csv(tranches: Iterable[TrancheRow], out: TextIO) -> int:
    writer = csv.writer(out, lineterminator="\n")
    # The csv module quotes a field holding a line terminator, and ours is
    # "\n": a bare CR (in an old row's id) would be written unquoted and
    # read as a row break. Such a row is written with every field quoted.
    quoting_all = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    count = -1
    for row in csv_rows(tranches):
        (quoting_all if any("\r" in cell for cell in row) else writer).writerow(row)
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
