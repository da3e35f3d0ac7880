"""The console's pages: a Starlette app with Jinja2 templates, rendered on
the server; htmx (vendored, static/vendor/) only enhances links and forms
(``hx-boost``), so every action is a plain form POST too.

Every route is in the route table (routes.yaml, access.py): a person whose
role it does not admit gets 403 before any service is called. Sessions are
Starlette's signed cookie (itsdangerous, HMAC-SHA1 with the secret, a time
stamp checked against ``max_age``): HttpOnly, SameSite=Lax, Secure except on
loopback http in dev mode. Every POST carries the session's CSRF token
(hidden field ``csrf_token`` or header ``X-CSRF-Token``); a cross-site Origin
is refused too. Every response has the security headers (``SECURITY_HEADERS``):
a CSP without inline script or style, no framing, nosniff, no referrer.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from subsidy.core import credit_code as credit_codes
from subsidy.core.money import yuan
from subsidy.services.console import handlers, metrics, model
from subsidy.services.console.access import Route as RouteRule
from subsidy.services.console.access import load_routes
from subsidy.services.console.adapters.policy import PolicyVersions
from subsidy.services.console.adapters.signin import DevIdentity, DevSigner, Tokens
from subsidy.services.console.config import Settings
from subsidy.services.console.model import ConsoleError, Forbidden, FormError, Person, SignedOut
from subsidy.services.console.ports import PolicyTexts, Services

log = logging.getLogger("subsidy.console")

PACKAGE = Path(__file__).resolve().parent.parent
SESSION_COOKIE = "subsidy_console"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
#: The notice PDF opened in the browser: its viewer needs object-src; nothing else is allowed.
PDF_CSP = "default-src 'none'; object-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}
#: Form bodies larger than this are refused before they are parsed.
MAX_BODY_BYTES = 64 * 1024


class SecurityHeaders:
    """Pure ASGI middleware: the security headers on every response, and a
    cap on request bodies."""

    def __init__(self, app: Any, secure: bool):
        self.app = app
        self.headers = dict(SECURITY_HEADERS)
        if secure:
            self.headers["strict-transport-security"] = "max-age=31536000"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            response = Response("请求过大。", status_code=413, media_type="text/plain; charset=utf-8")
            await self._with_headers(response)(scope, receive, send)
            return

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                own = {k.decode().lower(): v for k, v in message.get("headers", [])}
                headers = [(k, v) for k, v in message.get("headers", []) if k.decode().lower() not in self.headers]
                for k, v in self.headers.items():
                    # a response may narrow its own CSP (the PDF); every other header is ours
                    value = own[k].decode() if k == "content-security-policy" and k in own else v
                    headers.append((k.encode(), value.encode()))
                if not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending)

    def _with_headers(self, response: Response) -> Response:
        for k, v in self.headers.items():
            response.headers[k] = v
        return response


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(PACKAGE / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["yuan"] = lambda fen: yuan(int(fen or 0))
    env.globals.update(
        ITEM_STATUS=model.ITEM_STATUS,
        REVIEW_REASONS=model.REVIEW_REASONS,
        OUTCOMES=model.OUTCOMES,
        LINE_STATUS=model.LINE_STATUS,
        OBJECTION_STATUS=model.OBJECTION_STATUS,
        RECOVERY_STATUS=model.RECOVERY_STATUS,
        OPEN_TRANCHES=model.OPEN_TRANCHES,
        APPLICATION_STATE=model.APPLICATION_STATE,
        GRANT_STATE=model.GRANT_STATE,
        TRANCHE_STATUS=model.TRANCHE_STATUS,
        TRANCHE_STATUS_CODES=model.TRANCHE_STATUS_CODES,
        LETTER_STATE=model.LETTER_STATE,
        DLQ_TOPIC_NAMES=model.DLQ_TOPIC_NAMES,
        PROPOSAL_STATE=model.PROPOSAL_STATE,
        OUTLAY_KINDS=handlers.OUTLAY_KINDS,
        CHANGE_KINDS=handlers.CHANGE_KINDS,
        ADOPTION_STEP=model.ADOPTION_STEP,
        ADOPTION_EVENT=model.ADOPTION_EVENT,
        REFUSAL_KIND=model.REFUSAL_KIND,
        DECIDE_RESULTS=handlers.DECIDE_RESULTS,
        RESOLUTIONS=handlers.RESOLUTIONS,
        QUEUE_STATUSES=handlers.QUEUE_STATUSES,
        CLAUSE_IDS=handlers.CLAUSE_IDS,
        RECOVERY_FILTERS=handlers.RECOVERY_FILTERS,
        ROLE_NAMES=model.ROLE_NAMES,
    )
    return env


class Console:
    """The pages over the ``Services`` port, with sign-in and the route table."""

    def __init__(
        self,
        settings: Settings,
        services: Services,
        tokens: Tokens,
        dev: DevSigner | None = None,
        oidc: Any = None,
        clock: Callable[[], float] = time.time,
        policy: PolicyTexts | None = None,
    ):
        self.settings = settings
        self.services = services
        self.policy = policy or PolicyVersions()
        self.tokens = tokens
        self.dev = dev
        self.oidc = oidc
        self.clock = clock
        self.routes = load_routes()
        self.templates = Jinja2Templates(env=_environment())

    # -- sessions, CSRF, the person ---------------------------------------------------------

    @staticmethod
    def csrf_token(request: Request) -> str:
        token = request.session.get("csrf")
        if not token:
            token = secrets.token_urlsafe(32)
            request.session["csrf"] = token
        return str(token)

    async def check_csrf(self, request: Request) -> dict[str, Any]:
        """The form, once its CSRF token matches the session's (and no foreign Origin sent it)."""
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.url.netloc:
            raise Forbidden("请求来源不符，已拒绝（跨站请求）。")
        if request.headers.get("sec-fetch-site") == "cross-site":
            raise Forbidden("请求来源不符，已拒绝（跨站请求）。")
        received = await request.form()
        form: dict[str, Any] = {}
        for key in received:
            many = received.getlist(key)
            form[key] = many if len(many) > 1 else many[0]
        sent = str(form.get("csrf_token") or request.headers.get("x-csrf-token") or "")
        expected = str(request.session.get("csrf") or "")
        if not expected or not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
            raise Forbidden("表单校验令牌无效或已过期，请刷新页面后重试。")
        return form

    def person(self, request: Request) -> Person:
        stored = request.session.get("person")
        if not isinstance(stored, dict):
            raise SignedOut("请先登录。")
        if (
            float(stored.get("expires_at", 0)) <= self.clock()
            or float(stored.get("started", 0)) + (self.settings.session_seconds) <= self.clock()
        ):
            request.session.clear()
            raise SignedOut("登录已过期，请重新登录。")
        person = self.tokens.person(str(stored.get("token", "")), str(stored.get("name", "")))
        if person.subject != stored.get("subject"):
            request.session.clear()
            raise SignedOut("会话无效，请重新登录。")
        return person

    def start_session(self, request: Request, person: Person) -> None:
        request.session.clear()  # a new session on sign-in: no fixation
        request.session.update(
            person={
                "subject": person.subject,
                "name": person.name,
                "token": person.token,
                "expires_at": person.expires_at,
                "started": self.clock(),
            },
            csrf=secrets.token_urlsafe(32),
        )

    # -- rendering --------------------------------------------------------------------------

    def render(
        self, request: Request, template: str, person: Person | None, status: int = 200, **context: Any
    ) -> Response:
        nav = []
        if person is not None:
            for name, label in (
                ("review_queue", "审核队列"),
                ("notices", "公示"),
                ("applications", "申请查询"),
                ("proposals", "免申即享"),
                ("firm_search", "企业台账"),
                ("finance", "拨付计划"),
                ("budget", "预算执行"),
                ("policy_versions", "政策版本"),
                ("operations", "运行状况"),
                ("dead_letters", "死信"),
            ):
                if self.routes[name].admits(person):
                    href = f"/firms/{person.credit_code}" if name == "firm_search" and person.credit_code else None
                    nav.append((href or self.routes[name].path.split("{")[0].rstrip("/") or "/", label))
        context.setdefault("error", None)
        context.setdefault("message", None)
        return self.templates.TemplateResponse(
            request,
            template,
            {"person": person, "nav": nav, "csrf": self.csrf_token(request), "settings": self.settings, **context},
            status_code=status,
        )

    def error_page(self, request: Request, person: Person | None, exc: ConsoleError) -> Response:
        if isinstance(exc, SignedOut):
            if request.method == "GET":
                return RedirectResponse("/signin?" + urlencode({"why": exc.message}), status_code=303)
            return self.render(request, "signin.html", None, status=401, error=exc.message, **self._signin_context())
        return self.render(request, "error.html", person, status=exc.status, error=exc.message)

    # -- the guard every page goes through --------------------------------------------------

    def page(
        self,
        name: str,
        view: Callable[..., Awaitable[Response]],
        back: Callable[..., Awaitable[Response]] | None = None,
    ) -> Callable[[Request], Awaitable[Response]]:
        """``view(request, person, form)`` behind the route table; a POST is
        CSRF-checked first; a refused POST re-renders ``back`` with the error."""
        rule: RouteRule = self.routes[name]

        async def endpoint(request: Request) -> Response:
            person: Person | None = None
            status = 500
            try:
                if not rule.public:
                    person = self.person(request)
                    rule.check(person)
                form = await self.check_csrf(request) if request.method == "POST" else {}
                try:
                    response = await view(request, person, form)
                except ConsoleError as exc:
                    if back is None or isinstance(exc, SignedOut) or person is None:
                        raise
                    log.info("refused %s: %s", name, exc.message)
                    response = await back(request, person, error=exc.message, status=exc.status, form=form)
                status = response.status_code
                return response
            except ConsoleError as exc:
                status = exc.status
                return self.error_page(request, person, exc)
            finally:
                metrics.REQUESTS.labels(name, str(status)).inc()

        return endpoint

    # -- sign-in ----------------------------------------------------------------------------

    def _signin_context(self) -> dict[str, Any]:
        return {
            "identities": self.dev.identities if self.dev else (),
            "dev": self.dev is not None,
            "oidc": self.oidc is not None,
        }

    async def signin(self, request: Request, person: Person | None, form: dict) -> Response:
        why = str(request.query_params.get("why") or "")[:200]
        return self.render(request, "signin.html", None, message=why or None, **self._signin_context())

    async def signin_dev(self, request: Request, person: Person | None, form: dict) -> Response:
        if self.dev is None or not self.settings.dev_mode:
            raise Forbidden("演示身份登录仅在开发模式（SUBSIDY_DEV_MODE=1）下可用。")
        subject = str(form.get("subject") or "")
        if subject == "enterprise":
            code = str(form.get("credit_code") or "").strip().upper()
            if not credit_codes.is_valid(code):
                metrics.SIGNINS.labels("dev", "refused").inc()
                raise FormError(
                    "credit_code", "统一社会信用代码", "不是有效的统一社会信用代码（18 位，校验位须正确）。"
                )
            who = DevIdentity(f"enterprise-{code}", "ENTERPRISE", f"企业 {code}", code)
        else:
            found = self.dev.find(subject)
            if found is None:
                metrics.SIGNINS.labels("dev", "refused").inc()
                raise FormError("subject", "演示身份", "没有这个演示身份。")
            who = found
        token = self.dev.token(who, min(self.settings.session_seconds, 8 * 3600))
        self.start_session(request, self.tokens.person(token))
        metrics.SIGNINS.labels("dev", "ok").inc()
        return RedirectResponse("/", status_code=303)

    async def signin_back(self, request: Request, person: Person | None, **context: Any) -> Response:
        context.pop("form", None)
        return self.render(request, "signin.html", None, **self._signin_context(), **context)

    async def signin_oidc(self, request: Request, person: Person | None, form: dict) -> Response:
        if self.oidc is None:
            raise Forbidden("未配置统一身份认证（OpenID Connect）。")
        base = self.settings.public_url or str(request.base_url).rstrip("/")
        return await self.oidc.authorize_redirect(request, f"{base}/auth/callback")

    async def auth_callback(self, request: Request, person: Person | None, form: dict) -> Response:
        if self.oidc is None:
            raise Forbidden("未配置统一身份认证（OpenID Connect）。")
        try:
            token = await self.oidc.authorize_access_token(request)
        except Exception as exc:  # noqa: BLE001 - any failure of the exchange is a failed sign-in
            metrics.SIGNINS.labels("oidc", "refused").inc()
            log.warning("OIDC sign-in failed: %s", type(exc).__name__)
            raise SignedOut("统一身份认证登录失败，请重试。") from None
        userinfo = token.get("userinfo") or {}
        signed_in = self.tokens.person(str(token.get("access_token", "")), str(userinfo.get("name", "")))
        self.start_session(request, signed_in)
        metrics.SIGNINS.labels("oidc", "ok").inc()
        return RedirectResponse("/", status_code=303)

    async def signout(self, request: Request, person: Person | None, form: dict) -> Response:
        request.session.clear()
        return RedirectResponse("/signin", status_code=303)

    # -- pages ------------------------------------------------------------------------------

    async def home(self, request: Request, person: Person | None, form: dict) -> Response:
        return self.render(request, "home.html", person)

    async def review_queue(self, request: Request, person: Person, form: dict, **context: Any) -> Response:
        status = context.pop("status", 200)
        data = await handlers.review_queue(self.services, person, request.query_params)
        return self.render(request, "queue.html", person, status=status, **data, **context)

    async def review_item(self, request: Request, person: Person, form: dict | None = None, **context: Any) -> Response:
        status = context.pop("status", 200)
        form = context.pop("form", form) or {}
        data = await handlers.review_item(self.services, person, request.path_params["item_id"])
        return self.render(request, "item.html", person, status=status, form=form, **data, **context)

    def _item_action(self, action: Callable[..., Awaitable[Any]], done: str) -> Callable[..., Awaitable[Response]]:
        async def view(request: Request, person: Person, form: dict) -> Response:
            item_id = request.path_params["item_id"]
            args = (form,) if action in (handlers.decide, handlers.second_approve) else ()
            await action(self.services, person, item_id, *args)
            return RedirectResponse(f"/review/items/{item_id}?" + urlencode({"done": done}), status_code=303)

        return view

    async def notices(self, request: Request, person: Person, form: dict, **context: Any) -> Response:
        status = context.pop("status", 200)
        context.pop("form", None)
        data = await handlers.notices(self.services, person, str(request.query_params.get("page_token") or ""))
        return self.render(request, "notices.html", person, status=status, **data, **context)

    async def notice_publish(self, request: Request, person: Person, form: dict) -> Response:
        published = await handlers.publish_notice(self.services, person, form)
        return RedirectResponse(f"/notices/{published.notice.notice_id}?done=published", status_code=303)

    async def notice(self, request: Request, person: Person, form: dict | None = None, **context: Any) -> Response:
        status = context.pop("status", 200)
        form = context.pop("form", form) or {}
        data = await handlers.notice(self.services, person, request.path_params["notice_id"])
        return self.render(request, "notice.html", person, status=status, form=form, **data, **context)

    async def notice_pdf(self, request: Request, person: Person, form: dict) -> Response:
        notice_id = request.path_params["notice_id"]
        pdf = await handlers.notice_pdf(self.services, person, notice_id)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in notice_id)
        return Response(
            pdf,
            media_type="application/pdf",
            headers={
                "content-disposition": f'inline; filename="notice-{safe}.pdf"',
                "content-security-policy": PDF_CSP,
            },
        )

    async def objection_lodge(self, request: Request, person: Person, form: dict) -> Response:
        notice_id = request.path_params["notice_id"]
        await handlers.lodge_objection(self.services, person, notice_id, form)
        return RedirectResponse(f"/notices/{notice_id}?done=lodged", status_code=303)

    async def objection_resolve(self, request: Request, person: Person, form: dict) -> Response:
        notice_id = request.path_params["notice_id"]
        await handlers.resolve_objection(self.services, person, form)
        return RedirectResponse(f"/notices/{notice_id}?done=resolved", status_code=303)

    async def applications(self, request: Request, person: Person, form: dict) -> Response:
        try:
            data = await handlers.applications(self.services, person, request.query_params)
        except FormError as exc:
            return self.render(
                request,
                "applications.html",
                person,
                status=400,
                error=exc.message,
                applications=[],
                filters=dict(request.query_params),
            )
        return self.render(request, "applications.html", person, **data)

    async def application(self, request: Request, person: Person, form: dict | None = None, **context: Any) -> Response:
        status = context.pop("status", 200)
        form = context.pop("form", form) or {}
        data = await handlers.application(self.services, person, request.path_params["application_id"])
        return self.render(request, "application.html", person, status=status, form=form, **data, **context)

    async def application_answer(self, request: Request, person: Person, form: dict) -> Response:
        application_id = request.path_params["application_id"]
        await handlers.answer_information(self.services, person, application_id, form)
        return RedirectResponse(f"/applications/{application_id}?done=answered", status_code=303)

    async def firm(self, request: Request, person: Person, form: dict | None = None, **context: Any) -> Response:
        status = context.pop("status", 200)
        form = context.pop("form", form) or {}
        data = await handlers.firm(self.services, person, request.path_params["credit_code"])
        return self.render(request, "firm.html", person, status=status, form=form, **data, **context)

    def _firm_action(self, action: Callable[..., Awaitable[Any]], done: str) -> Callable[..., Awaitable[Response]]:
        async def view(request: Request, person: Person, form: dict) -> Response:
            code = request.path_params["credit_code"]
            await action(self.services, person, code, form)
            return RedirectResponse(f"/firms/{code}?" + urlencode({"done": done}), status_code=303)

        return view

    async def firm_search(self, request: Request, person: Person, form: dict) -> Response:
        code = str(request.query_params.get("credit_code") or "")
        try:
            found = handlers.firm_of(person, code)
        except FormError as exc:
            return self.render(request, "firms.html", person, status=400, error=exc.message, credit_code=code)
        if not found:
            return self.render(request, "firms.html", person, credit_code="")
        return RedirectResponse(f"/firms/{found}", status_code=303)

    async def finance(self, request: Request, person: Person, form: dict) -> Response:
        try:
            data = await handlers.finance(self.services, person, request.query_params)
        except FormError as exc:
            return self.render(
                request,
                "finance.html",
                person,
                status=400,
                error=exc.message,
                tranches=[],
                totals={},
                recoveries=[],
                filters=dict(request.query_params),
                **handlers.budget_years([]),
            )
        return self.render(request, "finance.html", person, **data)

    async def finance_csv(self, request: Request, person: Person, form: dict) -> Response:
        tranches, filters = await handlers.all_tranches(self.services, person, request.query_params)
        name = "tranches" + "".join(f"-{v}" for v in filters.values() if v) + ".csv"
        return Response(
            handlers.tranches_csv(tranches).encode("utf-8-sig"),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{name}"'},
        )

    async def proposals(self, request: Request, person: Person, form: dict) -> Response:
        try:
            data = await handlers.proposals(self.services, person, request.query_params)
        except FormError as exc:
            return self.render(
                request,
                "proposals.html",
                person,
                status=400,
                error=exc.message,
                proposals=[],
                filters=dict(request.query_params),
            )
        return self.render(request, "proposals.html", person, **data)

    async def budget(self, request: Request, person: Person, form: dict) -> Response:
        data = await handlers.budget(self.services, self.policy, person, request.query_params)
        return self.render(request, "budget.html", person, **data)

    async def policy_versions(
        self, request: Request, person: Person, form: dict | None = None, **context: Any
    ) -> Response:
        status = context.pop("status", 200)
        form = context.pop("form", form) or {}
        context.setdefault("outcome", None)
        data = await handlers.policy_versions(self.services, self.policy, person, context["outcome"])
        # the version whose form was sent (a refused step keeps what was typed there)
        posted = str(request.path_params.get("version_id") or "")
        return self.render(
            request, "policy_versions.html", person, status=status, form=form, posted=posted, **data, **context
        )

    async def policy_adopt(self, request: Request, person: Person, form: dict) -> Response:
        """One reviewer's adoption step. Its answer (who proposed and approved,
        the re-decisions, the report) exists only in AdoptVersion's reply, so
        the versions page is rendered with it here rather than redirected to;
        htmx shows /policy/versions as the address."""
        outcome = await handlers.adopt_version(
            self.services, self.policy, person, request.path_params["version_id"], form
        )
        response = await self.policy_versions(
            request,
            person,
            outcome=outcome,
            message=f"{model.ADOPTION_STEP.get(outcome.status, outcome.status)}：{outcome.version_id}",
        )
        response.headers["hx-push-url"] = "/policy/versions"
        return response

    async def operations(self, request: Request, person: Person, form: dict) -> Response:
        checks = await self.services.health()
        try:
            topics, topics_error = await handlers.dead_letter_topics(self.services, person), None
        except model.Unavailable as exc:  # the page still shows health when operations is down
            topics, topics_error = [], exc.message
        return self.render(request, "operations.html", person, checks=checks, topics=topics, topics_error=topics_error)

    async def dead_letters(self, request: Request, person: Person, form: dict) -> Response:
        try:
            data = await handlers.dead_letters(self.services, person, request.query_params)
        except FormError as exc:
            return self.render(
                request,
                "dead_letters.html",
                person,
                status=400,
                error=exc.message,
                topics=[],
                topic="",
                state="",
                letters=[],
                next_page_token="",
            )
        return self.render(request, "dead_letters.html", person, **data)

    @staticmethod
    def _letter_id(request: Request) -> str:
        p = request.path_params
        return handlers.letter_id_of(str(p["topic"]), str(p["partition"]), str(p["offset"]))

    @staticmethod
    def _letter_path(request: Request) -> str:
        p = request.path_params
        return f"/operations/dead-letters/{p['topic']}/{int(p['partition'])}/{int(p['offset'])}"

    async def dead_letter(self, request: Request, person: Person, form: dict | None = None, **context: Any) -> Response:
        status = context.pop("status", 200)
        form = context.pop("form", form) or {}
        data = await handlers.dead_letter(self.services, person, self._letter_id(request))
        return self.render(
            request,
            "dead_letter.html",
            person,
            status=status,
            form=form,
            path=self._letter_path(request),
            **data,
            **context,
        )

    def _letter_action(self, action: Callable[..., Awaitable[Any]], done: str) -> Callable[..., Awaitable[Response]]:
        async def view(request: Request, person: Person, form: dict) -> Response:
            await action(self.services, person, self._letter_id(request), form)
            return RedirectResponse(self._letter_path(request) + "?" + urlencode({"done": done}), status_code=303)

        return view

    # -- the app ----------------------------------------------------------------------------

    def app(self) -> Starlette:
        p = self.page
        views: dict[str, tuple[Callable[..., Awaitable[Response]], Callable[..., Awaitable[Response]] | None]] = {
            "home": (self.home, None),
            "signin": (self.signin, None),
            "signin_dev": (self.signin_dev, self.signin_back),
            "signin_oidc": (self.signin_oidc, None),
            "auth_callback": (self.auth_callback, None),
            "signout": (self.signout, None),
            "review_queue": (self.review_queue, None),
            "review_item": (self.review_item, None),
            "review_claim": (self._item_action(handlers.claim, "claimed"), self.review_item),
            "review_decide": (self._item_action(handlers.decide, "decided"), self.review_item),
            "review_second": (self._item_action(handlers.second_approve, "second"), self.review_item),
            "notices": (self.notices, None),
            "notice_publish": (self.notice_publish, self.notices),
            "notice": (self.notice, None),
            "notice_pdf": (self.notice_pdf, None),
            "objection_lodge": (self.objection_lodge, self.notice),
            "objection_resolve": (self.objection_resolve, self.notice),
            "applications": (self.applications, None),
            "application": (self.application, None),
            "application_answer": (self.application_answer, self.application),
            "firm_search": (self.firm_search, None),
            "firm": (self.firm, None),
            "tranche_cancel": (self._firm_action(handlers.cancel_tranche, "cancelled"), self.firm),
            "recovery_open": (self._firm_action(handlers.open_recovery, "recovery"), self.firm),
            "finance": (self.finance, None),
            "finance_csv": (self.finance_csv, None),
            "budget": (self.budget, None),
            "policy_versions": (self.policy_versions, None),
            "policy_adopt": (self.policy_adopt, self.policy_versions),
            "proposals": (self.proposals, None),
            "operations": (self.operations, None),
            "dead_letters": (self.dead_letters, None),
            "dead_letter": (self.dead_letter, None),
            "dead_letter_replay": (self._letter_action(handlers.replay_dead_letter, "replayed"), self.dead_letter),
            "dead_letter_discard": (self._letter_action(handlers.discard_dead_letter, "discarded"), self.dead_letter),
        }
        missing = set(self.routes) ^ set(views)
        if missing:
            raise RuntimeError(f"routes.yaml and the views disagree on {', '.join(sorted(missing))}")
        routes: list[Any] = []
        # Fixed paths before parameterised ones (/notices/publish before /notices/{notice_id}).
        ordered = sorted(self.routes.values(), key=lambda r: ("{" in r.path, r.path))
        for rule in ordered:
            view, back = views[rule.name]
            routes.append(Route(rule.path, p(rule.name, view, back), methods=[rule.method], name=rule.name))
        routes.append(Mount("/static", StaticFiles(directory=str(PACKAGE / "static")), name="static"))
        middleware = [
            Middleware(SecurityHeaders, secure=self.settings.secure_cookies),
            Middleware(
                SessionMiddleware,
                secret_key=self.settings.session_secret,
                session_cookie=SESSION_COOKIE,
                max_age=self.settings.session_seconds,
                same_site="lax",
                https_only=self.settings.secure_cookies,
            ),
        ]

        async def not_found(request: Request, exc: Exception) -> Response:
            return Response("页面不存在。", status_code=404, media_type="text/plain; charset=utf-8")

        async def not_allowed(request: Request, exc: Exception) -> Response:
            return Response("不支持此请求方法。", status_code=405, media_type="text/plain; charset=utf-8")

        return Starlette(routes=routes, middleware=middleware, exception_handlers={404: not_found, 405: not_allowed})
