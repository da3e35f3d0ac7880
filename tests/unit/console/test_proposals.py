"""免申即享 on the console: a firm's proposals on its ledger page (not for
FINANCE, whom ProposalService does not admit) and the proposals page,
searched by credit code and state; an ENTERPRISE sees only its own; the
fact reference and the firm name are text."""

from __future__ import annotations

import pytest

from tests.unit.console.fakes import make_harness

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.mark.parametrize("role", ["REVIEWER", "OPERATOR", "PORTAL", "ENTERPRISE"])
def test_the_firm_page_shows_its_proposals(tmp_path, role):
    harness = make_harness(tmp_path)
    harness.sign_in(role)
    page = harness.client.get(f"/firms/{harness.services.firm_a}").text
    assert "免申即享" in page and "待企业确认" in page and "企业已谢绝：暂不需要" in page
    assert "第9项" in page and "200,000元" in page
    assert "<b>DCMM" not in page and "&lt;b&gt;DCMM-2026-0042&lt;/b&gt;" in page
    assert "<script>alert" not in page


def test_finance_sees_the_ledger_without_proposals(tmp_path):
    harness = make_harness(tmp_path)
    harness.sign_in("FINANCE")
    before = len(harness.services.calls)
    page = harness.client.get(f"/firms/{harness.services.firm_a}").text
    assert 'id="proposals"' not in page
    assert [rpc for rpc, _ in harness.services.calls[before:]] == ["PayoutService.GetLedger"]


def test_the_proposals_page_by_credit_code_and_state(tmp_path):
    harness = make_harness(tmp_path)
    harness.sign_in("REVIEWER")
    # Without a credit code: every firm's proposals (issue 15), the state filtered by intake.
    across = harness.client.get("/proposals").text
    assert across.count('class="proposal-state"') == 2 and "请输入统一社会信用代码" not in across
    assert harness.client.get("/proposals?state=1").text.count('class="proposal-state"') == 1
    listed = harness.client.get(f"/proposals?credit_code={harness.services.firm_a}").text
    assert listed.count('class="proposal-state"') == 2
    declined = harness.client.get(f"/proposals?credit_code={harness.services.firm_a}&state=3").text
    assert declined.count('class="proposal-state"') == 1 and "暂不需要" in declined
    bad = harness.client.get("/proposals?credit_code=91310117313Q6C3D6X")
    assert bad.status_code == 400 and "统一社会信用代码" in bad.text
    assert harness.client.get(f"/proposals?credit_code={harness.services.firm_a}&state=9").status_code == 400


def test_an_enterprise_sees_only_its_own_proposals(tmp_path):
    harness = make_harness(tmp_path)
    harness.sign_in("ENTERPRISE")
    own = harness.client.get("/proposals").text
    assert own.count('class="proposal-state"') == 2
    before = len(harness.services.calls)
    other = harness.client.get(f"/proposals?credit_code={harness.services.firm_b}")
    assert other.status_code == 403 and harness.services.calls[before:] == []
