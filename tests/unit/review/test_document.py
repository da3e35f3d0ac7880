"""The notice list as people read it: HTML with every value escaped, and a
PDF that pdftotext (poppler-utils) reads back — firm name, credit code,
clause, amount and the period — with no contact or personal data."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess

import pytest

from subsidy.services.review.adapters import document
from subsidy.services.review.model import LineRow, NoticeRow

NOTICE = NoticeRow(
    "notice-2025-09-28-0001", dt.date(2025, 9, 28), dt.date(2025, 9, 28), dt.date(2025, 10, 10), "alice", ""
)
LINES = [
    LineRow(
        "l1",
        NOTICE.notice_id,
        "d1",
        "a1",
        "91310117313Q6C3D6G",
        "上海松江智造科技有限公司",
        "1.purchase",
        296_296_296,
        "NOTICED",
    ),
    LineRow(
        "l2", NOTICE.notice_id, "d2", "a2", "913101171K0HG2QW66", "松江<b>工业</b>互联网协会&", "15", 300_050, "HELD"
    ),
]


def test_html_escapes_everything_and_names_the_period():
    html = document.render_html(NOTICE, LINES)
    assert "松江&lt;b&gt;工业&lt;/b&gt;互联网协会&amp;" in html and "<b>工业" not in html
    assert "2025-09-28 至 2025-10-10" in html
    assert "2,962,962.96元" in html and "3,000.50元" in html
    assert "第15条" in html and "第1条（1.purchase）" in html
    assert 'lang="zh-CN"' in html


def test_pdftotext_reads_the_lines_back():
    if shutil.which("pdftotext") is None:
        pytest.fail("pdftotext is missing: apt-get install poppler-utils (.ci/run installs it)")
    pdf = document.render_pdf(NOTICE, LINES, document.find_font())
    assert pdf.startswith(b"%PDF-")
    text = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()
    for expected in (
        "上海松江智造科技有限公司",
        "91310117313Q6C3D6G",
        "913101171K0HG2QW66",
        "2,962,962.96元",
        "3,000.50元",
        "第15条",
        "公示期：2025-09-28 至 2025-10-10",
        "拟支持项目公示",
    ):
        assert expected in text, expected
    assert "alice" not in text  # the publishing reviewer is not on the public list


def test_a_missing_font_is_a_clear_error(tmp_path):
    with pytest.raises(document.FontMissing, match="SUBSIDY_REVIEW_NOTICE_FONT"):
        document.find_font(str(tmp_path / "nothing.ttf"))


def test_the_list_holds_no_contact_or_personal_data():
    # The lines are built from NoticeLine, whose fields are all shown here: nothing else can reach the list.
    from subsidy.v1 import notice_pb2

    fields = {f.name for f in notice_pb2.NoticeLine.DESCRIPTOR.fields}
    assert fields == {"line_id", "decision_id", "application_id", "credit_code", "firm_name", "clause", "amount_fen"}


def test_a_rendered_list_is_reused_until_a_line_changes():
    import dataclasses

    rendered = document.RenderedNotices(document.find_font(), size=2)
    first = rendered.pdf(NOTICE, LINES)
    assert rendered.pdf(NOTICE, list(LINES)) is first
    changed = [dataclasses.replace(LINES[0], status="PAYABLE"), LINES[1]]
    again = rendered.pdf(NOTICE, changed)
    assert again is not first
    text = subprocess.run(["pdftotext", "-", "-"], input=again, capture_output=True, check=True).stdout.decode()
    assert "公示期满" in text
