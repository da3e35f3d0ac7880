"""The public notice list (公示名单) as people read it, in Chinese: HTML (every
value escaped) and PDF (fpdf2, embedding a CJK TrueType font from the Debian
package fonts-wqy-microhei, or another named by SUBSIDY_REVIEW_NOTICE_FONT),
so ``pdftotext`` reads the text back. A line shows the firm's name, its
credit code, the clause and the amount; no contact details, no personal data
(the list is built from NoticeLine, which holds none).
"""

from __future__ import annotations

import html
import os
import threading
from collections import OrderedDict
from pathlib import Path

from subsidy.core.money import yuan
from subsidy.services.review.model import LineRow, NoticeRow

#: Where Debian's CJK font packages put their fonts, in order of preference.
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # fonts-wqy-microhei
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",  # fonts-wqy-zenhei
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",  # fonts-droid-fallback
)

DEFAULT_TITLE = "松江区工业互联网促产业经济数字化转型专项资金拟支持项目公示"
STATUS_NAMES = {"NOTICED": "公示中", "HELD": "异议处理中", "PAYABLE": "公示期满", "WITHDRAWN": "已撤销"}


class FontMissing(RuntimeError):
    """No CJK font to embed; the message names the setting and the package."""


def find_font(setting: str = "") -> Path:
    if setting:
        path = Path(setting)
        if not path.is_file():
            raise FontMissing(f"SUBSIDY_REVIEW_NOTICE_FONT: no font file at {setting}")
        return path
    for candidate in FONT_CANDIDATES:
        if os.path.isfile(candidate):
            return Path(candidate)
    raise FontMissing(
        "no CJK font for the notice PDF: apt-get install fonts-wqy-microhei, "
        "or set SUBSIDY_REVIEW_NOTICE_FONT to a TrueType font (.ttf/.ttc) with Chinese glyphs"
    )


def _period(notice: NoticeRow) -> str:
    return f"{notice.first_day.year}年{notice.first_day.month}月{notice.first_day.day}日至{notice.last_day.year}年{notice.last_day.month}月{notice.last_day.day}日"


def _intro(notice: NoticeRow, lines: list[LineRow]) -> list[str]:
    total = sum(line.amount_fen for line in lines if line.status != "WITHDRAWN")
    return [
        f"根据《松江区工业互联网促产业经济数字化转型若干政策》，现将拟支持的{len(lines)}个项目予以公示，拟支持金额合计{yuan(total)}。",
        f"公示期：{_period(notice)}（{(notice.last_day - notice.first_day).days + 1}个自然日，含{_working_days(notice)}个工作日）。",
        "公示期内，对公示项目有异议的，可通过区企业服务门户或本单位账号提出异议，并说明理由。",
    ]


def _working_days(notice: NoticeRow) -> int:
    from subsidy.core.workflow import calendar

    return calendar.working_days_between(notice.first_day, notice.last_day) + 1


def _clause(clause: str) -> str:
    return f"第{clause.split('.')[0]}条（{clause}）" if "." in clause else f"第{clause}条"


def render_html(notice: NoticeRow, lines: list[LineRow]) -> str:
    e = html.escape
    title = notice.title or DEFAULT_TITLE
    rows = "\n".join(
        "<tr>"
        f"<td>{i}</td><td>{e(line.firm_name or '—')}</td><td>{e(line.credit_code)}</td>"
        f'<td>{e(_clause(line.clause))}</td><td class="amount">{e(yuan(line.amount_fen))}</td>'
        f"<td>{e(STATUS_NAMES.get(line.status, line.status))}</td>"
        "</tr>"
        for i, line in enumerate(lines, 1)
    )
    intro = "\n".join(f"<p>{e(p)}</p>" for p in _intro(notice, lines))
    return f"""<!DOCTYPE html>
<html lang="zh-CN">
<head><meta charset="utf-8"><title>{e(title)}</title>
<style>body{{font-family:sans-serif}} table{{border-collapse:collapse}} td,th{{border:1px solid #999;padding:4px 8px}} .amount{{text-align:right}}</style>
</head>
<body>
<h1>{e(title)}</h1>
<p>公示编号：{e(notice.notice_id)}　发布日期：{e(notice.published_on.isoformat())}</p>
{intro}
<table>
<thead><tr><th>序号</th><th>企业名称</th><th>统一社会信用代码</th><th>政策条款</th><th>拟支持金额</th><th>状态</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
<p>公示期：{e(notice.first_day.isoformat())} 至 {e(notice.last_day.isoformat())}</p>
<p>松江区科学技术委员会</p>
</body>
</html>
"""


def render_pdf(notice: NoticeRow, lines: list[LineRow], font: Path) -> bytes:
    from fpdf import FPDF
    from fpdf.fonts import FontFace

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_title(notice.title or DEFAULT_TITLE)
    pdf.set_creator("subsidy review service")
    pdf.add_font("cjk", "", str(font))  # one face: parsing a CJK font is most of the time spent here
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("cjk", size=15)
    pdf.multi_cell(0, 9, notice.title or DEFAULT_TITLE, align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=10)
    pdf.cell(
        0,
        7,
        f"公示编号：{notice.notice_id}　发布日期：{notice.published_on.isoformat()}",
        new_x="LMARGIN",
        new_y="NEXT",
    )
    for paragraph in _intro(notice, lines):
        pdf.multi_cell(0, 6, paragraph, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    widths = (10, 52, 40, 36, 30, 22)
    with pdf.table(
        headings_style=FontFace(emphasis=""),
        col_widths=widths,
        text_align=("CENTER", "LEFT", "LEFT", "LEFT", "RIGHT", "CENTER"),
        line_height=6,
    ) as table:
        header = table.row()
        for text in ("序号", "企业名称", "统一社会信用代码", "政策条款", "拟支持金额", "状态"):
            header.cell(text)
        for i, line in enumerate(lines, 1):
            row = table.row()
            row.cell(str(i))
            row.cell(line.firm_name or "—")
            row.cell(line.credit_code)
            row.cell(_clause(line.clause))
            row.cell(yuan(line.amount_fen))
            row.cell(STATUS_NAMES.get(line.status, line.status))
    pdf.ln(3)
    pdf.cell(
        0, 7, f"公示期：{notice.first_day.isoformat()} 至 {notice.last_day.isoformat()}", new_x="LMARGIN", new_y="NEXT"
    )
    pdf.cell(0, 7, "松江区科学技术委员会", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


class RenderedNotices:
    """The last few PDFs rendered, by notice and the state of its lines: a
    list is read far more often than it changes, and parsing the CJK font
    takes most of a rendering (about a second)."""

    def __init__(self, font: Path, size: int = 32):
        self.font = font
        self.size = size
        self._pdfs: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def pdf(self, notice: NoticeRow, lines: list[LineRow]) -> bytes:
        key = (notice, tuple(lines))
        with self._lock:
            if key in self._pdfs:
                self._pdfs.move_to_end(key)
                return self._pdfs[key]
        rendered = render_pdf(notice, lines, self.font)
        with self._lock:
            self._pdfs[key] = rendered
            while len(self._pdfs) > self.size:
                self._pdfs.popitem(last=False)
        return rendered
