"""Money is an integer number of fen (分). No floats anywhere near it."""

from __future__ import annotations

FEN_PER_YUAN = 100
WAN_FEN = 1_000_000  # 1 万元
YI_FEN = 10_000_000_000  # 1 亿元


def floor_percent(base_fen: int, percent: int) -> int:
    """`floor(base × percent%)`: never more than the rate allows."""
    return base_fen * percent // 100


def pro_rata(amount_fen: int, counted_days: int, all_days: int) -> int:
    """`floor(amount × counted / all)`, for rent paid over a longer period."""
    return amount_fen * counted_days // all_days


def split(total_fen: int, shares_percent: tuple[int, ...]) -> list[int]:
    """Split by percentages: floor for every part but the last, which takes the
    remainder, so the parts always add up to the total exactly."""
    parts = [total_fen * share // 100 for share in shares_percent[:-1]]
    parts.append(total_fen - sum(parts))
    return parts


def yuan(fen: int, unit: str = "元", *, fixed: bool = False) -> str:
    """An amount of integer fen in yuan, in integer arithmetic (no float can
    round a fen away). Two forms, on purpose:

    - for people (the default): thousands grouped, the fen only when there
      are some, then ``unit``: 275000050 -> '2,750,000.50元', 20000000 ->
      '200,000元' (the reasons' texts, the e-mails); ``unit=""`` for a table
      column whose header names the unit (``subsidy simulate --format table``);
    - ``fixed=True`` for machines (finance's CSV): no grouping, always two
      decimals, no unit: 123456 -> '1234.56', 20000000 -> '200000.00', so a
      spreadsheet or the treasury's import reads every row alike.
    """
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), FEN_PER_YUAN)
    if fixed:
        return f"{sign}{whole}.{cents:02d}"
    return f"{sign}{whole:,}.{cents:02d}{unit}" if cents else f"{sign}{whole:,}{unit}"
