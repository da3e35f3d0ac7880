"""The searches across firms (issue 15): applications by credit code, part of
the firm name, clause and state; proposals of every firm by state; the
recoveries on the finance page. Over the fake services, whose access checks
are the real policy's (access.yaml)."""

from __future__ import annotations

from urllib.parse import quote

from .fakes import HOSTILE_NAME, make_harness


def test_staff_search_every_firm_by_part_of_the_firm_name_and_intake_gets_the_filters(tmp_path):
    harness = make_harness(tmp_path)
    harness.sign_in("REVIEWER")
    page = harness.client.get("/applications?firm_name=" + quote("乙")).text
    assert "B-1" in page and "A-1" not in page
    assert harness.services.application_searches[-1] == ("", "乙", "", 0, "")
    everything = harness.client.get("/applications").text
    assert "A-1" in everything and "B-1" in everything
    harness.client.get("/applications?clause=4&state=5&firm_name=" + quote(" 恶意 "))
    assert harness.services.application_searches[-1] == ("", "恶意", "4", 5, "")


def test_a_firm_name_with_html_is_escaped_in_the_results(tmp_path):
    harness = make_harness(tmp_path)
    harness.sign_in("OPERATOR")
    page = harness.client.get("/applications?firm_name=" + quote("<script>")).text
    assert "A-1" in page
    assert HOSTILE_NAME not in page and "&lt;script&gt;alert(" in page
    assert 'value="&lt;script&gt;"' in page  # the query echoed in the form, escaped too


def test_an_enterprise_searching_another_firms_name_finds_nothing_of_theirs(tmp_path):
    harness = make_harness(tmp_path)
    harness.sign_in("ENTERPRISE")
    page = harness.client.get("/applications?firm_name=" + quote("乙公司")).text
    assert "B-1" not in page and "没有符合条件的申请" in page
    # intake was asked about the caller's own firm only
    assert harness.services.application_searches[-1][:2] == (harness.services.firm_a, "乙公司")
    own = harness.client.get("/applications").text
    assert "A-1" in own and "B-1" not in own
    assert harness.client.get(f"/applications?credit_code={harness.services.firm_b}").status_code == 403


def test_each_bad_filter_is_refused_in_chinese_naming_the_field_before_any_call(tmp_path):
    harness = make_harness(tmp_path)
    harness.sign_in("REVIEWER")
    cases = {
        "firm_name=" + "名" * 101: "企业名称",
        "firm_name=" + quote("甲\x07"): "企业名称",
        "clause=99": "条款",
        "clause=" + quote("1' OR 1=1"): "条款",
        "state=8": "状态",
        "state=0": "状态",
        "page_token=" + quote("<x>"): "页码",
        "credit_code=91310117313Q6C3D6X": "统一社会信用代码",
    }
    for query, label in cases.items():
        before = len(harness.services.calls)
        reply = harness.client.get("/applications?" + query)
        assert reply.status_code == 400, query
        assert label in reply.text, query
        assert harness.services.calls[before:] == [], query


def test_a_next_page_link_keeps_the_filters(tmp_path):
    harness = make_harness(tmp_path)
    harness.sign_in("REVIEWER")
    services = harness.services
    original = services.list_applications

    async def paged(person, code, token, **filters):
        reply = await original(person, code, token, **filters)
        reply.next_page_token = "eyJ0IjoxfQ"
        return reply

    services.list_applications = paged
    page = harness.client.get("/applications?firm_name=" + quote("乙") + "&clause=4").text
    assert 'id="next-page"' in page
    link = page.split('id="next-page" href="')[1].split('"')[0].replace("&amp;", "&")
    services.list_applications = original
    harness.client.get(link)
    assert services.application_searches[-1] == ("", "乙", "4", 0, "eyJ0IjoxfQ")


def test_the_finance_page_lists_recoveries_open_by_default_escaped(tmp_path):
    harness = make_harness(tmp_path)
    harness.sign_in("FINANCE")
    page = harness.client.get("/finance/tranches").text
    table = page.split('id="recoveries"')[1]
    assert "R-open" in table and "R-done" not in table
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;虚报" in table
    closed = harness.client.get("/finance/tranches?recoveries=closed").text.split('id="recoveries"')[1]
    assert "R-done" in closed and "R-open" not in closed
    every = harness.client.get("/finance/tranches?recoveries=all").text.split('id="recoveries"')[1]
    assert "R-done" in every and "R-open" in every
    bad = harness.client.get("/finance/tranches?recoveries=maybe")
    assert bad.status_code == 400 and "追回状态" in bad.text
