"""The chart of ``subsidy policy diff --chart``: the district's outlay per
budget year under two policy versions, side by side, as SVG or PNG.

matplotlib (pinned in pyproject.toml's ``charts`` extra; not in the service
image: only the command line draws) with the non-interactive Agg backend, so
it runs on a server without a display; the Chinese labels use WenQuanYi
Micro Hei (fonts-wqy-microhei, mk/system-packages.sh), falling back to
DejaVu Sans. Amounts are drawn in 万元 from integer fen; the SVG carries no
date and a fixed hash salt, so the same data draws the same file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from subsidy.core.money import WAN_FEN

FORMATS = (".svg", ".png")
FONTS = ["WenQuanYi Micro Hei", "DejaVu Sans"]


class ChartError(Exception):
    """The chart cannot be drawn where asked; the message names the path."""


def outlay_chart(path: Path, years: list[dict[str, Any]], old_label: str, new_label: str, title: str) -> None:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ChartError(f"{path}: --chart: must end in .svg or .png, got {suffix or 'no suffix'!r}")
    try:
        import matplotlib
    except ImportError:
        raise ChartError("--chart needs matplotlib: pip install -e '.[charts]'") from None
    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib.ticker import FuncFormatter

    with matplotlib.rc_context(
        {"font.sans-serif": FONTS, "font.family": "sans-serif", "axes.unicode_minus": False, "svg.hashsalt": "subsidy"}
    ):
        figure, axes = pyplot.subplots(figsize=(8, 4.5), dpi=100)
        try:
            labels = [str(y["year"]) for y in years]
            positions = list(range(len(years)))
            width = 0.38
            old = [y["old_fen"] / WAN_FEN for y in years]
            new = [y["new_fen"] / WAN_FEN for y in years]
            axes.bar([p - width / 2 for p in positions], old, width, label=old_label, color="#4C72B0")
            axes.bar([p + width / 2 for p in positions], new, width, label=new_label, color="#DD8452")
            for p, y in zip(positions, years, strict=True):
                difference = y["difference_fen"]
                if difference:
                    top = max(y["old_fen"], y["new_fen"]) / WAN_FEN
                    axes.annotate(
                        _wan(difference),
                        (p, top),
                        textcoords="offset points",
                        xytext=(0, 4),
                        ha="center",
                        fontsize=8,
                    )
            axes.set_xticks(positions, labels)
            axes.set_xlabel("预算年度 budget year")
            axes.set_ylabel("区财政支出 outlay（万元）")
            axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
            axes.set_title(title)
            axes.legend()
            axes.grid(axis="y", alpha=0.3)
            figure.tight_layout()
            try:
                figure.savefig(path, format=suffix[1:], metadata={"Date": None} if suffix == ".svg" else None)
            except OSError as exc:
                raise ChartError(f"{path}: cannot write: {exc.strerror}") from None
        finally:
            pyplot.close(figure)


def _wan(fen: int) -> str:
    """A difference in 万元 with two decimals, in integer arithmetic (truncated)."""
    sign = "+" if fen > 0 else "−"
    whole, rest = divmod(abs(fen), WAN_FEN)
    return f"{sign}{whole:,}.{rest * 100 // WAN_FEN:02d}"
