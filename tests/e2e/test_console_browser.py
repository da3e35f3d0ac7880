"""The staff console in a real browser (issue 15): Debian's headless
chromium, driven by Selenium through the system chromedriver (no browser
download), against the real stack — Kafka, intake, eligibility, payout,
review and the console as processes. Intake, payout and eligibility verify
tokens here too (JWT from the stack's identity provider), so every page's
calls are decided by the services' own access policy with the person's
token (and AdoptVersion knows each reviewer by the token's subject).

The story: each role signs in; a held decision is approved by one
reviewer and second-approved by another (four-eyes); a reviewer publishes
the public notice; the portal lodges an objection; the other reviewer
dismisses it; the dev clock moves past the period and the lines become
payable; finance exports the CSV; an ENTERPRISE sees only its firm; a role
gets 403 for every page it may not open; the operator replays a dead letter
(a valid application put on subsidy.applications.v1.dlq as eligibility
would have dead-lettered it) and eligibility and payout then process it,
and discards another with a reason; on 政策版本 the fictional final, in
shadow since the start, is proposed by one reviewer (who then sees 待他人批准,
and is refused when she approves it herself: 四眼原则), the second reviewer
sees her pending proposal on the page and approves it, and the application
open at that moment is re-decided. A firm name with HTML in it is
shown as text. Screenshots of each page go to var/console-screenshots/
(the path is printed)."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import time
from pathlib import Path
from urllib.parse import quote

import grpc
import httpx
import pytest

from subsidy.contracts.calculator import Simulation
from subsidy.core.policy import load_policy
from subsidy.services.console.access import load_routes
from subsidy.v1 import intake_pb2, intake_pb2_grpc
from subsidy_dev.demo import submit_all
from subsidy_dev.identities import FINANCE, OPERATOR, PORTAL, REVIEWER_1, REVIEWER_2, DevIdentityProvider
from subsidy_dev.kafka import KafkaBroker
from subsidy_dev.stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "var" / "console-screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
HOSTILE = '<script>alert("x")</script>'
THRESHOLD_FEN = 100_000_000  # policy/workflow.yaml four_eyes_threshold_fen
WAIT_S = 90
CANDIDATE = "fictional-final-2023"  # policy/versions.yaml: the candidate the story adopts


def _demo() -> list[dict]:
    lines = (REPO / "demo" / "applications.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _pick() -> tuple[dict, list[dict], dict]:
    """One application held for four-eyes, two that go straight to the notice,
    and one whose amount people set (NEEDS_REVIEW), four firms."""
    simulation = Simulation(load_policy())
    held, plain, manual, firms = None, [], None, set()
    for app in _demo():
        want = simulation.apply(simulation.decide(app))
        firm = app["firm"]["credit_code"]
        if manual is None and firm not in firms and want["outcome"] == "NEEDS_REVIEW":
            manual = app
            firms.add(firm)
            continue
        if firm in firms or want["outcome"] != "ELIGIBLE" or want["granted_fen"] != want["max_award_fen"]:
            continue
        if held is None and want["max_award_fen"] >= THRESHOLD_FEN:
            held = app
            firms.add(firm)
        elif len(plain) < 2 and 0 < want["max_award_fen"] < THRESHOLD_FEN:
            plain.append(app)
            firms.add(firm)
    assert held is not None and len(plain) == 2 and manual is not None
    return held, plain, manual


HELD, PLAIN, MANUAL = _pick()


def _pick_letter() -> dict:
    """An application of a fifth firm that goes straight to a grant: the one
    the dead letter carries (never submitted to intake in this run)."""
    simulation = Simulation(load_policy())
    taken = {a["firm"]["credit_code"] for a in (HELD, *PLAIN, MANUAL)}
    for app in _demo():
        want = simulation.apply(simulation.decide(app))
        if (
            app["firm"]["credit_code"] not in taken
            and want["outcome"] == "ELIGIBLE"
            and 0 < want["granted_fen"] == want["max_award_fen"] < THRESHOLD_FEN
        ):
            return app
    raise AssertionError("no fifth firm with a plain grant in demo/applications.jsonl")


LETTER_APP = _pick_letter()


def _pick_open() -> dict:
    """An application of a sixth firm with a plain grant, submitted just before
    the adoption so that it is RESERVED (not yet on a notice) when the
    candidate is adopted: one the adoption re-decides. Not of the clause the
    candidate retires (an open application claiming it refuses the adoption)."""
    simulation = Simulation(load_policy())
    taken = {a["firm"]["credit_code"] for a in (HELD, *PLAIN, MANUAL, LETTER_APP)}
    for app in _demo():
        want = simulation.apply(simulation.decide(app))
        if (
            app["firm"]["credit_code"] not in taken
            and want["clause"] != "11.identifiers"
            and want["outcome"] == "ELIGIBLE"
            and 0 < want["granted_fen"] == want["max_award_fen"] < THRESHOLD_FEN
        ):
            return app
    raise AssertionError("no sixth firm with a plain grant in demo/applications.jsonl")


OPEN_APP = _pick_open()
HOSTILE_FIRM = PLAIN[0]["firm"]["credit_code"]
ENTERPRISE_FIRM = PLAIN[1]["firm"]["credit_code"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    var = tmp_path_factory.mktemp("console")
    registry = json.loads((REPO / "demo" / "registry.json").read_text(encoding="utf-8"))
    for firm in registry["firms"]:
        if firm["credit_code"] == HOSTILE_FIRM:
            firm["name"] = HOSTILE + firm["name"]
    registry_path = var / "registry.json"
    registry_path.write_text(json.dumps(registry, ensure_ascii=False), encoding="utf-8")
    idp = DevIdentityProvider(var / "stack" / "dev-auth")  # the stack loads the same key
    extra = {
        "intake": {"SUBSIDY_REGISTRY_FILE": str(registry_path), **idp.service_env("intake")},
        "payout": idp.service_env("payout"),
        # The policy-versions page: the fictional final in shadow, and AdoptVersion
        # knowing each reviewer by the subject of the token the console forwards.
        "eligibility": {**idp.service_env("eligibility"), "SUBSIDY_ELIGIBILITY_SHADOW_VERSION": CANDIDATE},
    }
    with (
        KafkaBroker(var / "kafka") as broker,
        LocalStack(
            var / "stack",
            kafka_bootstrap=broker.bootstrap,
            services=("intake", "eligibility", "payout", "review", "operations", "console"),
            extra_env=extra,
        ) as running,
    ):
        yield running


def _intake_states(stack, ids: list[str]) -> dict[str, int]:
    with grpc.insecure_channel(stack.intake_address) as channel:
        intake = intake_pb2_grpc.IntakeServiceStub(channel)
        return {
            i: intake.GetApplication(
                intake_pb2.GetApplicationRequest(application_id=i),
                metadata=stack.identities.metadata(PORTAL),
                timeout=10,
            ).application.state
            for i in ids
        }


def _wait_states(stack, want: dict[str, set[int]], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = _intake_states(stack, list(want))
        if all(got[i] in states for i, states in want.items()):
            return
        assert time.monotonic() < deadline, f"not there after {timeout}s: {got}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def submitted(stack):
    with grpc.insecure_channel(stack.intake_address) as channel:
        intake = intake_pb2_grpc.IntakeServiceStub(channel)
        # Intake verifies tokens here: without one, refused; as the portal, accepted.
        with pytest.raises(grpc.RpcError) as refused:
            intake.ListApplications(intake_pb2.ListApplicationsRequest(credit_code=HOSTILE_FIRM), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

        class AsPortal:
            def SubmitApplication(self, request, timeout):
                return intake.SubmitApplication(request, timeout=timeout, metadata=stack.identities.metadata(PORTAL))

        results = dict(submit_all(AsPortal(), [HELD, *PLAIN, MANUAL]))
    assert set(results.values()) == {"accepted"}, results
    _wait_states(
        stack,
        {
            HELD["application_id"]: {intake_pb2.APPLICATION_STATE_UNDER_REVIEW},
            MANUAL["application_id"]: {intake_pb2.APPLICATION_STATE_UNDER_REVIEW},
            **{a["application_id"]: {intake_pb2.APPLICATION_STATE_RESERVED} for a in PLAIN},
        },
    )
    return stack


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for tool in (CHROMIUM, CHROMEDRIVER):
        assert Path(tool).exists(), f"{tool} missing: mk/system-packages.sh installs chromium and chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1100",
        "--lang=zh-CN",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    SHOTS.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots: {SHOTS}")
    try:
        yield driver
    finally:
        driver.quit()


class Console:
    """The browser on the console, with the helpers the story needs."""

    def __init__(self, driver, url: str):
        self.driver = driver
        self.url = url
        self.stack = None
        self.notice_url = ""

    def open(self, path: str) -> None:
        self.driver.get(self.url + path)

    def find(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait_text(self, css: str, text: str, timeout: float = 20) -> None:
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            WebDriverWait(self.driver, timeout).until(
                expected_conditions.text_to_be_present_in_element((By.CSS_SELECTOR, css), text)
            )
        except TimeoutException:
            self.shot("failed-" + re.sub(r"\W+", "-", css + text)[:40])
            raise AssertionError(
                f"{text!r} not in {css} after {timeout}s at {self.driver.current_url}:\n{self.body()[:2000]}"
            ) from None

    def body(self) -> str:
        return self.find("body").text

    def sign_in(self, subject: str, credit_code: str = "") -> None:
        self.driver.delete_all_cookies()
        self.open("/signin")
        if credit_code:
            self.find("#enterprise-code").send_keys(credit_code)
            self.find("#as-enterprise").click()
        else:
            self.find(f"#as-{subject}").click()
        self.wait_text("#who", credit_code or "（")

    def shot(self, name: str) -> Path:
        path = SHOTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def http(self) -> httpx.Client:
        """An HTTP client with the browser's session (downloads, status codes)."""
        cookies = {c["name"]: c["value"] for c in self.driver.get_cookies()}
        return httpx.Client(base_url=self.url, cookies=cookies, follow_redirects=False, timeout=30)


@pytest.fixture(scope="module")
def console(submitted, browser):
    driven = Console(browser, submitted.console_url)
    driven.stack = submitted
    return driven


def _signed_in_client(url: str, subject: str, credit_code: str = "") -> httpx.Client:
    client = httpx.Client(base_url=url, follow_redirects=False, timeout=30)
    page = client.get("/signin").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    data = {"csrf_token": token, "subject": "enterprise" if credit_code else subject, "credit_code": credit_code}
    assert client.post("/signin/dev", data=data).status_code == 303
    return client


# -- the story, in order (module scope: one stack, one browser) -----------------------------


def test_every_role_signs_in_and_sees_its_pages(console):
    console.open("/signin")
    assert "演示身份" in console.body()
    console.shot("01-signin")
    for who, pages in (
        (REVIEWER_1, ["审核队列", "公示", "申请查询", "企业台账", "政策版本"]),
        (FINANCE, ["公示", "企业台账", "拨付计划", "政策版本"]),
        (OPERATOR, ["审核队列", "运行状况", "政策版本"]),
        (PORTAL, ["公示", "申请查询"]),
    ):
        console.sign_in(who.subject)
        assert who.name in console.find("#who").text
        nav = [a.text for a in console.all("header nav a")]
        assert set(pages) <= set(nav), (who.role, nav)
        if who.role in ("FINANCE", "PORTAL"):
            assert "审核队列" not in nav
        if who.role == "PORTAL":
            assert "政策版本" not in nav
    console.sign_in("", ENTERPRISE_FIRM)
    assert ENTERPRISE_FIRM in console.find("#who").text


def test_forbidden_pages_answer_403_for_every_role(console):
    routes = [r for r in load_routes().values() if not r.public and r.method == "GET"]
    params = {
        "item_id": "rv-none",
        "notice_id": "notice-none",
        "application_id": HELD["application_id"],
        "credit_code": ENTERPRISE_FIRM,
        "topic": "subsidy.applications.v1.dlq",
        "partition": "0",
        "offset": "999999",
    }
    for who in (REVIEWER_1, FINANCE, OPERATOR, PORTAL, None):
        client = (
            _signed_in_client(console.url, "", ENTERPRISE_FIRM)
            if who is None
            else _signed_in_client(console.url, who.subject)
        )
        role = "ENTERPRISE" if who is None else who.role
        try:
            for route in routes:
                response = client.get(route.path.format(**params))
                status = response.status_code
                if role == "ENTERPRISE" and route.name == "firm_search":
                    # The firm search sends a firm straight to its own page, never another's.
                    assert (status, response.headers.get("location")) == (303, f"/firms/{ENTERPRISE_FIRM}")
                elif role in route.roles:
                    # 400: a search without input; 404: no such item or notice, another firm's application
                    assert status in (200, 400, 404), (role, route.path, status)
                else:
                    assert status == 403, (role, route.path, status)
        finally:
            client.close()
    console.sign_in(FINANCE.subject)
    console.open("/review")
    assert "无权访问此页面" in console.body()
    console.shot("02-forbidden-finance-on-review")


def test_four_eyes_approval_by_two_reviewers(console):
    console.sign_in(REVIEWER_1.subject)
    console.open("/review")
    console.wait_text("#queue", HELD["application_id"])
    console.shot("03-review-queue")
    row = next(r for r in console.all("#queue tbody tr") if HELD["application_id"] in r.text)
    row.find_element("css selector", "a").click()
    console.wait_text("h1", "审核事项")
    assert "第" in console.find("#reasons").text  # the rules' reasons cite their clause
    console.find("#claim").click()
    console.wait_text("#done", "已领取")
    # A bad amount: the field is named and nothing changes.
    console.find("#result-APPROVED").click()
    console.find("#amount_yuan").send_keys("十万")
    console.find("#basis").send_keys("按第项标准核定")
    console.find("#decide").click()
    console.wait_text("#error", "核定金额（元）")
    assert "审核中" in console.find("#item-status").text
    console.shot("04-review-item-form-error")
    ceiling = re.search(r"上限 ([\d,\.]+)元", console.body()).group(1).replace(",", "")
    amount = console.find("#amount_yuan")
    amount.clear()
    amount.send_keys(ceiling)
    if not console.find("#result-APPROVED").is_selected():
        console.find("#result-APPROVED").click()
    console.find("#decide").click()
    console.wait_text("#item-status", "待复核")
    assert "四眼原则" in console.find("#four-eyes").text and not console.all("#second")
    console.shot("05-review-item-awaiting-second")
    item_url = console.driver.current_url.split("?")[0]

    console.sign_in(REVIEWER_2.subject)
    console.driver.get(item_url)
    console.find("#second").click()
    console.wait_text("#item-status", "已通过")
    assert REVIEWER_1.subject in console.body() and REVIEWER_2.subject in console.body()
    console.shot("06-review-item-approved")
    _wait_states(console.stack, {HELD["application_id"]: {intake_pb2.APPLICATION_STATE_RESERVED}})


def test_a_reviewer_asks_for_information_and_the_firm_answers_in_the_console(console):
    console.sign_in(REVIEWER_1.subject)
    console.open("/review?status=OPEN")
    console.wait_text("#queue", MANUAL["application_id"])
    row = next(r for r in console.all("#queue tbody tr") if MANUAL["application_id"] in r.text)
    row.find_element("css selector", "a").click()
    console.wait_text("h1", "审核事项")
    console.find("#claim").click()
    console.wait_text("#done", "已领取")
    console.find("#result-MORE_INFO_REQUESTED").click()
    console.find("#missing").send_keys("请提供融资对接服务合同及付款凭证（演示）")
    console.find("#decide").click()
    console.wait_text("#item-status", "待补充材料")
    item_url = console.driver.current_url.split("?")[0]

    firm = MANUAL["firm"]["credit_code"]
    console.sign_in("", firm)
    console.open(f"/applications/{MANUAL['application_id']}")
    console.wait_text("#app-state", "人工审核中")
    console.find("#answer").send_keys("已补充服务合同及付款凭证（演示）")
    console.find("#answer-submit").click()
    console.wait_text("#done", "答复已提交")
    console.shot("06b-application-information-answered")

    console.sign_in(REVIEWER_1.subject)
    console.driver.get(item_url)
    console.wait_text("#item-status", "审核中")
    assert "已补充服务合同及付款凭证（演示）" in console.body()


def test_publish_the_notice_with_the_firm_name_as_text(console):
    console.sign_in(REVIEWER_1.subject)
    console.open("/notices")
    console.find("#publish").click()
    console.driver.switch_to.alert.accept()  # hx-confirm
    console.wait_text("#done", "公示已发布")
    lines = console.find("#lines").text
    for app in (HELD, *PLAIN):
        assert app["firm"]["credit_code"] in lines
    assert HOSTILE in lines  # shown as text, not run
    assert console.driver.execute_script("return document.querySelectorAll('main script').length") == 0
    console.shot("07-notice")
    pdf = console.http().get(console.find("#pdf").get_attribute("href").replace(console.url, ""))
    assert (
        pdf.status_code == 200 and pdf.content.startswith(b"%PDF") and pdf.headers["content-type"] == "application/pdf"
    )
    console.notice_url = console.driver.current_url.split("?")[0]


def test_portal_lodges_an_objection_and_a_reviewer_dismisses_it(console):
    console.sign_in(PORTAL.subject)
    console.driver.get(console.notice_url)
    console.find("#lodge").click()  # nothing chosen: the field is named
    console.wait_text("#error", "公示行")
    from selenium.webdriver.support.ui import Select

    Select(console.find("#line_id")).select_by_index(1)
    console.find("#reason").send_keys("该企业申报的项目尚未完工（演示）")
    console.find("#lodge").click()
    console.wait_text("#done", "异议已提交")
    assert "异议处理中" in console.find("#lines").text
    console.shot("08-notice-objection-lodged")

    console.sign_in(REVIEWER_2.subject)
    console.driver.get(console.notice_url)
    console.wait_text("#objections", "待处理")
    form = console.find("#objections form")
    Select(form.find_element("css selector", "select[name=resolution]")).select_by_value("DISMISSED")
    form.find_element("css selector", "textarea[name=reasons]").send_keys("经核实项目已完工验收（演示）")
    form.find_element("css selector", "button.resolve").click()
    console.wait_text("#done", "异议已处理")
    assert "异议不成立" in console.find("#objections").text
    assert "异议处理中" not in console.find("#lines").text
    console.shot("09-notice-objection-dismissed")


def test_lines_become_payable_after_the_period(console):
    console.stack.advance_clock(days=20)
    deadline = time.monotonic() + WAIT_S
    while True:
        console.driver.get(console.notice_url)
        statuses = [e.text for e in console.all("#lines .line-status")]
        if statuses and all(s == "可拨付" for s in statuses):
            break
        assert time.monotonic() < deadline, statuses
        time.sleep(1)
    console.shot("10-notice-payable")
    _wait_states(console.stack, {a["application_id"]: {intake_pb2.APPLICATION_STATE_PAYABLE} for a in (HELD, *PLAIN)})
    console.open(f"/applications/{HELD['application_id']}")
    console.wait_text("#app-state", "可拨付")
    assert "人工审核结论" in console.find("#timeline").text and "拨付" in console.find("#timeline").text
    console.shot("11-application")


def test_finance_sees_the_tranches_and_exports_the_csv(console):
    console.sign_in(FINANCE.subject)
    console.open("/finance/tranches")
    console.wait_text("#tranches", HELD["application_id"])
    console.shot("12-finance-tranches")
    with console.http() as client:
        reply = client.get(console.find("#csv").get_attribute("href").replace(console.url, ""))
    assert reply.status_code == 200 and "attachment" in reply.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(reply.content.decode("utf-8-sig"))))
    assert {r["application_id"] for r in rows} == {a["application_id"] for a in (HELD, *PLAIN)}
    assert all(r["status"] in ("SCHEDULED", "DUE") and r["amount_yuan"].count(".") == 1 for r in rows)
    console.open(f"/firms/{HELD['firm']['credit_code']}")
    assert "可拨付" in console.find("#grants").text
    console.shot("13-firm-ledger")
    # Finance cancels the last tranche of the held application (payout's CancelTranche, as 王芳).
    form = console.all("#firm-tranches form.cancel-form")[-1]
    form.find_element("css selector", "input[name=reason]").send_keys("企业迁出本区（演示）")
    form.find_element("css selector", "button.cancel").click()
    console.wait_text("#done", "该笔拨付已取消")
    assert "已取消" in console.find("#firm-tranches").text


def test_finance_sees_the_outlay_per_budget_year_and_a_version_difference(console):
    from subsidy.core.money import yuan

    console.sign_in(FINANCE.subject)
    with console.http() as client:
        rows = list(csv.DictReader(io.StringIO(client.get("/finance/tranches.csv").content.decode("utf-8-sig"))))
    payable = sum(int(r["amount_fen"]) for r in rows if r["status"] in ("SCHEDULED", "DUE"))
    cancelled = sum(int(r["amount_fen"]) for r in rows if r["status"] == "CANCELLED")
    assert payable > 0 and cancelled > 0  # finance cancelled one tranche just before
    console.open("/budget")
    total = [c.text for c in console.all("#outlay tr.total td")]
    # reserved, payable, held, paid, recovered, cancelled: payout's sums agree with the tranches listed
    assert total[0] == "合计" and total[2] == yuan(payable) and total[6] == yuan(cancelled), total
    assert len(console.all("#outlay-chart rect")) == 5 * len(console.all("#outlay tbody tr:not(.total)"))
    changes = console.find("#changes").text
    assert "fictional-final-2023" in changes and "两个版本没有差异" not in changes
    # The fictional final runs in shadow on this stack: eligibility's running difference.
    assert f"{CANDIDATE}+" in console.find("#shadow-versions").text
    console.shot("12b-budget")


def test_proposals_by_credit_code(console):
    """免申即享 through intake's ProposalService with the reviewer's token: the
    stack runs no data-platform feed here, so the firm has none, and says so."""
    console.sign_in(REVIEWER_1.subject)
    console.open(f"/proposals?credit_code={ENTERPRISE_FIRM}")
    assert "没有免申即享建议" in console.find("#proposals").text
    console.open(f"/firms/{ENTERPRISE_FIRM}")
    assert "没有免申即享建议" in console.find("#proposals").text
    console.shot("13b-firm-proposals")


def test_an_enterprise_sees_only_its_own_firm(console):
    console.sign_in("", ENTERPRISE_FIRM)
    console.open("/applications")
    listed = console.find("#applications").text
    own = next(a for a in PLAIN if a["firm"]["credit_code"] == ENTERPRISE_FIRM)["application_id"]
    assert own in listed and HELD["application_id"] not in listed
    console.shot("14-enterprise-applications")
    with console.http() as client:
        assert client.get(f"/firms/{ENTERPRISE_FIRM}").status_code == 200
        assert client.get(f"/firms/{HOSTILE_FIRM}").status_code == 403
        assert client.get(f"/applications?credit_code={HOSTILE_FIRM}").status_code == 403
        assert client.get(f"/applications/{HELD['application_id']}").status_code in (403, 404)
        assert client.get("/review").status_code == 403
        assert client.get("/finance/tranches.csv").status_code == 403
    console.open(f"/firms/{HOSTILE_FIRM}")
    assert "只能查看本企业" in console.body()


def _registry_name(code: str) -> str:
    firms = json.loads((REPO / "demo" / "registry.json").read_text(encoding="utf-8"))["firms"]
    return next(f["name"] for f in firms if f["credit_code"] == code)


def test_search_applications_across_firms_by_part_of_a_firm_name(console):
    """Issue 15: a reviewer types part of a firm's name into the search form
    and finds that firm's applications among every firm's; the HTML in a firm
    name is shown as text; an ENTERPRISE typing the same name finds nothing of
    that firm's (its search stays inside its own firm); proposals across
    firms and the finance page's recoveries list answer."""
    held_name = _registry_name(HELD["firm"]["credit_code"])
    part = held_name[2:7]  # "九科新能源": the middle of the name, not its first characters
    console.sign_in(REVIEWER_1.subject)
    console.open("/applications")
    console.find("#application-search input[name=firm_name]").send_keys(part)
    console.find("#application-search button[type=submit]").click()
    console.wait_text("#applications", HELD["application_id"])
    names = [cell.text for cell in console.all("#applications td.firm-name")]
    assert names and all(part in name for name in names), names
    assert PLAIN[1]["application_id"] not in console.find("#applications").text
    console.shot("14b-search-by-firm-name")

    console.open("/applications?firm_name=" + quote("<script>"))
    console.wait_text("#applications", PLAIN[0]["application_id"])
    assert HOSTILE in console.find("#applications").text  # shown as text, never run
    assert console.driver.execute_script("return document.querySelectorAll('#applications script').length") == 0
    console.open("/applications?firm_name=" + quote("名" * 101))
    assert "企业名称" in console.body() and "不能超过 100 个字符" in console.body()
    console.open("/proposals")
    assert console.all("#proposals")
    console.shot("14c-proposals-across-firms")

    console.sign_in("", ENTERPRISE_FIRM)
    console.open("/applications")
    console.find("#application-search input[name=firm_name]").send_keys(held_name)
    console.find("#application-search button[type=submit]").click()
    console.wait_text("#applications", "没有符合条件的申请")
    assert HELD["application_id"] not in console.find("#applications").text
    console.shot("14d-enterprise-searches-another-firm")

    console.sign_in(FINANCE.subject)
    console.open("/finance/tranches?recoveries=all")
    assert console.find("#recoveries-heading").text == "追回"
    assert console.all("#recoveries")
    console.shot("14e-finance-recoveries")


def test_the_operator_sees_service_health(console):
    console.sign_in(OPERATOR.subject)
    console.open("/operations")
    health = console.find("#health").text
    for name in ("intake", "eligibility", "payout", "review"):
        assert name in health
    assert health.count("SERVING") >= 4 and "UNREACHABLE" not in health
    console.shot("15-operations")
    assert len(list(SHOTS.glob("*.png"))) >= 15


def _put_dead_letter(stack, value: bytes, reason: str, event_id: str) -> None:
    """A record of subsidy.applications.v1 dead-lettered as eligibility's
    consumer does it (subsidy/platform/dead_letters.py), on its DLQ."""
    import datetime as dt
    import types

    from kafka import KafkaProducer

    from subsidy.contracts import cloudevents, topics
    from subsidy.platform import dead_letters
    from subsidy.services.intake.handlers import SOURCE as INTAKE

    code = LETTER_APP["firm"]["credit_code"]
    record = types.SimpleNamespace(
        topic=topics.APPLICATIONS.name,
        partition=0,
        offset=900_000 + len(event_id),
        key=code.encode(),
        value=value,
        headers=cloudevents.headers(
            event_id, cloudevents.TYPE_APPLICATION_SUBMITTED, INTAKE, cloudevents.new_trace_id()
        ),
    )
    letter = dead_letters.encode(
        record,
        reason,
        dlq_topic=topics.APPLICATIONS_DLQ.name,
        consumer="eligibility",
        source="/songjiang/subsidy/eligibility",
        trace_id=None,
        now=dt.datetime.now(dt.UTC),
    )
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    try:
        producer.send(letter.topic, key=letter.key, value=letter.value, headers=letter.headers).get(timeout=30)
    finally:
        producer.close(5)


def _open_letter(console, marker: str) -> str:
    """From the topic's list, the letter whose reason has ``marker``; its URL."""
    deadline = time.monotonic() + WAIT_S
    while True:
        console.open("/operations/dead-letters?topic=subsidy.applications.v1.dlq")
        rows = [r for r in console.all("#letters tr.letter") if marker in r.text]
        if rows:
            break
        assert time.monotonic() < deadline, console.body()[:1500]
        time.sleep(1)
    rows[0].find_element("css selector", "a").click()
    console.wait_text("h1", "死信 subsidy.applications.v1.dlq/")
    return console.driver.current_url.split("?")[0]


def test_the_operator_replays_a_dead_letter_and_its_services_consume_it(console):
    from google.protobuf import json_format

    from subsidy.v1 import application_pb2

    app_id = LETTER_APP["application_id"]
    code = LETTER_APP["firm"]["credit_code"]
    application = json_format.ParseDict(LETTER_APP, application_pb2.Application())
    _put_dead_letter(
        console.stack,
        application.SerializeToString(),
        "unexpected error in 5 attempts: RegistryUnavailable: 数据平台暂时不可用（演示）",
        app_id,
    )
    _put_dead_letter(console.stack, b"\xff\xfe not an application", "not a subsidy.v1.Application（演示）", "junk-1")

    console.sign_in(OPERATOR.subject)
    deadline = time.monotonic() + WAIT_S
    while True:
        console.open("/operations")
        row = [r.text for r in console.all("#dlq-summary tbody tr") if "subsidy.applications.v1.dlq" in r.text]
        if row and " 2 " in f" {row[0]} ":
            break
        assert time.monotonic() < deadline, console.body()[:1500]
        time.sleep(1)
    console.shot("16-operations-dead-letters")

    letter_url = _open_letter(console, "数据平台暂时不可用")
    decoded = console.find("#decoded").text
    assert app_id in decoded and code in decoded and "subsidy.v1.Application" in console.body()
    assert "待处理" in console.find("#letter-state").text and "5" in console.body()
    console.shot("17-dead-letter")
    assert console.http().get(f"/firms/{code}").text.count(app_id) == 0  # nothing of it anywhere yet

    console.find("#replay").click()
    console.driver.switch_to.alert.accept()  # hx-confirm
    console.wait_text("#done", "已重放")
    assert "已重放" in console.find("#letter-state").text and OPERATOR.subject in console.find("#letter-audit").text
    console.shot("18-dead-letter-replayed")

    # The record went back to subsidy.applications.v1: eligibility decides it,
    # payout records the grant, and the firm's ledger shows it.
    deadline = time.monotonic() + WAIT_S
    while True:
        console.open(f"/firms/{code}")
        if app_id in console.find("#grants").text:
            break
        assert time.monotonic() < deadline, console.body()[:1500]
        time.sleep(1)
    console.shot("19-firm-after-replay")

    # A second replay is refused, and nothing is sent again.
    with console.http() as client:
        page = client.get(letter_url.replace(console.url, "")).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        again = client.post(letter_url.replace(console.url, "") + "/replay", data={"csrf_token": token})
    assert again.status_code == 409 and "already replayed" in again.text

    # The undecodable one: shown as such, discarded with a reason the form insists on.
    _open_letter(console, "not a subsidy.v1.Application")
    assert "无法解码" in console.find("#decode-error").text
    console.find("#discard").click()
    console.wait_text("#error", "丢弃理由")
    console.find("#discard-reason").send_keys("测试数据，无需处理（演示）")
    console.find("#discard").click()
    console.wait_text("#done", "已丢弃")
    assert "测试数据，无需处理（演示）" in console.find("#letter-audit").text
    console.shot("20-dead-letter-discarded")


def _submit_adoption(console, reason: str) -> None:
    form = console.find(f"#adopt-{CANDIDATE} form.adopt-form")
    form.find_element("css selector", "textarea[name=reason]").send_keys(reason)
    form.find_element("css selector", "button.adopt").click()
    console.driver.switch_to.alert.accept()  # hx-confirm


def _post_adoption_blind(console, digest: str, reason: str) -> httpx.Response:
    """The adoption step sent with the browser's session but without the
    page's form (the page offers none): the session's CSRF token from the
    sign-out form every page carries."""
    csrf = console.find("header input[name=csrf_token]").get_attribute("value")
    with console.http() as client:
        return client.post(
            f"/policy/versions/{CANDIDATE}/adopt",
            data={"csrf_token": csrf, "policy_version": digest, "reason": reason},
        )


def test_two_reviewers_adopt_the_candidate_on_the_policy_versions_page(console):
    """Issue 14 in the console: the versions with their adoption state as
    eligibility sees it (ListVersions), the candidate's running shadow
    difference, 张敏 proposes the adoption with the digest shown and then sees
    待他人批准 instead of a form (sent anyway, her approval is refused:
    四眼原则, and the trail shows it); 李强 signs in on his own, opens the page,
    sees her proposal — who, when, the digest, her reason — and approves it:
    已采纳, with the re-decisions and the report eligibility made from what
    intake shows; on every visit after, the page shows the version adopted,
    by whom and when, and the trail; a further step is refused."""
    from subsidy.core.versions import load_versions

    digest = load_versions().get(CANDIDATE).policy.version
    console.sign_in(FINANCE.subject)  # reads the page, sends nothing
    console.open("/policy/versions")
    console.wait_text(f"#version-{CANDIDATE} .version-status", "候选")
    assert not console.all("form.adopt-form") and not console.all(f"#proposal-{CANDIDATE}")
    assert "尚无提议、批准或拒绝的记录" in console.find("#adoption-history").text

    console.sign_in(REVIEWER_1.subject)
    console.open("/policy/versions")
    row = console.find(f"#version-{CANDIDATE}").text
    assert digest in row and "2023-07-01" in row and "影子评估中" in row
    assert "已采纳（现行）" in console.find("#version-songjiang-ii-2022-draft").text
    shadow = console.find("#shadow-versions").text
    counted = int(re.search(r"已比较 (\d+) 件申请", shadow).group(1))
    assert digest in shadow and counted >= 4, shadow  # every application decided on this stack
    assert console.all("#shadow-years tbody tr") and console.all("#shadow-clauses tbody tr")
    assert console.find(f"#adopt-{CANDIDATE} input[name=policy_version]").get_attribute("value") == digest
    assert console.find(f"#adopt-{CANDIDATE} button.adopt").text == "提议采纳"  # nothing is pending
    console.shot("21-policy-versions")

    _submit_adoption(console, "区科委审定虚构定稿（演示）")
    console.wait_text("#adoption-status", "已提议采纳")
    assert REVIEWER_1.subject in console.find("#proposed-by").text
    assert "另一位审核人员" in console.find("#four-eyes").text
    assert console.driver.current_url.endswith("/policy/versions")
    console.shot("22-policy-adoption-proposed")

    # On the page again (a reload, not the POST's answer): her proposal waits for another reviewer.
    console.open("/policy/versions")
    console.wait_text(f"#awaiting-{CANDIDATE}", "待他人批准")
    assert not console.all("form.adopt-form")
    assert "已提议采纳，待批准" in console.find(f"#version-{CANDIDATE} .version-status").text
    # Sent without a form all the same, her approval is refused by eligibility (四眼原则), and recorded.
    refused = _post_adoption_blind(console, digest, "本人再次批准（演示，应被拒绝）")
    assert refused.status_code == 403 and "须由另一位审核人员（不同账号）批准" in refused.text
    console.open("/policy/versions")
    history = console.find("#adoption-history").text
    assert "被拒绝" in history and "四眼原则" in history and "本人再次批准（演示，应被拒绝）" in history
    console.driver.execute_script("arguments[0].scrollIntoView()", console.find(f"#adopt-{CANDIDATE}"))
    console.shot("23-policy-adoption-awaiting-another-reviewer")

    # One more application, RESERVED when the version is adopted: the portal submits it now.
    with grpc.insecure_channel(console.stack.intake_address) as channel:
        intake = intake_pb2_grpc.IntakeServiceStub(channel)

        class AsPortal:
            def SubmitApplication(self, request, timeout):
                return intake.SubmitApplication(
                    request, timeout=timeout, metadata=console.stack.identities.metadata(PORTAL)
                )

        assert dict(submit_all(AsPortal(), [OPEN_APP])) == {OPEN_APP["application_id"]: "accepted"}
    _wait_states(console.stack, {OPEN_APP["application_id"]: {intake_pb2.APPLICATION_STATE_RESERVED}})
    ours = [a["application_id"] for a in (HELD, *PLAIN, MANUAL, OPEN_APP)]
    open_ids = [i for i, s in _intake_states(console.stack, ours).items() if s == intake_pb2.APPLICATION_STATE_RESERVED]
    assert OPEN_APP["application_id"] in open_ids

    # The second reviewer, signed in on his own, opens the page and sees what awaits him.
    console.sign_in(REVIEWER_2.subject)
    console.open("/policy/versions")
    console.wait_text(f"#proposal-{CANDIDATE}", "等待另一位审核人员批准")
    proposal = console.find(f"#proposal-{CANDIDATE}").text
    assert REVIEWER_1.subject in proposal and digest in proposal and "区科委审定虚构定稿（演示）" in proposal
    assert re.search(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", proposal), proposal  # when she proposed
    assert f"已提议采纳，待批准（{REVIEWER_1.subject}" in console.find(f"#version-{CANDIDATE} .version-status").text
    assert console.find(f"#adopt-{CANDIDATE} button.adopt").text == f"批准采纳（{REVIEWER_1.subject} 的提议）"
    assert not console.all(f"#awaiting-{CANDIDATE}")
    console.driver.execute_script("arguments[0].scrollIntoView()", console.find(f"#adopt-{CANDIDATE}"))
    console.shot("24-policy-adoption-pending-for-the-second-reviewer")
    _submit_adoption(console, "复核同意采纳（演示）")
    console.wait_text("#adoption-status", "已采纳", timeout=WAIT_S)
    assert REVIEWER_1.subject in console.find("#proposed-by").text
    assert REVIEWER_2.subject in console.find("#approved-by").text
    assert console.find(f"#version-{CANDIDATE} .version-status").text.startswith("已采纳")
    redecided = console.find("#redecisions").text
    # eligibility re-decides what intake shows not yet past its notice (RESERVED)
    for application_id in open_ids:
        assert f"{application_id}@{digest}" in redecided, (application_id, redecided)
    assert console.all("#adoption-report") and f"  {CANDIDATE}:" in console.find("#register-entry").text
    console.shot("25-policy-adoption-adopted")

    # The re-decision went out on subsidy.decisions.v1: intake shows it on the application.
    deadline = time.monotonic() + WAIT_S
    while True:
        console.open(f"/applications/{OPEN_APP['application_id']}")
        if "新政策版本采用后重新决定" in console.find("#timeline").text:
            break
        assert time.monotonic() < deadline, console.find("#timeline").text
        time.sleep(1)
    assert digest in console.find("#timeline").text
    console.shot("26-application-redecided")

    # Any later visit, by anyone who may read it: adopted, by whom and when, the draft ending, the trail.
    console.sign_in(FINANCE.subject)
    console.open("/policy/versions")
    status = console.find(f"#version-{CANDIDATE} .version-status").text
    assert status.startswith("已采纳") and "登记表尚未记入" in status and REVIEWER_2.subject in status
    assert "至 2023-07-01" in console.find("#version-songjiang-ii-2022-draft").text
    adopted = console.find(f"#adopted-{CANDIDATE}").text
    assert REVIEWER_1.subject in adopted and REVIEWER_2.subject in adopted and "复核同意采纳（演示）" in adopted
    events = [r.find_element("css selector", "td:nth-child(3)").text for r in console.all("#adoption-history tbody tr")]
    # Newest first; the broker acknowledged the re-decisions after the approval (redecisions_published).
    assert [e.split("\n")[0] for e in events] == ["重新决定已发布", "批准，已采纳", "被拒绝", "提议采纳"]
    console.driver.execute_script("arguments[0].scrollIntoView()", console.find(f"#adopt-{CANDIDATE}"))
    console.shot("27-policy-versions-adopted")

    # Once adopted no reviewer is offered a form, and a step sent anyway is refused, said in Chinese.
    console.sign_in(REVIEWER_1.subject)
    console.open("/policy/versions")
    assert "该版本已采纳" in console.find(f"#adopt-{CANDIDATE}").text and not console.all("form.adopt-form")
    again = _post_adoption_blind(console, digest, "再次提交（演示，应被拒绝）")
    assert again.status_code == 409 and "该版本已经采纳" in again.text


def test_htmx_ran_under_the_csp_and_nothing_was_blocked(console):
    """htmx loaded from the console itself (no CDN), boosted the pages, and the
    browser reported no Content Security Policy violation on any page of the story."""
    console.sign_in(REVIEWER_1.subject)
    console.open("/notices")
    assert console.driver.execute_script("return typeof htmx") == "object"
    assert console.driver.execute_script("return htmx.version").startswith("2.0.11")
    console.find("header nav a[href='/review']").click()  # a boosted link: no full page load
    console.wait_text("h1", "审核队列")
    assert console.driver.execute_script("return document.body.getAttribute('hx-boost')") == "true"
    messages = [entry["message"] for entry in console.driver.get_log("browser")]
    assert not [m for m in messages if "Content Security Policy" in m or "Refused to" in m], messages
