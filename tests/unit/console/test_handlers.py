"""The console's use cases over the fake: the queue overdue first, the
objections folded from the audit trail, the finance CSV with formulas
neutralised like payout's export, a firm's ledger, an application's
timeline with every decision and its policy version, a rejection, the
Grafana link only when it is set."""

from __future__ import annotations

import csv
import io
import json

import pytest

from subsidy.services.console import handlers
from subsidy.services.console.config import Settings
from subsidy.services.payout.adapters.export import FORMULA_PREFIXES as PAYOUT_PREFIXES
from subsidy.v1 import decision_pb2, payout_pb2, review_pb2
from tests.unit.console.fakes import make_harness

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_overdue_items_come_first_then_by_deadline():
    items = [
        review_pb2.ReviewItem(item_id="a", deadline="2026-10-01", queued_on="2026-09-01"),
        review_pb2.ReviewItem(item_id="b", deadline="2026-10-20", queued_on="2026-09-02", overdue=True),
        review_pb2.ReviewItem(item_id="c", deadline="2026-09-20", queued_on="2026-09-03"),
    ]
    assert [i.item_id for i in handlers.overdue_first(items)] == ["b", "c", "a"]


def test_the_queue_page_shows_the_overdue_item_first(tmp_path):
    harness = make_harness(tmp_path)
    harness.sign_in("OPERATOR")
    page = harness.client.get("/review").text
    assert page.index("rv-2") < page.index("rv-1")
    assert "逾期" in page
    assert 'href="/review/items/rv-1"' in page


def test_objections_are_folded_from_the_audit_trail():
    lodged = {"objection_id": "n/l/objection-1", "line_id": "n/l", "reason": "r", "status": "OPEN"}
    entries = [
        review_pb2.AuditEntry(action="OBJECTION_LODGED", after=json.dumps({"objection": lodged})),
        review_pb2.AuditEntry(action="LINE_PAYABLE", after="{}"),
        review_pb2.AuditEntry(
            action="OBJECTION_DISMISSED",
            after=json.dumps({"objection": {**lodged, "status": "DISMISSED", "resolved_by": "reviewer-li"}}),
        ),
        review_pb2.AuditEntry(action="OBJECTION_LODGED", after="not json"),
    ]
    [objection] = handlers.objections_from_audit(entries)
    assert objection["status"] == "DISMISSED" and objection["resolved_by"] == "reviewer-li"
    assert objection["resolution_reasons"] == ""


def test_the_finance_csv_neutralises_formulas_and_keeps_payouts_columns(tmp_path):
    harness = make_harness(tmp_path)
    harness.sign_in("FINANCE")
    reply = harness.client.get("/finance/tranches.csv")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/csv")
    assert "attachment" in reply.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(reply.content.decode("utf-8-sig"))))
    assert tuple(rows[0]) == handlers.CSV_COLUMNS
    by_id = {r[0]: r for r in rows[1:]}
    hostile = by_id['\'=HYPERLINK("x")']
    assert hostile[1] == "'-A-2" and hostile[6] == "1234.56" and hostile[9] == "DUE"
    assert [r[0] for r in rows[1:]] == ['\'=HYPERLINK("x")', "A-1/tranche-0"]  # by due date
    assert handlers.FORMULA_PREFIXES == PAYOUT_PREFIXES


def test_the_finance_csv_follows_the_filters(tmp_path):
    harness = make_harness(tmp_path)
    harness.sign_in("FINANCE")
    rows = harness.client.get("/finance/tranches.csv?status=SCHEDULED").text.strip().splitlines()
    assert len(rows) == 2 and rows[1].startswith("A-1/tranche-0")
    page = harness.client.get("/finance/tranches?due_to=2026-10-05").text
    assert "A-1/tranche-0" not in page and "=HYPERLINK" in page


def test_a_firm_page_shows_caps_grants_and_tranches(tmp_path):
    harness = make_harness(tmp_path)
    harness.sign_in("REVIEWER")
    page = harness.client.get(f"/firms/{harness.services.firm_a}").text
    assert "500,000元" in page and "可拨付" in page
    assert "已支付 250,000元" in page and "净额 250,000元" in page


def test_the_timeline_of_an_application(tmp_path):
    harness = make_harness(tmp_path)
    status = harness.services.applications["A-1"]
    status.grant.notice_id = "notice-1"
    status.grant.payable_on = "2026-10-12"
    del status.grant.tranches[:]
    status.grant.tranches.append(
        payout_pb2.Tranche(number=0, amount_fen=100, due_on="2026-10-20", budget_year=2026, status=1)
    )
    events = handlers.timeline(status)
    assert [what for _, what, _ in events] == [
        "提交并受理",
        "系统决定",
        "入账（预留额度）",
        "公示",
        "第 1 笔拨付 1元（已排期）",
    ]
    assert events[1][2] == "政策版本 2025.1；第4项 符合，上限 500,000元"


def reviewed_then_redecided(status) -> list:
    """A-1's decisions as intake lists them after a reviewer approved the
    computed decision and a policy version's adoption re-decided it (the
    re-decision names the computed decision, as eligibility's ``redecide``
    does): the computed one and its review superseded, the re-decision held."""
    computed = decision_pb2.Decision()
    computed.CopyFrom(status.decision)
    computed.review_required = True
    reviewed = decision_pb2.Decision()
    reviewed.CopyFrom(computed)
    reviewed.decision_id = "A-1@2025.1/review:rv-1"
    reviewed.max_award_fen = 40_000_000
    reviewed.review.CopyFrom(
        decision_pb2.ReviewRecord(
            supersedes_decision_id="A-1@2025.1",
            item_id="rv-1",
            reviewers=["reviewer-zhang", "reviewer-li"],
            basis="按第4项核定",
            result="APPROVED",
            decided_at="2026-09-30T10:00:00Z",
        )
    )
    redecided = decision_pb2.Decision(
        decision_id="A-1@2026.1",
        application_id="A-1",
        clause="4",
        outcome="ELIGIBLE",
        max_award_fen=60_000_000,
        policy_version="2026.1",
        supersedes_decision_id="A-1@2025.1",
    )
    status.decision.CopyFrom(redecided)
    del status.decisions[:]
    status.decisions.extend([computed, reviewed, redecided])
    return [computed, reviewed, redecided]


def test_the_timeline_shows_every_decision_with_its_policy_version(tmp_path):
    harness = make_harness(tmp_path)
    status = harness.services.applications["A-1"]
    reviewed_then_redecided(status)
    steps = handlers.decision_steps(status)
    assert [what for _, what, _ in steps] == [
        "系统决定（已被取代）",
        "人工审核结论（已被取代）",
        "新政策版本采用后重新决定",
    ]
    computed, reviewed, redecided = (detail for _, _, detail in steps)
    assert computed.startswith("政策版本 2025.1；") and "由决定 A-1@2025.1/review:rv-1 取代" in computed
    assert reviewed.startswith(
        "政策版本 2025.1；已通过；第4项 符合，上限 400,000元；审核人 reviewer-zhang、reviewer-li"
    )
    assert redecided == "政策版本 2026.1；第4项 符合，上限 600,000元；取代决定 A-1@2025.1"
    assert steps[1][0] == "2026-09-30T10:00:00Z"

    harness.sign_in("REVIEWER")
    page = harness.client.get("/applications/A-1").text
    timeline = page[page.index('id="timeline"') : page.index("</ol>", page.index('id="timeline"'))]
    assert timeline.count("已被取代") == 2
    assert timeline.count("政策版本 2025.1") == 2 and timeline.count("政策版本 2026.1") == 1


def test_an_unreviewed_decision_under_review_is_not_superseded(tmp_path):
    harness = make_harness(tmp_path)
    status = harness.services.applications["A-1"]
    status.state = 4
    status.decision.review_required = True
    del status.decisions[:]
    status.decisions.append(status.decision)
    [(_, what, detail)] = handlers.decision_steps(status)
    assert what == "系统决定" and detail.startswith("政策版本 2025.1")


def test_the_clause_filter_and_state_filter_of_applications(tmp_path):
    harness = make_harness(tmp_path)
    harness.sign_in("PORTAL")
    code = harness.services.firm_a
    assert "A-1" in harness.client.get(f"/applications?credit_code={code}&clause=4&state=5").text
    assert "A-1" not in harness.client.get(f"/applications?credit_code={code}&clause=7").text
    assert harness.client.get(f"/applications?credit_code={code}&state=99").status_code == 400


def test_the_second_reviewer_approves_or_sends_back_with_reasons(tmp_path):
    harness = make_harness(tmp_path)
    item = harness.services.items["rv-1"]
    item.status, item.first_reviewer, item.amount_fen = "AWAITING_SECOND", "reviewer-li", 50_000_000
    harness.sign_in("REVIEWER")
    page = harness.client.get("/review/items/rv-1").text
    assert 'id="second"' in page and 'id="send-back"' in page
    reply = harness.client.post("/review/items/rv-1/second", data={"csrf_token": harness.csrf(), "send_back": "1"})
    assert reply.status_code == 400 and "退回理由：必须填写" in reply.text
    assert not hasattr(harness.services, "seconded")
    harness.client.post(
        "/review/items/rv-1/second", data={"csrf_token": harness.csrf(), "send_back": "1", "reasons": "金额依据不足"}
    )
    assert harness.services.seconded.send_back and harness.services.seconded.reasons == "金额依据不足"
    harness.client.post("/review/items/rv-1/second", data={"csrf_token": harness.csrf()})
    assert not harness.services.seconded.send_back


def test_a_reviewer_rejects_an_item_with_reasons(tmp_path):
    harness = make_harness(tmp_path)
    harness.sign_in("REVIEWER")
    harness.client.post("/review/items/rv-1/claim", data={"csrf_token": harness.csrf()})
    form = {
        "csrf_token": harness.csrf(),
        "result": "REJECTED",
        "reasons": "研发投入凭证与申报不符",
        # typed before choosing 不予支持: a rejection carries no amount or basis
        "amount_yuan": "100000",
        "basis": "按第4项核定",
    }
    reply = harness.client.post("/review/items/rv-1/decide", data=form, follow_redirects=False)
    assert reply.status_code == 303 and reply.headers["location"] == "/review/items/rv-1?done=decided"
    sent = harness.services.decided
    assert sent.item_id == "rv-1" and sent.result == "REJECTED" and sent.reasons == "研发投入凭证与申报不符"
    assert sent.amount_fen == 0 and sent.basis == "" and not sent.missing
    assert "审核结论已提交。" in harness.client.get(reply.headers["location"]).text


def test_the_first_reviewer_sees_no_second_approval(tmp_path):
    harness = make_harness(tmp_path)
    item = harness.services.items["rv-1"]
    item.status, item.first_reviewer = "AWAITING_SECOND", "reviewer-zhang"
    harness.sign_in("REVIEWER")
    page = harness.client.get("/review/items/rv-1").text
    assert "四眼原则" in page and 'id="second"' not in page


class TestHoldsAndRecoveries:
    def test_a_held_tranche_and_a_recovery_on_the_firm_page(self, tmp_path):
        harness = make_harness(tmp_path)
        harness.sign_in("FINANCE")
        page = harness.client.get(f"/firms/{harness.services.firm_a}").text
        assert "暂缓（放款条件未满足）" in page and "2027-02-04" in page
        assert "&lt;i&gt;企业迁出本区&lt;/i&gt;" in page and "&lt;b&gt;发票不实&lt;/b&gt;" in page
        assert "追回中" in page
        # finance may cancel the open (held) tranche, not the paid one; it opens no recovery
        assert page.count('class="cancel"') == 1 and "登记追回" not in page

    def test_a_reviewer_opens_a_recovery_of_paid_tranches(self, tmp_path):
        harness = make_harness(tmp_path)
        harness.sign_in("REVIEWER")
        code = harness.services.firm_a
        page = harness.client.get(f"/firms/{code}").text
        assert 'value="A-1/tranche-0"' in page and 'value="A-1/tranche-1"' not in page  # paid ones only
        assert 'class="cancel"' not in page
        form = {
            "csrf_token": harness.csrf(),
            "application_id": "A-1",
            "tranche_id": ["A-1/tranche-0"],
            "amount_yuan": "10,000",
            "reason": "发票不实",
            "void_award": "1",
        }
        reply = harness.client.post(f"/firms/{code}/recoveries", data=form, follow_redirects=False)
        assert reply.status_code == 303 and reply.headers["location"].endswith("done=recovery")
        sent = harness.services.recovery
        assert list(sent.tranche_ids) == ["A-1/tranche-0"] and sent.amount_fen == 1_000_000 and sent.void_award

    @pytest.mark.parametrize(
        ("form", "label"),
        [
            ({"amount_yuan": "", "reason": "r"}, "追回金额（元）"),
            ({"amount_yuan": "-5", "reason": "r"}, "追回金额（元）"),
            ({"amount_yuan": "5", "reason": ""}, "追回理由"),
            ({"amount_yuan": "5", "reason": "长" * 1001}, "追回理由"),
        ],
    )
    def test_a_bad_recovery_form_names_the_field(self, tmp_path, form, label):
        harness = make_harness(tmp_path)
        harness.sign_in("REVIEWER")
        code = harness.services.firm_a
        reply = harness.client.post(
            f"/firms/{code}/recoveries", data={"csrf_token": harness.csrf(), "application_id": "A-1", **form}
        )
        assert reply.status_code == 400 and f"{label}：" in reply.text
        assert not hasattr(harness.services, "recovery")

    def test_finance_cancels_an_open_tranche_with_a_reason(self, tmp_path):
        harness = make_harness(tmp_path)
        harness.sign_in("OPERATOR")
        code = harness.services.firm_a
        reply = harness.client.post(
            f"/firms/{code}/tranches/cancel", data={"csrf_token": harness.csrf(), "tranche_id": "A-1/tranche-1"}
        )
        assert reply.status_code == 400 and "取消理由：必须填写" in reply.text
        assert not hasattr(harness.services, "cancelled")
        reply = harness.client.post(
            f"/firms/{code}/tranches/cancel",
            data={"csrf_token": harness.csrf(), "tranche_id": "A-1/tranche-1", "reason": "企业迁出本区"},
            follow_redirects=False,
        )
        assert reply.status_code == 303 and harness.services.cancelled == ("A-1/tranche-1", "企业迁出本区")

    def test_the_finance_page_filters_held_tranches(self, tmp_path):
        harness = make_harness(tmp_path)
        harness.services.tranches.append(
            payout_pb2.Tranche(
                tranche_id="H-1/tranche-0",
                status=payout_pb2.TRANCHE_STATUS_HELD,
                due_on="2026-11-01",
                hold_until="2026-12-01",
                hold_reason="税务登记迁出",
            )
        )
        harness.sign_in("FINANCE")
        page = harness.client.get("/finance/tranches?status=HELD").text
        assert "H-1/tranche-0" in page and "税务登记迁出" in page and "A-1/tranche-0" not in page
        rows = harness.client.get("/finance/tranches.csv?status=HELD").text.splitlines()
        assert rows[1].split(",")[9] == "HELD"


def test_budget_years_sum_by_status_and_scale_the_bars():
    def tranche(year, status, fen):
        return payout_pb2.Tranche(budget_year=year, status=status, amount_fen=fen)

    summary = handlers.budget_years(
        [tranche(2026, 3, 300), tranche(2026, 1, 100), tranche(2027, 2, 200), tranche(2027, 4, 999)]
    )
    assert summary["years"] == {2026: {3: 300, 1: 100}, 2027: {2: 200, 4: 999}}
    bar_2026, bar_2027 = summary["bars"]
    assert [s["status"] for s in bar_2026["segments"]] == [3, 1]  # paid first
    assert bar_2026["outlay"] == 400 and bar_2027["outlay"] == 200  # cancelled is no outlay
    assert sum(s["width"] for s in bar_2026["segments"]) == handlers.BAR_WIDTH
    assert bar_2027["segments"][0]["width"] == handlers.BAR_WIDTH // 2
    assert bar_2026["segments"][1]["x"] == bar_2026["segments"][0]["width"]
    assert handlers.budget_years([]) == {"years": {}, "bars": [], "bar_width": handlers.BAR_WIDTH}


def test_the_finance_page_shows_the_budget_years(tmp_path):
    harness = make_harness(tmp_path)
    harness.sign_in("FINANCE")
    page = harness.client.get("/finance/tranches").text
    assert 'id="budget-chart"' in page and "<rect" in page and 'id="budget"' in page
    assert "2026" in page and " style=" not in page


class TestAnswerInformation:
    def under_review(self, tmp_path, role):
        harness = make_harness(tmp_path)
        harness.services.applications["A-1"].state = 4
        harness.sign_in(role)
        return harness

    @pytest.mark.parametrize("role", ["ENTERPRISE", "PORTAL"])
    def test_the_firm_or_the_portal_answers_for_the_derived_item(self, tmp_path, role):
        from subsidy.core.workflow.review import item_id_for

        harness = self.under_review(tmp_path, role)
        assert 'id="answer-form"' in harness.client.get("/applications/A-1").text
        reply = harness.client.post(
            "/applications/A-1/answer",
            data={"csrf_token": harness.csrf(), "request_number": "1", "answer": "已补充服务合同"},
            follow_redirects=False,
        )
        assert reply.status_code == 303 and reply.headers["location"].endswith("done=answered")
        sent = harness.services.answered
        assert sent.item_id == item_id_for("A-1@2025.1") and sent.credit_code == harness.services.firm_a
        assert sent.request_number == 1 and sent.answer == "已补充服务合同"

    def test_bad_fields_are_named_and_nothing_is_sent(self, tmp_path):
        harness = self.under_review(tmp_path, "PORTAL")
        for form, label in (
            ({"request_number": "x", "answer": "a"}, "补充材料要求的序号"),
            ({"request_number": "1"}, "答复"),
        ):
            reply = harness.client.post("/applications/A-1/answer", data={"csrf_token": harness.csrf(), **form})
            assert reply.status_code == 400 and f"{label}：" in reply.text
        assert not hasattr(harness.services, "answered")

    def test_not_under_review(self, tmp_path):
        harness = make_harness(tmp_path)
        harness.sign_in("PORTAL")
        assert 'id="answer-form"' not in harness.client.get("/applications/A-1").text
        reply = harness.client.post(
            "/applications/A-1/answer", data={"csrf_token": harness.csrf(), "request_number": "1", "answer": "a"}
        )
        assert reply.status_code == 409 and "不在人工审核中" in reply.text
        assert not hasattr(harness.services, "answered")

    def test_another_firms_application_is_as_if_absent(self, tmp_path):
        harness = self.under_review(tmp_path, "ENTERPRISE")
        harness.services.applications["B-1"].state = 4
        reply = harness.client.post(
            "/applications/B-1/answer", data={"csrf_token": harness.csrf(), "request_number": "1", "answer": "a"}
        )
        assert reply.status_code == 404 and not hasattr(harness.services, "answered")


def test_the_firm_search_page(tmp_path):
    harness = make_harness(tmp_path)
    harness.sign_in("FINANCE")
    assert harness.client.get("/firms").status_code == 200
    reply = harness.client.get("/firms?credit_code=123")
    assert reply.status_code == 400 and "统一社会信用代码：" in reply.text
    code = harness.services.firm_a
    reply = harness.client.get(f"/firms?credit_code={code.lower()}", follow_redirects=False)
    assert reply.status_code == 303 and reply.headers["location"] == f"/firms/{code}"
    harness.sign_in("ENTERPRISE")
    assert harness.client.get(f"/firms?credit_code={harness.services.firm_b}").status_code == 403


@pytest.mark.parametrize("grafana_url", ["", "https://grafana.songjiang.invalid/d/subsidy-overview"])
def test_the_grafana_link_only_when_configured(tmp_path, grafana_url):
    env = {
        "SUBSIDY_CONSOLE_SESSION_SECRET": "s" * 40,
        "SUBSIDY_CONSOLE_AUTH_JWKS_FILE": "/x/jwks.json",
        "SUBSIDY_CONSOLE_AUTH_AUDIENCE": "a",
        "SUBSIDY_CONSOLE_AUTH_ISSUER": "https://id",
        "SUBSIDY_CONSOLE_OIDC_ISSUER": "https://id",
        "SUBSIDY_CONSOLE_OIDC_CLIENT_ID": "c",
        "SUBSIDY_CONSOLE_OIDC_CLIENT_SECRET": "s",
    }
    if grafana_url:
        env["SUBSIDY_CONSOLE_GRAFANA_URL"] = grafana_url
    setting = Settings.from_env(env).grafana_url
    assert setting == grafana_url
    harness = make_harness(tmp_path, grafana_url=setting)
    harness.sign_in("OPERATOR")
    page = harness.client.get("/operations")
    assert page.status_code == 200 and 'id="health"' in page.text
    if grafana_url:
        assert f'<a href="{grafana_url}" hx-boost="false" rel="noopener">Grafana 监控面板</a>' in page.text
    else:
        assert "Grafana" not in page.text
