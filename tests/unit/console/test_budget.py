"""The budget page: the outlay per budget year (GetOutlay) as a server-rendered
SVG chart and a table, a policy version's difference from another (the
register's texts through subsidy.core.versions.diff, as `subsidy policy diff`)
with both citations, and the shadow figures (GetShadowDifference) or why
there are none; bad filters name the field and call nothing."""

from __future__ import annotations

import re

import pytest

from subsidy.core.versions import diff, load_versions
from subsidy.v1 import policy_service_pb2
from tests.unit.console.fakes import make_harness

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_outlay_as_chart_and_table(tmp_path):
    harness = make_harness(tmp_path)
    harness.sign_in("FINANCE")
    page = harness.client.get("/budget").text
    table = re.search(r'<table id="outlay">.*?</table>', page, re.S).group(0)

    def cells(year):
        return re.findall(r"<td[^>]*>([^<]*)</td>", re.search(rf"<tr[^>]*><td>{year}</td>.*?</tr>", table).group(0))

    # reserved, payable, held, paid, recovered, cancelled
    assert cells(2025)[1:] == ["0元", "0元", "0元", "400,000元", "10,000元", "0元"]
    assert cells(2026)[1:] == ["300,000元", "250,000元", "0元", "0元", "0元", "0元"]
    assert cells(2027)[1:] == ["0元", "200,000元", "50,000元", "0元", "0元", "0元"]
    assert cells("合计")[1:] == ["300,000元", "450,000元", "50,000元", "400,000元", "10,000元", "0元"]
    chart = re.search(r'<svg id="outlay-chart".*?</svg>', page, re.S).group(0)
    assert chart.count("<rect") == 3 * 5 and "style=" not in chart and "<script" not in chart
    widths = [int(w) for w in re.findall(r'width="(\d+)" height="12"', chart)]
    assert max(widths) == 560  # the largest amount (paid 2025) is the full width
    filtered = harness.client.get("/budget?from_year=2026&to_year=2026").text
    assert "<td>2025</td>" not in filtered and "<td>2026</td>" in filtered


def test_a_version_difference_with_citations(tmp_path):
    harness = make_harness(tmp_path)
    harness.sign_in("REVIEWER")
    register = load_versions()
    expected = diff(register.get("songjiang-ii-2022-draft"), register.get("fictional-final-2023"))
    assert expected, "the candidate differs from the draft"
    page = harness.client.get("/budget?version=fictional-final-2023&against=songjiang-ii-2022-draft").text
    rows = re.search(r'<table id="changes">.*?</table>', page, re.S).group(0)
    assert rows.count("<tr>") == len(expected) + 1
    for change in expected:
        if change.parameter:
            assert change.parameter in rows
    assert "songjiang-ii-2022-draft" in rows and "fictional-final-2023" in rows
    same = harness.client.get("/budget?version=songjiang-ii-2022-draft&against=songjiang-ii-2022-draft").text
    assert "两个版本没有差异" in same


def test_shadow_figures_or_why_not(tmp_path):
    harness = make_harness(tmp_path)
    harness.sign_in("OPERATOR")
    assert "no shadow version is set" in harness.client.get("/budget").text
    harness.services.shadow = policy_service_pb2.GetShadowDifferenceResponse(
        adopted_version="songjiang-ii-2022-draft+abc",
        shadow_version="fictional-final-2023+def",
        since="2026-12-01T00:00:00Z",
        applications=12,
        years=[policy_service_pb2.BudgetYearDifference(year=2026, adopted_fen=100, shadow_fen=250, difference_fen=150)],
        clauses=[policy_service_pb2.ClauseAgreement(clause="11.identifiers", agreements=3, differences=2)],
        basis="each decision's ceiling",
    )
    page = harness.client.get("/budget").text
    assert "fictional-final-2023+def" in page and "12 件申请" in page and "第11.identifiers项" in page
    assert "1.50" in page and "2.50" in page


@pytest.mark.parametrize(
    ("query", "label"),
    [
        ("from_year=20x6", "预算年度（起）"),
        ("to_year=1999", "预算年度（止）"),
        ("from_year=2027&to_year=2026", "预算年度（起）"),
        ("version=no-such-version", "政策版本"),
        ("against=<script>", "对比版本"),
    ],
)
def test_bad_filters_name_the_field(tmp_path, query, label):
    harness = make_harness(tmp_path)
    harness.sign_in("FINANCE")
    before = len(harness.services.calls)
    reply = harness.client.get(f"/budget?{query}")
    assert reply.status_code == 400 and label in reply.text and "<script>" not in reply.text
    assert harness.services.calls[before:] == []
