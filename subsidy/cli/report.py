"""Tables for people: the calculator's results in a terminal."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Any

from subsidy.core.money import yuan

OUTCOME_NAMES = {"ELIGIBLE": "符合", "INELIGIBLE": "不符合", "NEEDS_REVIEW": "待审核", "REFERRED": "转介"}


def yuan_column(fen: int) -> str:
    """An amount in a column headed 元: the people's form without the unit."""
    return yuan(fen, unit="")


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int, right: bool = False) -> str:
    gap = " " * (width - _width(text))
    return gap + text if right else text + gap


def _render(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(_width(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(_pad(c, widths[i], i in right) for i, c in enumerate(header)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(_pad(c, widths[i], i in right) for i, c in enumerate(row)).rstrip())
    return lines


def table(results: Iterable[tuple[str, dict[str, Any]]], summary: dict[str, Any] | None) -> str:
    """One row per application (amounts in 元), then the outlay per budget year."""
    header = ["application", "firm", "clause", "outcome", "ceiling 元", "granted 元", "tranches (year: 元)", "note"]
    rows = []
    for firm, line in results:
        note = ""
        if line.get("duplicate"):
            note = "duplicate id: nothing more granted"
        else:
            codes = [r["code"] for r in line["reasons"] if r["code"] != "AWARD_BASIS"]
            note = ", ".join(dict.fromkeys(codes))
        rows.append(
            [
                line["application_id"],
                firm,
                line["clause"],
                f"{line['outcome']} {OUTCOME_NAMES[line['outcome']]}",
                yuan_column(line["max_award_fen"]),
                yuan_column(line["granted_fen"]),
                "; ".join(f"{t['year']}: {yuan_column(t['amount_fen'])}" for t in line["tranches"]),
                note,
            ]
        )
    lines = _render(header, rows, right={4, 5})
    if summary is not None:
        lines += ["", "District outlay per budget year (区财政支出):"]
        year_rows = [[year, yuan_column(fen)] for year, fen in summary["by_year_fen"].items()]
        year_rows.append(["total 合计", yuan_column(summary["total_fen"])])
        lines += _render(["budget year", "元"], year_rows, right={1})
    return "\n".join(lines) + "\n"
