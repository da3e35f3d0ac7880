"""The outlay per budget year across firms (GetOutlay; the console's budget
page, issue 15): what is reserved, payable, held, paid, recovered and
cancelled, in fen, per year. A use case over a read-only query
(adapters/outlay_store.py); no Kafka, gRPC or SQL here.

How a year is counted (what is known of the money at each stage):

- reserved: a RESERVED grant (awaiting its public notice) has no tranches
  yet, so no budget year of its own; it counts in its decision year;
- payable (SCHEDULED or DUE), held (HELD), paid (PAID), cancelled
  (CANCELLED): each tranche in its ``budget_year``;
- recovered: what finance confirmed recovered (追回), in the year of the
  confirmation (the money comes back in that year's budget).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Protocol

from subsidy.services.payout.model import InvalidArgument

KINDS = ("reserved", "payable", "held", "paid", "recovered", "cancelled")
MIN_YEAR, MAX_YEAR = 2000, 2100


@dataclasses.dataclass(frozen=True)
class YearOutlay:
    budget_year: int
    reserved_fen: int = 0
    payable_fen: int = 0
    held_fen: int = 0
    paid_fen: int = 0
    recovered_fen: int = 0
    cancelled_fen: int = 0


class OutlayQuery(Protocol):
    def amounts(self, from_year: int, to_year: int) -> Iterable[tuple[str, int, int]]:
        """(kind, year, fen) rows, kind one of KINDS, within the years (0: unbounded)."""


def check_years(from_year: int, to_year: int) -> tuple[int, int]:
    for name, year in (("from_year", from_year), ("to_year", to_year)):
        if year and not MIN_YEAR <= year <= MAX_YEAR:
            raise InvalidArgument(f"{name}: must be 0 (unbounded) or a year from {MIN_YEAR} to {MAX_YEAR}")
    if from_year and to_year and from_year > to_year:
        raise InvalidArgument("from_year: must not be after to_year")
    return from_year, to_year


def outlay(query: OutlayQuery, from_year: int = 0, to_year: int = 0) -> tuple[list[YearOutlay], YearOutlay]:
    """The years with money, ascending, and their total (budget_year 0)."""
    from_year, to_year = check_years(from_year, to_year)
    by_year: dict[int, dict[str, int]] = {}
    for kind, year, fen in query.amounts(from_year, to_year):
        if kind not in KINDS:
            raise ValueError(f"unknown outlay kind {kind!r}")
        row = by_year.setdefault(int(year), dict.fromkeys(KINDS, 0))
        row[kind] += int(fen)
    years = [
        YearOutlay(year, **{f"{k}_fen": v for k, v in row.items()})
        for year, row in sorted(by_year.items())
        if any(row.values())
    ]
    total = YearOutlay(0, **{f"{k}_fen": sum(getattr(y, f"{k}_fen") for y in years) for k in KINDS})
    return years, total
