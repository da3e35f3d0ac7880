"""Abuse of the console: forged or missing CSRF tokens, a foreign origin,
expired sessions, tampered cookies, over-long fields and bodies, HTML in a
firm's name; the security headers and cookie flags; dev sign-in only in dev
mode. Each refusal changes nothing (no service is called)."""

from __future__ import annotations

import base64
import json

import pytest

from subsidy.services.console.adapters.web import SESSION_COOKIE
from subsidy.services.console.config import Settings, SettingsError
from tests.unit.console.fakes import HOSTILE_NAME, make_harness

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def reviewer(tmp_path):
    harness = make_harness(tmp_path)
    harness.sign_in("REVIEWER")
    return harness


def calls_during(harness, action):
    before = len(harness.services.calls)
    reply = action()
    return reply, harness.services.calls[before:]


class TestCsrf:
    def test_a_forged_token_is_refused_and_nothing_is_called(self, reviewer):
        reply, called = calls_during(
            reviewer,
            lambda: reviewer.client.post("/review/items/rv-1/claim", data={"csrf_token": "forged" * 6}),
        )
        assert reply.status_code == 403 and "表单校验令牌无效" in reply.text
        assert called == [] and reviewer.services.items["rv-1"].status == "OPEN"

    def test_a_missing_token_is_refused(self, reviewer):
        reply, called = calls_during(reviewer, lambda: reviewer.client.post("/notices/publish", data={}))
        assert reply.status_code == 403 and called == []

    def test_the_token_of_another_session_is_refused(self, tmp_path, reviewer):
        other = make_harness(tmp_path / "other")
        other.sign_in("REVIEWER")
        reply, called = calls_during(
            reviewer, lambda: reviewer.client.post("/review/items/rv-1/claim", data={"csrf_token": other.csrf()})
        )
        assert reply.status_code == 403 and called == []

    def test_a_foreign_origin_is_refused_even_with_the_token(self, reviewer):
        token = reviewer.csrf()
        reply, called = calls_during(
            reviewer,
            lambda: reviewer.client.post(
                "/review/items/rv-1/claim", data={"csrf_token": token}, headers={"origin": "https://evil.example"}
            ),
        )
        assert reply.status_code == 403 and called == []

    def test_the_right_token_claims(self, reviewer):
        reply = reviewer.client.post(
            "/review/items/rv-1/claim", data={"csrf_token": reviewer.csrf()}, follow_redirects=False
        )
        assert reply.status_code == 303 and reviewer.services.items["rv-1"].status == "CLAIMED"

    def test_the_header_token_works_for_scripts(self, reviewer):
        reply = reviewer.client.post(
            "/review/items/rv-1/claim", headers={"x-csrf-token": reviewer.csrf()}, follow_redirects=False
        )
        assert reply.status_code == 303


class TestSessions:
    def test_an_expired_session_signs_out(self, reviewer):
        reviewer.now[0] += reviewer.console.settings.session_seconds + 1
        reply, called = calls_during(reviewer, lambda: reviewer.client.get("/review", follow_redirects=False))
        assert reply.status_code == 303 and reply.headers["location"].startswith("/signin")
        assert called == []
        assert "登录已过期" in reviewer.client.get(reply.headers["location"]).text

    def test_an_expired_session_cannot_post(self, reviewer):
        token = reviewer.csrf()
        reviewer.now[0] += 10 * 3600
        reply, called = calls_during(
            reviewer, lambda: reviewer.client.post("/review/items/rv-1/claim", data={"csrf_token": token})
        )
        assert reply.status_code == 401 and called == []

    def test_a_tampered_cookie_is_no_session(self, reviewer):
        value = reviewer.client.cookies[SESSION_COOKIE]
        payload, _, rest = value.partition(".")
        data = json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4)))
        data["person"]["subject"] = "reviewer-li"
        forged = base64.b64encode(json.dumps(data).encode()).decode() + "." + rest
        reviewer.client.cookies.clear()
        reviewer.client.cookies.set(SESSION_COOKIE, forged)
        reply, called = calls_during(reviewer, lambda: reviewer.client.get("/review", follow_redirects=False))
        assert reply.status_code == 303 and reply.headers["location"].startswith("/signin") and called == []

    def test_a_cookie_signed_with_another_secret_is_no_session(self, tmp_path, reviewer):
        other = make_harness(tmp_path / "other", session_secret="t" * 40)
        other.sign_in("OPERATOR")
        reviewer.client.cookies.clear()
        reviewer.client.cookies.set(SESSION_COOKIE, other.client.cookies[SESSION_COOKIE])
        reply = reviewer.client.get("/review", follow_redirects=False)
        assert reply.status_code == 303

    def test_sign_in_starts_a_new_session(self, tmp_path):
        harness = make_harness(tmp_path)
        before = harness.csrf()
        harness.sign_in("FINANCE")
        assert harness.csrf() != before

    def test_sign_out(self, reviewer):
        reviewer.client.post("/signout", data={"csrf_token": reviewer.csrf()})
        assert reviewer.client.get("/review", follow_redirects=False).status_code == 303


class TestFields:
    def decide(self, harness, **form):
        harness.client.post("/review/items/rv-1/claim", data={"csrf_token": harness.csrf()})
        return calls_during(
            harness,
            lambda: harness.client.post("/review/items/rv-1/decide", data={"csrf_token": harness.csrf(), **form}),
        )

    @pytest.mark.parametrize(
        ("form", "label"),
        [
            ({}, "审核结论"),
            ({"result": "MAYBE"}, "审核结论"),
            ({"result": "APPROVED", "amount_yuan": "abc", "basis": "x"}, "核定金额（元）"),
            ({"result": "APPROVED", "amount_yuan": "1.234", "basis": "x"}, "核定金额（元）"),
            ({"result": "APPROVED", "amount_yuan": "0", "basis": "x"}, "核定金额（元）"),
            ({"result": "APPROVED", "amount_yuan": "100", "basis": "  "}, "核定依据"),
            ({"result": "APPROVED", "amount_yuan": "100", "basis": "长" * 2001}, "核定依据"),
            ({"result": "REJECTED"}, "不予支持的理由"),
            ({"result": "MORE_INFO_REQUESTED"}, "须补充的材料"),
        ],
    )
    def test_bad_input_names_the_field_and_changes_nothing(self, reviewer, form, label):
        reply, called = self.decide(reviewer, **form)
        assert reply.status_code == 400
        assert f"{label}：" in reply.text
        assert [c for c, _ in called if c == "ReviewService.Decide"] == []
        # the page is shown again with what was typed
        if form.get("basis", "").strip():
            assert form["basis"][:50] in reply.text

    def test_an_amount_in_yuan_becomes_fen(self, reviewer):
        reply, _ = self.decide(reviewer, result="APPROVED", amount_yuan="123,456.7", basis="依据")
        assert reply.status_code == 200  # followed to the item page
        assert reviewer.services.decided.amount_fen == 12_345_670

    def test_an_over_long_body_is_refused_before_parsing(self, reviewer):
        reply, called = calls_during(
            reviewer,
            lambda: reviewer.client.post(
                "/notices/publish", data={"csrf_token": reviewer.csrf(), "title": "x" * 70_000}
            ),
        )
        assert reply.status_code == 413 and called == []

    def test_an_over_long_title(self, reviewer):
        reply, called = calls_during(
            reviewer,
            lambda: reviewer.client.post("/notices/publish", data={"csrf_token": reviewer.csrf(), "title": "题" * 201}),
        )
        assert reply.status_code == 400 and "公示标题：不能超过 200 个字符" in reply.text
        assert "ReviewService.PublishNotice" not in [c for c, _ in called]

    def test_resolving_needs_a_resolution_and_reasons(self, reviewer):
        notice = reviewer.services.notice.notice_id
        oid = reviewer.services.notice.lines[0].line.line_id + "/objection-1"
        for form, label in (
            ({"objection_id": oid, "reasons": "r"}, "处理结论"),
            ({"objection_id": oid, "resolution": "UPHELD"}, "处理理由"),
        ):
            reply, called = calls_during(
                reviewer,
                lambda form=form: reviewer.client.post(
                    f"/notices/{notice}/objections/resolve", data={"csrf_token": reviewer.csrf(), **form}
                ),
            )
            assert reply.status_code == 400 and f"{label}：" in reply.text
            assert "ReviewService.ResolveObjection" not in [c for c, _ in called]

    def test_a_bad_credit_code_in_the_search(self, reviewer):
        reply = reviewer.client.get("/applications?credit_code=12345")
        assert reply.status_code == 400 and "统一社会信用代码：" in reply.text

    def test_a_bad_date_on_the_finance_page(self, tmp_path):
        harness = make_harness(tmp_path)
        harness.sign_in("FINANCE")
        reply = harness.client.get("/finance/tranches?due_from=2026-13-01")
        assert reply.status_code == 400 and "应付日期（起）：" in reply.text
        reply = harness.client.get("/finance/tranches?due_from=2026-10-02&due_to=2026-10-01")
        assert reply.status_code == 400 and "应付日期（止）：" in reply.text

    def test_a_portal_objection_with_a_bad_objector_code(self, tmp_path):
        harness = make_harness(tmp_path)
        harness.sign_in("PORTAL")
        notice = harness.services.notice
        reply, called = calls_during(
            harness,
            lambda: harness.client.post(
                f"/notices/{notice.notice_id}/objections",
                data={
                    "csrf_token": harness.csrf(),
                    "line_id": notice.lines[0].line.line_id,
                    "reason": "r",
                    "credit_code": "9131",
                },
            ),
        )
        assert (
            reply.status_code == 400
            and "异议人统一社会信用代码：" in reply.text
            and called[-1][0] != "ReviewService.LodgeObjection"
        )


class TestEscaping:
    @pytest.mark.parametrize(
        ("role", "path"),
        [
            ("REVIEWER", "/review/items/rv-1"),
            ("REVIEWER", "/notices/notice-2026-09-25-0001"),
            ("PORTAL", "/notices/notice-2026-09-25-0001"),
            ("OPERATOR", "/applications/A-1"),
            ("ENTERPRISE", "/applications"),
            ("ENTERPRISE", "/applications/A-1"),
        ],
    )
    def test_html_in_a_firm_name_is_text_everywhere(self, tmp_path, role, path):
        harness = make_harness(tmp_path)
        harness.sign_in(role)
        if path == "/applications" and role != "ENTERPRISE":
            path += f"?credit_code={harness.services.firm_a}"
        page = harness.client.get(path).text
        assert HOSTILE_NAME not in page and "<script>alert" not in page
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;恶意企业" in page
        assert "<b>不实</b>" not in page

    def test_a_hostile_dev_identity_name_is_escaped_on_the_sign_in_page(self, tmp_path):
        harness = make_harness(tmp_path)
        assert "<script" not in harness.client.get("/signin").text.replace(
            '<script src="/static/vendor/htmx/htmx.min.js" defer></script>', ""
        )


class TestHeadersAndCookies:
    def test_every_response_has_the_security_headers(self, reviewer):
        for path in ("/", "/review", "/signin", "/static/console.css", "/nowhere", "/finance/tranches"):
            reply = reviewer.client.get(path, follow_redirects=False)
            csp = reply.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
            assert reply.headers["x-frame-options"] == "DENY"
            assert reply.headers["x-content-type-options"] == "nosniff"
            assert reply.headers["referrer-policy"] == "no-referrer"

    def test_no_inline_script_in_any_page(self, reviewer):
        for path in ("/", "/review", "/review/items/rv-1", "/notices", "/notices/notice-2026-09-25-0001"):
            page = reviewer.client.get(path).text
            assert page.count("<script") == 1 and 'src="/static/vendor/htmx/htmx.min.js"' in page
            assert " onclick=" not in page and " style=" not in page

    def test_the_session_cookie_is_httponly_and_samesite(self, tmp_path):
        harness = make_harness(tmp_path)
        reply = harness.client.get("/signin")
        cookie = reply.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        assert "secure" not in cookie  # loopback http in dev mode only

    def test_secure_beyond_loopback(self, tmp_path):
        harness = make_harness(tmp_path, http_address="0.0.0.0:8080")
        reply = harness.client.get("/signin")
        assert "secure" in reply.headers["set-cookie"].lower()
        assert reply.headers["strict-transport-security"]


class TestDevSignIn:
    def test_refused_without_dev_mode(self, tmp_path):
        harness = make_harness(tmp_path)
        env = {
            "SUBSIDY_CONSOLE_SESSION_SECRET": "s" * 40,
            "SUBSIDY_CONSOLE_AUTH_JWKS_FILE": harness.console.settings.jwks_file,
            "SUBSIDY_CONSOLE_AUTH_AUDIENCE": "a",
            "SUBSIDY_CONSOLE_AUTH_ISSUER": "i",
            "SUBSIDY_CONSOLE_DEV_SIGNING_KEY_FILE": harness.console.settings.dev_signing_key_file,
            "SUBSIDY_CONSOLE_DEV_KEY_ID": "k",
        }
        with pytest.raises(SettingsError, match="SUBSIDY_DEV_MODE=1"):
            Settings.from_env(env)
        assert Settings.from_env({**env, "SUBSIDY_DEV_MODE": "1"}).dev_signin_enabled

    def test_the_dev_form_is_refused_when_the_console_has_no_dev_signer(self, tmp_path):
        harness = make_harness(tmp_path)
        token = harness.csrf()
        harness.console.dev = None
        reply = harness.client.post("/signin/dev", data={"csrf_token": token, "subject": "reviewer-zhang"})
        assert reply.status_code == 403
        assert harness.client.get("/", follow_redirects=False).status_code == 303

    def test_an_unknown_identity_or_a_bad_credit_code(self, tmp_path):
        harness = make_harness(tmp_path)
        reply = harness.client.post("/signin/dev", data={"csrf_token": harness.csrf(), "subject": "root"})
        assert reply.status_code == 400 and "演示身份：" in reply.text
        reply = harness.client.post(
            "/signin/dev", data={"csrf_token": harness.csrf(), "subject": "enterprise", "credit_code": "<b>"}
        )
        assert reply.status_code == 400 and "统一社会信用代码：" in reply.text

    def test_no_way_to_sign_in_refuses_to_start(self):
        with pytest.raises(SettingsError, match="no way to sign in"):
            Settings(session_secret="s" * 40, jwks_file="j", audience="a", issuer="i").validate()

    def test_a_short_session_secret_refuses_to_start(self):
        with pytest.raises(SettingsError, match="SESSION_SECRET"):
            Settings(session_secret="short", jwks_file="j", audience="a", issuer="i", oidc_issuer="x").validate()


def test_the_notice_pdf_opens_inline_with_its_own_narrow_csp(tmp_path):
    harness = make_harness(tmp_path)
    harness.sign_in("FINANCE")
    reply = harness.client.get(f"/notices/{harness.services.notice.notice_id}/pdf")
    assert reply.status_code == 200 and reply.content.startswith(b"%PDF")
    assert reply.headers["content-type"] == "application/pdf"
    assert reply.headers["content-disposition"].startswith("inline;")
    csp = reply.headers["content-security-policy"]
    assert "object-src 'self'" in csp and "script-src" not in csp and "frame-ancestors 'none'" in csp
    assert reply.headers["x-content-type-options"] == "nosniff"
