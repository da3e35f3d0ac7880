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


def yuan(fen: int) -> str:
    """Human-readable amount for messages, e.g. 2750000.5 元 -> '2,750,000.50元'."""
    whole, cents = divmod(fen, FEN_PER_YUAN)
    return f"{whole:,}.{cents:02d}元" if cents else f"{whole:,}元"
