"""subsidy.core.money.yuan: the one formatter of yuan, in its two forms —
for people (reasons, e-mails, the calculator's table) and fixed for finance's
CSV — each byte for byte what its former copy wrote."""

from __future__ import annotations

import random

import pytest

from subsidy.cli.report import yuan_column
from subsidy.core.money import yuan
from subsidy.services.payout.adapters import export
from subsidy.services.payout.model import TrancheRow

# What the three copies were before they became one (kept as oracles).


def old_core_yuan(fen: int) -> str:  # subsidy/core/money.py
    whole, cents = divmod(fen, 100)
    return f"{whole:,}.{cents:02d}元" if cents else f"{whole:,}元"


def old_report_yuan_column(fen: int) -> str:  # subsidy/cli/report.py
    return f"{fen / 100:,.2f}" if fen % 100 else f"{fen // 100:,}"


def old_payout_yuan_text(fen: int) -> str:  # subsidy/services/payout/model.py
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{sign}{whole}.{cents:02d}"


def amounts() -> list[int]:
    rng = random.Random(11)
    edges = [0, 1, 5, 10, 99, 100, 101, 999, 1000, 99_999, 100_000, 123_456_789, 10_000_000_000, 275_000_050]
    return edges + [rng.randrange(0, 10**13) for _ in range(20_000)] + [rng.randrange(0, 10**6) for _ in range(5000)]


@pytest.mark.parametrize(
    "fen, text",
    [
        (0, "0元"),
        (5, "0.05元"),
        (20_000_000, "200,000元"),
        (275_000_050, "2,750,000.50元"),
        (10_000_000_000, "100,000,000元"),
    ],
)
def test_for_people_thousands_are_grouped_and_fen_shown_only_when_there_are_some(fen, text):
    assert yuan(fen) == text
    assert yuan(fen, unit="") == text.removesuffix("元")


@pytest.mark.parametrize(
    "fen, text",
    [
        (0, "0.00"),
        (1, "0.01"),
        (99, "0.99"),
        (100, "1.00"),
        (123456789, "1234567.89"),
        (10_000_000_000, "100000000.00"),
        (-150, "-1.50"),
    ],
)
def test_for_finance_yuan_are_exact_with_two_decimals_and_no_grouping(fen, text):
    assert yuan(fen, fixed=True) == text


def test_each_form_writes_what_its_former_copy_wrote():
    for fen in amounts():
        assert yuan(fen) == old_core_yuan(fen), fen
        assert yuan_column(fen) == old_report_yuan_column(fen), fen
        assert yuan(fen, fixed=True) == old_payout_yuan_text(fen), fen
    for fen in (-1, -99, -100, -150, -123_456_789):
        assert yuan_column(fen) == old_report_yuan_column(fen), fen
        assert yuan(fen, fixed=True) == old_payout_yuan_text(fen), fen


def test_a_negative_amount_for_people_is_the_amount_with_a_minus_sign():
    """The old core copy wrote -150 fen as '-2.50元' (floor division); nothing
    passes it a negative amount, and now it could not go wrong if something did."""
    assert yuan(-150) == "-1.50元" and yuan(-20_000) == "-200元"


def test_the_csv_carries_the_fixed_form():
    row = TrancheRow(
        tranche_id="A-1/tranche-0",
        application_id="A-1",
        credit_code="C",
        clause="1.rent",
        number=0,
        amount_fen=100_000_001,
        due_on="2025-03-01",
        budget_year=2025,
        status="SCHEDULED",
    )
    [_, line] = list(export.csv_rows([row]))
    assert line[export.COLUMNS.index("amount_yuan")] == "1000000.01"
