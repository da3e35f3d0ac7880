"""The console's use cases over the services port (ports.py): what each page
shows and what each form sends. No gRPC, HTTP or templates here: the web
adapter renders what these return, the unit tests run them over a fake.

Every form is checked here first, with a Chinese message naming the field
(``FormError``); nothing is sent to a service until the whole form is good.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from subsidy.core import credit_code as credit_codes
from subsidy.core.clauses import IDS as CLAUSE_IDS
from subsidy.core.money import yuan
from subsidy.core.workflow.review import item_id_for
from subsidy.services.console.model import (
    APPLICATION_STATE,
    ITEM_STATUS,
    OUTCOMES,
    PROPOSAL_STATE,
    TRANCHE_STATUS,
    TRANCHE_STATUS_CODES,
    VERSION_STATUS,
    Conflict,
    Forbidden,
    FormError,
    NotFound,
    Person,
    PolicyVersionInfo,
    Unavailable,
)
from subsidy.services.console.ports import Services
from subsidy.v1 import payout_pb2, policy_service_pb2, review_pb2

#: The longest free text a form takes (the review rules' own limit).
TEXT_MAX = 2000
#: The longest reason payout takes for a cancellation or a recovery.
REASON_MAX = 1000
#: The longest id or code a form or URL takes.
ID_MAX = 200
#: At most this many pages are read for one listing (the finance CSV, a firm's applications).
MAX_PAGES = 50

DECIDE_RESULTS = {"APPROVED": "通过", "REJECTED": "不予支持", "MORE_INFO_REQUESTED": "要求补充材料"}
RESOLUTIONS = {"DISMISSED": "异议不成立", "UPHELD": "异议成立"}
QUEUE_STATUSES = ("OPEN", "CLAIMED", "AWAITING_SECOND", "MORE_INFO_REQUESTED", "APPROVED", "REJECTED")
_YUAN = re.compile(r"^(\d{1,12})(?:\.(\d{1,2}))?$")
_CLAUSE = re.compile(r"^(一|[1-9]|1[0-5])(\.[a-z_]{1,20})?$")  # "4", "10.cloud"


# -- form fields ----------------------------------------------------------------------


def text(form: Mapping[str, Any], name: str, label: str, *, required: bool = True, limit: int = TEXT_MAX) -> str:
    value = str(form.get(name) or "").strip()
    if required and not value:
        raise FormError(name, label, "必须填写。")
    if len(value) > limit:
        raise FormError(name, label, f"不能超过 {limit} 个字符（现为 {len(value)} 个）。")
    return value


def identifier(value: str, name: str, label: str) -> str:
    value = value.strip()
    if not value:
        raise FormError(name, label, "必须填写。")
    if len(value) > ID_MAX or any(c.isspace() or ord(c) < 32 for c in value):
        raise FormError(name, label, f"不是有效的编号（至多 {ID_MAX} 个字符，不含空白）。")
    return value


def amount_fen(form: Mapping[str, Any], name: str, label: str) -> int:
    raw = str(form.get(name) or "").strip().replace(",", "").replace("，", "")
    if not raw:
        raise FormError(name, label, "必须填写。")
    match = _YUAN.match(raw)
    if not match:
        raise FormError(name, label, "请填写以元为单位的金额，如 120000 或 120000.50（至多两位小数）。")
    fen = int(match.group(1)) * 100 + int((match.group(2) or "0").ljust(2, "0"))
    if fen <= 0:
        raise FormError(name, label, "必须大于 0。")
    return fen


def credit_code(value: str, name: str = "credit_code", label: str = "统一社会信用代码") -> str:
    value = value.strip().upper()
    if not credit_codes.is_valid(value):
        raise FormError(name, label, "不是有效的统一社会信用代码（18 位，校验位须正确）。")
    return value


def day(value: str, name: str, label: str) -> str:
    value = value.strip()
    if not value:
        return ""
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise FormError(name, label, "请按 YYYY-MM-DD 填写日期。") from None


# -- the review queue and its items -------------------------------------------------------


def queue_request(query: Mapping[str, str]) -> tuple[Any, dict[str, Any]]:
    """The ListQueue request of the queue page's filters, and the filters as shown."""
    clause = str(query.get("clause") or "").strip()
    if clause and not _CLAUSE.match(clause):
        raise FormError("clause", "条款", "请填写条款项号：一 或 1–15。")
    reason = str(query.get("review_reason") or "").strip()
    from subsidy.services.console.model import REVIEW_REASONS

    if reason and reason not in REVIEW_REASONS:
        raise FormError("review_reason", "审核原因", "不是可选的审核原因。")
    status = str(query.get("status") or "").strip()
    if status and status not in QUEUE_STATUSES:
        raise FormError("status", "状态", "不是可选的状态。")
    overdue = query.get("overdue") == "1"
    mine = query.get("mine") == "1"
    token = str(query.get("page_token") or "")
    if len(token) > 1000:
        raise FormError("page_token", "页码", "无效。")
    request = review_pb2.ListQueueRequest(
        clause=clause,
        review_reason=reason,
        overdue_only=overdue,
        assigned_to_me=mine,
        statuses=[status] if status else [],
        page_size=100,
        page_token=token,
    )
    return request, {"clause": clause, "review_reason": reason, "status": status, "overdue": overdue, "mine": mine}


def overdue_first(items: Iterable[Any]) -> list[Any]:
    """Overdue items first, then by deadline, then by the day queued."""
    return sorted(items, key=lambda i: (not i.overdue, i.deadline or "9999", i.queued_on, i.item_id))


async def review_queue(services: Services, person: Person, query: Mapping[str, str]) -> dict[str, Any]:
    request, filters = queue_request(query)
    reply = await services.list_queue(person, request)
    return {"items": overdue_first(reply.items), "filters": filters, "next_page_token": reply.next_page_token}


async def review_item(services: Services, person: Person, item_id: str) -> dict[str, Any]:
    item_id = identifier(item_id, "item_id", "审核事项编号")
    reply = await services.get_item(person, item_id)
    item = reply.item
    ledger = await services.get_ledger(person, item.credit_code) if item.credit_code else None
    trail = await services.audit_trail(person, item_id)
    return {
        "item": item,
        "application": reply.application if reply.HasField("application") else None,
        "reasons": list(reply.decision_reasons),
        "grants": list(reply.ledger),
        "granted_fen": reply.ledger_granted_fen,
        "ledger": ledger,
        "trail": trail,
        "me": person.subject,
    }


def decide_request(item_id: str, form: Mapping[str, Any]) -> Any:
    result = str(form.get("result") or "").strip()
    if result not in DECIDE_RESULTS:
        raise FormError("result", "审核结论", "请选择“通过”“不予支持”或“要求补充材料”。")
    request = review_pb2.DecideRequest(item_id=item_id, result=result)
    if result == "APPROVED":
        request.amount_fen = amount_fen(form, "amount_yuan", "核定金额（元）")
        request.basis = text(form, "basis", "核定依据")
        for name, label in (("training_cost_fen", "经审核的培训费用（元）"), ("cost_fen", "经审核的费用（元）")):
            if str(form.get(f"reviewer_{name}") or "").strip():
                request.reviewer_amounts[name] = amount_fen(form, f"reviewer_{name}", label)
    elif result == "REJECTED":
        request.reasons = text(form, "reasons", "不予支持的理由")
    else:
        request.missing = text(form, "missing", "须补充的材料")
    return request


async def claim(services: Services, person: Person, item_id: str) -> Any:
    return await services.claim_item(person, identifier(item_id, "item_id", "审核事项编号"))


async def decide(services: Services, person: Person, item_id: str, form: Mapping[str, Any]) -> Any:
    return await services.decide(person, decide_request(identifier(item_id, "item_id", "审核事项编号"), form))


async def second_approve(services: Services, person: Person, item_id: str, form: Mapping[str, Any]) -> Any:
    """Approve as the second reviewer, or send the first approval back (``send_back=1``) with reasons."""
    request = review_pb2.SecondApproveRequest(item_id=identifier(item_id, "item_id", "审核事项编号"))
    if str(form.get("send_back") or "") == "1":
        request.send_back = True
        request.reasons = text(form, "reasons", "退回理由")
    return await services.second_approve(person, request)


# -- the public notice ----------------------------------------------------------------------


async def notices(services: Services, person: Person, page_token: str = "") -> dict[str, Any]:
    if len(page_token) > 1000:
        raise FormError("page_token", "页码", "无效。")
    reply = await services.list_notices(person, page_token)
    return {"notices": list(reply.notices), "next_page_token": reply.next_page_token}


OBJECTION_FIELDS = (
    "objection_id",
    "line_id",
    "reason",
    "lodged_by",
    "lodged_on",
    "status",
    "resolution_reasons",
    "resolved_by",
    "resolved_on",
)


def objections_from_audit(entries: Iterable[Any]) -> list[dict[str, Any]]:
    """The notice's objections, folded from its audit trail (the review API
    has no listing of them): lodged, then upheld or dismissed."""
    found: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if not entry.action.startswith("OBJECTION_"):
            continue
        try:
            after = json.loads(entry.after or "{}")
        except ValueError:
            continue
        objection = after.get("objection") if isinstance(after, dict) else None
        if not isinstance(objection, dict) or not objection.get("objection_id"):
            continue
        found.setdefault(objection["objection_id"], dict.fromkeys(OBJECTION_FIELDS, "")).update(
            {k: "" if v is None else v for k, v in objection.items() if k in OBJECTION_FIELDS}
        )
    return list(found.values())


async def notice(services: Services, person: Person, notice_id: str) -> dict[str, Any]:
    notice_id = identifier(notice_id, "notice_id", "公示编号")
    reply = await services.get_notice(person, notice_id)
    objections: list[dict[str, Any]] = []
    if person.role in ("REVIEWER", "OPERATOR"):  # the audit trail is theirs to read
        objections = objections_from_audit(await services.audit_trail(person, notice_id))
    return {"notice": reply.notice, "objections": objections}


async def notice_pdf(services: Services, person: Person, notice_id: str) -> bytes:
    reply = await services.get_notice(person, identifier(notice_id, "notice_id", "公示编号"))
    return bytes(reply.pdf)


async def publish_notice(services: Services, person: Person, form: Mapping[str, Any]) -> Any:
    return await services.publish_notice(person, text(form, "title", "公示标题", required=False, limit=200))


async def lodge_objection(services: Services, person: Person, notice_id: str, form: Mapping[str, Any]) -> Any:
    identifier(notice_id, "notice_id", "公示编号")
    line_id = identifier(str(form.get("line_id") or ""), "line_id", "公示行")
    reason = text(form, "reason", "异议理由")
    objector = ""
    if person.role == "ENTERPRISE":
        objector = person.credit_code  # a firm objects as itself
    elif str(form.get("credit_code") or "").strip():
        objector = credit_code(str(form["credit_code"]), "credit_code", "异议人统一社会信用代码")
    return await services.lodge_objection(
        person, review_pb2.LodgeObjectionRequest(line_id=line_id, credit_code=objector, reason=reason)
    )


async def resolve_objection(services: Services, person: Person, form: Mapping[str, Any]) -> Any:
    objection_id = identifier(str(form.get("objection_id") or ""), "objection_id", "异议编号")
    resolution = str(form.get("resolution") or "").strip()
    if resolution not in RESOLUTIONS:
        raise FormError("resolution", "处理结论", "请选择“异议不成立”或“异议成立”。")
    reasons = text(form, "reasons", "处理理由")
    return await services.resolve_objection(
        person, review_pb2.ResolveObjectionRequest(objection_id=objection_id, resolution=resolution, reasons=reasons)
    )


# -- applications and firms -----------------------------------------------------------------


def firm_of(person: Person, requested: str, name: str = "credit_code") -> str:
    """The firm a page is about: an ENTERPRISE only ever its own."""
    if person.role == "ENTERPRISE":
        if requested.strip() and requested.strip().upper() != person.credit_code:
            raise Forbidden("企业用户只能查看本企业的信息。")
        return person.credit_code
    if not requested.strip():
        return ""
    return credit_code(requested, name)


#: Characters of a firm-name search (intake's own limit).
FIRM_NAME_MAX = 100
#: Rows of a page listed across firms; the next page is a link.
SEARCH_PAGE_SIZE = 50
_PAGE_TOKEN = re.compile(r"^[A-Za-z0-9_-]{0,1024}$")


def firm_name(query: Mapping[str, Any]) -> str:
    value = str(query.get("firm_name") or "").strip()
    if len(value) > FIRM_NAME_MAX:
        raise FormError("firm_name", "企业名称", f"不能超过 {FIRM_NAME_MAX} 个字符（现为 {len(value)} 个）。")
    if any(unicodedata.category(c)[0] == "C" for c in value):
        raise FormError("firm_name", "企业名称", "含有不可见的控制字符。")
    return value


def page_token(query: Mapping[str, Any]) -> str:
    value = str(query.get("page_token") or "").strip()
    if not _PAGE_TOKEN.match(value):
        raise FormError("page_token", "页码", "不是有效的翻页标记，请重新查询。")
    return value


def clause_id(query: Mapping[str, Any]) -> str:
    value = str(query.get("clause") or "").strip()
    if value and value not in CLAUSE_IDS:
        raise FormError("clause", "条款", f"不是政策中的条款（可选：{'、'.join(CLAUSE_IDS)}）。")
    return value


def state_number(query: Mapping[str, Any], states: Mapping[int, str]) -> str:
    value = str(query.get("state") or "").strip()
    if value and not (value.isdigit() and int(value) in states and int(value) != 0):
        raise FormError("state", "状态", "不是可选的状态。")
    return value


async def applications(services: Services, person: Person, query: Mapping[str, str]) -> dict[str, Any]:
    """Applications newest first, one page: an ENTERPRISE's own only (its
    credit code forced, so a firm-name search never reaches another firm);
    for staff, one firm's or every firm's, by part of the firm name, clause
    and state, all searched by intake (issue 15)."""
    firm = firm_of(person, str(query.get("credit_code") or ""))
    name = firm_name(query)
    clause = clause_id(query)
    state = state_number(query, APPLICATION_STATE)
    token = page_token(query)
    reply = await services.list_applications(
        person,
        firm,
        token,
        firm_name=name,
        clause=clause,
        state=int(state or 0),
        page_size=SEARCH_PAGE_SIZE,
    )
    filters = {"credit_code": firm, "firm_name": name, "clause": clause, "state": state}
    return {"applications": list(reply.applications), "filters": filters, "next_page_token": reply.next_page_token}


async def application(services: Services, person: Person, application_id: str) -> dict[str, Any]:
    application_id = identifier(application_id, "application_id", "申请编号")
    status = (await services.get_application(person, application_id)).application
    if person.role == "ENTERPRISE" and status.application.firm.credit_code != person.credit_code:
        raise NotFound("没有这项申请。")  # as if absent: a firm learns nothing of another's
    return {"app": status, "timeline": timeline(status)}


async def answer_information(services: Services, person: Person, application_id: str, form: Mapping[str, Any]) -> Any:
    """The firm (or the portal for it) answers a reviewer's request for
    information (补充材料) on an application under review. The review item is
    the computed decision's (its id derived as the review service derives
    it); the service checks the request is open."""
    status = (await application(services, person, application_id))["app"]
    if status.state != 4 or not status.decision.decision_id:  # APPLICATION_STATE_UNDER_REVIEW
        raise Conflict("该申请不在人工审核中，无需答复补充材料要求。")
    raw = str(form.get("request_number") or "").strip()
    if not (raw.isdigit() and 1 <= int(raw) <= 99):
        raise FormError("request_number", "补充材料要求的序号", "请填写通知中的序号（1–99）。")
    answer = text(form, "answer", "答复")
    return await services.answer_information(
        person,
        review_pb2.AnswerInformationRequest(
            item_id=item_id_for(status.decision.decision_id),
            credit_code=status.application.firm.credit_code,
            request_number=int(raw),
            answer=answer,
        ),
    )


def decision_step(decision: Any, superseded: bool, successor: str) -> tuple[str, str, str]:
    """(when, what, detail) of one decision of an application: a computed
    decision, a reviewed one, or a re-decision at a policy version's
    adoption; each with its policy version, and whether it was superseded
    (已被取代: not the decision the application holds now)."""
    version = f"政策版本 {decision.policy_version or '（未注明）'}"
    outcome = f"第{decision.clause}项 {OUTCOMES.get(decision.outcome, decision.outcome)}"
    if decision.max_award_fen:
        outcome += f"，上限 {yuan(decision.max_award_fen)}"
    when = ""
    if decision.HasField("review"):
        review = decision.review
        when = review.decided_at
        what = "人工审核结论"
        parts = [
            version,
            ITEM_STATUS.get(review.result, review.result),
            outcome,
            f"审核人 {'、'.join(review.reviewers)}",
            f"依据：{review.basis}",
        ]
        replaced = review.supersedes_decision_id
    elif decision.supersedes_decision_id:
        what = "新政策版本采用后重新决定"
        parts = [version, outcome]
        replaced = decision.supersedes_decision_id
    else:
        what = "系统决定"
        parts = [version, outcome]
        replaced = ""
    if replaced:
        parts.append(f"取代决定 {replaced}")
    if superseded:
        what += "（已被取代）"
        if successor:
            parts.append(f"由决定 {successor} 取代")
    return when, what, "；".join(parts)


def decision_steps(status: Any) -> list[tuple[str, str, str]]:
    """Every decision of the application, in the order intake read them
    (``ApplicationStatus.decisions``: the computed one, its review, a
    re-decision when a policy version was adopted and its review). Every one
    but the decision the application holds (``decision``) was superseded --
    intake shows the one that replaced it."""
    shown = status.decision
    decisions = list(status.decisions)
    if shown.decision_id and shown.decision_id not in {d.decision_id for d in decisions}:
        decisions.append(shown)  # an intake that lists no history: at least the decision it holds
    successors: dict[str, str] = {}
    for d in decisions:
        named = d.review.supersedes_decision_id if d.HasField("review") else d.supersedes_decision_id
        if named:
            successors.setdefault(named, d.decision_id)
    return [
        decision_step(
            d, bool(shown.decision_id) and d.decision_id != shown.decision_id, successors.get(d.decision_id, "")
        )
        for d in decisions
    ]


def timeline(status: Any) -> list[tuple[str, str, str]]:
    """(when, what, detail) of one application, in order."""
    events: list[tuple[str, str, str]] = []
    events.append((status.receipt.received_at or status.application.submitted_on, "提交并受理", ""))
    events.extend(decision_steps(status))
    grant = status.grant
    if grant.decision_id:
        events.append(("", "入账（预留额度）", f"核定 {yuan(grant.granted_fen)}"))
        if grant.notice_id:
            events.append((grant.payable_on or grant.withdrawn_on, "公示", f"公示 {grant.notice_id}"))
        if grant.withdrawn_on:
            events.append((grant.withdrawn_on, "撤回", grant.withdraw_reason))
        for t in sorted(grant.tranches, key=lambda t: t.number):
            what = f"第 {t.number + 1} 笔拨付 {yuan(t.amount_fen)}（{TRANCHE_STATUS.get(t.status, '')}）"
            events.append((t.paid_on or t.due_on, what, f"预算年度 {t.budget_year}"))
    return events


async def firm(services: Services, person: Person, code: str) -> dict[str, Any]:
    code = firm_of(person, code)
    if not code:
        raise FormError("credit_code", "统一社会信用代码", "必须填写。")
    ledger = await services.get_ledger(person, code)
    tranches = [t for g in ledger.grants for t in g.tranches]
    by_status: dict[str, int] = {}
    for t in tranches:
        label = TRANCHE_STATUS.get(t.status, "")
        by_status[label] = by_status.get(label, 0) + t.amount_fen
    proposals = await all_proposals(services, person, code) if person.role != "FINANCE" else None
    return {
        "credit_code": code,
        "ledger": ledger,
        "tranches": tranches,
        "by_status": by_status,
        "proposals": proposals,
    }


async def all_proposals(services: Services, person: Person, code: str) -> list[Any]:
    """A firm's 免申即享 proposals, newest first (every page)."""
    found: list[Any] = []
    token = ""
    for _ in range(MAX_PAGES):
        reply = await services.list_proposals(person, code, token)
        found.extend(reply.proposals)
        token = reply.next_page_token
        if not token:
            break
    return found


async def proposals(services: Services, person: Person, query: Mapping[str, str]) -> dict[str, Any]:
    """免申即享 proposals newest first, one page: an ENTERPRISE's own; for
    staff one firm's or every firm's, in one state or any (issue 15)."""
    firm = firm_of(person, str(query.get("credit_code") or ""))
    state = state_number(query, PROPOSAL_STATE)
    token = page_token(query)
    reply = await services.list_proposals(person, firm, token, state=int(state or 0), page_size=SEARCH_PAGE_SIZE)
    return {
        "proposals": list(reply.proposals),
        "filters": {"credit_code": firm, "state": state},
        "next_page_token": reply.next_page_token,
    }


async def cancel_tranche(services: Services, person: Person, code: str, form: Mapping[str, Any]) -> Any:
    firm_of(person, code)
    tranche_id = identifier(str(form.get("tranche_id") or ""), "tranche_id", "拨付笔次")
    reason = text(form, "reason", "取消理由", limit=REASON_MAX)
    return await services.cancel_tranche(person, tranche_id, reason)


def values(form: Mapping[str, Any], name: str) -> list[str]:
    """A field that may be sent several times (checkboxes)."""
    value = form.get(name)
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


async def open_recovery(services: Services, person: Person, code: str, form: Mapping[str, Any]) -> Any:
    """追回: the grant's application, the paid tranches (none chosen: every paid
    one), the amount in 元, the reason, and whether the award is void."""
    firm_of(person, code)
    request = payout_pb2.OpenRecoveryRequest(
        application_id=identifier(str(form.get("application_id") or ""), "application_id", "申请编号"),
        tranche_ids=[identifier(t, "tranche_id", "拨付笔次") for t in values(form, "tranche_id")],
        amount_fen=amount_fen(form, "amount_yuan", "追回金额（元）"),
        reason=text(form, "reason", "追回理由", limit=REASON_MAX),
        void_award=str(form.get("void_award") or "") == "1",
    )
    return await services.open_recovery(person, request)


# -- finance ----------------------------------------------------------------------------------


def tranche_filters(query: Mapping[str, str]) -> tuple[str, str, list[int], dict[str, str]]:
    due_from = day(str(query.get("due_from") or ""), "due_from", "应付日期（起）")
    due_to = day(str(query.get("due_to") or ""), "due_to", "应付日期（止）")
    if due_from and due_to and due_from > due_to:
        raise FormError("due_to", "应付日期（止）", "不能早于起始日期。")
    status = str(query.get("status") or "").strip()
    if status and status not in TRANCHE_STATUS_CODES:
        raise FormError("status", "状态", "不是可选的状态。")
    statuses = [TRANCHE_STATUS_CODES[status]] if status else []
    return due_from, due_to, statuses, {"due_from": due_from, "due_to": due_to, "status": status}


async def all_tranches(services: Services, person: Person, query: Mapping[str, str]) -> tuple[list[Any], dict]:
    due_from, due_to, statuses, shown = tranche_filters(query)
    out: list[Any] = []
    token = ""
    for _ in range(MAX_PAGES):
        reply = await services.list_tranches(person, due_from, due_to, statuses, token)
        out.extend(reply.tranches)
        token = reply.next_page_token
        if not token:
            break
    out.sort(key=lambda t: (t.due_on, t.tranche_id))
    return out, shown


#: The finance page's recovery filter (ListRecoveries' RecoveryFilter).
RECOVERY_FILTERS = {"open": (1, "追回中"), "closed": (2, "已追回"), "all": (0, "全部")}


async def recoveries(services: Services, person: Person, query: Mapping[str, str]) -> tuple[list[Any], str]:
    """Recoveries (追回) across firms, newest opened first (every page): open by default."""
    shown = str(query.get("recoveries") or "open").strip()
    if shown not in RECOVERY_FILTERS:
        raise FormError("recoveries", "追回状态", "不是可选的状态（追回中、已追回、全部）。")
    out: list[Any] = []
    token = ""
    for _ in range(MAX_PAGES):
        reply = await services.list_recoveries(person, RECOVERY_FILTERS[shown][0], token)
        out.extend(reply.recoveries)
        token = reply.next_page_token
        if not token:
            break
    return out, shown


async def finance(services: Services, person: Person, query: Mapping[str, str]) -> dict[str, Any]:
    found_recoveries, recovery_filter = await recoveries(services, person, query)
    tranches, filters = await all_tranches(services, person, query)
    filters = {**filters, "recoveries": recovery_filter}
    totals: dict[str, int] = {}
    for t in tranches:
        label = TRANCHE_STATUS.get(t.status, "")
        totals[label] = totals.get(label, 0) + t.amount_fen
    return {
        "tranches": tranches,
        "filters": filters,
        "totals": totals,
        "recoveries": found_recoveries,
        **budget_years(tranches),
    }


#: The order of a year's bar: paid, then due, held, scheduled (cancelled is not outlay).
BAR_ORDER = (3, 2, 5, 1)
BAR_WIDTH = 560


def budget_years(tranches: Iterable[Any]) -> dict[str, Any]:
    """The tranches' amounts per budget year and status (a table), and the
    same as bars (x and width in pixels of BAR_WIDTH) for the page's SVG."""
    years: dict[int, dict[int, int]] = {}
    for t in tranches:
        row = years.setdefault(t.budget_year, {})
        row[t.status] = row.get(t.status, 0) + t.amount_fen
    longest = max((sum(row.get(s, 0) for s in BAR_ORDER) for row in years.values()), default=0)
    bars = []
    for year in sorted(years):
        x, segments = 0, []
        for status in BAR_ORDER:
            fen = years[year].get(status, 0)
            if fen and longest:
                width = max(1, fen * BAR_WIDTH // longest)
                segments.append({"status": status, "fen": fen, "x": x, "width": width})
                x += width
        bars.append({"year": year, "segments": segments, "outlay": sum(s["fen"] for s in segments)})
    return {"years": {y: years[y] for y in sorted(years)}, "bars": bars, "bar_width": BAR_WIDTH}


#: The columns of payout's `subsidy export-tranches` (subsidy/services/payout/adapters/export.py).
CSV_COLUMNS = (
    "tranche_id",
    "application_id",
    "credit_code",
    "clause",
    "number",
    "amount_fen",
    "amount_yuan",
    "due_on",
    "budget_year",
    "status",
    "paid_on",
    "payment_id",
)
#: What a spreadsheet takes as the start of a formula or a DDE call (as payout's export).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def text_cell(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


def tranches_csv(tranches: Iterable[Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    quoting_all = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(CSV_COLUMNS)
    for t in tranches:
        row = [
            text_cell(t.tranche_id),
            text_cell(t.application_id),
            text_cell(t.credit_code),
            text_cell(t.clause),
            str(t.number),
            str(t.amount_fen),
            yuan(t.amount_fen, fixed=True),
            text_cell(t.due_on),
            str(t.budget_year),
            text_cell(payout_pb2.TrancheStatus.Name(t.status).removeprefix("TRANCHE_STATUS_")),
            text_cell(t.paid_on),
            text_cell(t.payment_id),
        ]
        (quoting_all if any("\r" in cell for cell in row) else writer).writerow(row)
    return out.getvalue()


# -- operations: dead letters (OperationsService) ------------------------------------------

LETTER_STATES = ("PENDING", "REPLAYED", "DISCARDED")
#: The longest reason operations keeps for a replay or a discard.
LETTER_REASON_MAX = 500
_DLQ_TOPIC = re.compile(r"^subsidy\.[a-z_]+(\.[a-z_]+)*\.v\d+\.dlq$")


def dlq_topic(value: str) -> str:
    value = value.strip()
    if not _DLQ_TOPIC.match(value) or len(value) > ID_MAX:
        raise FormError("topic", "死信主题", "不是死信主题的名称（如 subsidy.applications.v1.dlq）。")
    return value


def letter_id_of(topic: str, partition: str, offset: str) -> str:
    """The letter's id from its URL: ``<dlq topic>/<partition>/<offset>``, each part checked."""
    topic = dlq_topic(topic)
    if not partition.isdigit() or not offset.isdigit() or len(partition) > 6 or len(offset) > 19:
        raise NotFound("死信：未找到（分区和位置须为非负整数）。")
    return f"{topic}/{int(partition)}/{int(offset)}"


async def dead_letter_topics(services: Services, person: Person) -> list[Any]:
    return list((await services.dead_letter_topics(person)).topics)


async def dead_letters(services: Services, person: Person, query: Mapping[str, str]) -> dict[str, Any]:
    topics = await dead_letter_topics(services, person)
    raw_topic = str(query.get("topic") or "").strip()
    if not raw_topic:
        # The first topic with letters waiting, else the first.
        waiting = [t.topic for t in topics if t.pending]
        raw_topic = waiting[0] if waiting else (topics[0].topic if topics else "")
    topic = dlq_topic(raw_topic)
    state = str(query.get("state") or "").strip().upper()
    if state and state not in LETTER_STATES:
        raise FormError("state", "处理状态", "只能是 待处理、已重放 或 已丢弃。")
    page_token = str(query.get("page_token") or "")
    if len(page_token) > 1024:
        raise FormError("page_token", "页码", "无效。")
    reply = await services.list_dead_letters(person, topic, state, page_token)
    return {
        "topics": topics,
        "topic": topic,
        "state": state,
        "letters": list(reply.letters),
        "next_page_token": reply.next_page_token,
    }


async def dead_letter(services: Services, person: Person, letter_id: str) -> dict[str, Any]:
    reply = await services.get_dead_letter(person, letter_id)
    return {"letter": reply.letter, "audit": list(reply.audit)}


async def replay_dead_letter(services: Services, person: Person, letter_id: str, form: Mapping[str, Any]) -> Any:
    reason = text(form, "reason", "重放说明", required=False, limit=LETTER_REASON_MAX)
    return await services.replay_dead_letter(person, letter_id, reason)


async def discard_dead_letter(services: Services, person: Person, letter_id: str, form: Mapping[str, Any]) -> Any:
    reason = text(form, "reason", "丢弃理由", limit=LETTER_REASON_MAX)
    return await services.discard_dead_letter(person, letter_id, reason)


# -- budget: the outlay per budget year, a policy version's difference and shadow figures ----

#: The outlay's kinds as GetOutlay answers them, in the chart's order, with their Chinese names.
OUTLAY_KINDS = {
    "paid": "已支付",
    "payable": "应付及已排期",
    "held": "暂缓",
    "reserved": "已预留（待公示）",
    "recovered": "已追回",
}
CHANGE_KINDS = {
    "effective_from": "生效日期",
    "parameter": "参数",
    "retired": "条款停止执行",
    "restored": "条款恢复执行",
}
OUTLAY_BAR_WIDTH = 560


def year(value: str, name: str, label: str) -> int:
    value = value.strip()
    if not value:
        return 0
    if not value.isdigit() or not 2000 <= int(value) <= 2100:
        raise FormError(name, label, "请填写 2000 至 2100 之间的年份。")
    return int(value)


def outlay_chart(years: Iterable[Any]) -> list[dict[str, Any]]:
    """Each year as grouped bars, one per kind (width in pixels of OUTLAY_BAR_WIDTH)."""
    rows = list(years)
    largest = max((getattr(y, f"{k}_fen") for y in rows for k in OUTLAY_KINDS), default=0)
    chart = []
    for y in rows:
        bars = []
        for kind in OUTLAY_KINDS:
            fen = getattr(y, f"{kind}_fen")
            width = max(1, fen * OUTLAY_BAR_WIDTH // largest) if fen and largest else 0
            bars.append({"kind": kind, "fen": fen, "width": width})
        chart.append({"year": y.budget_year, "bars": bars})
    return chart


async def budget(services: Services, policy: Any, person: Person, query: Mapping[str, str]) -> dict[str, Any]:
    from_year = year(str(query.get("from_year") or ""), "from_year", "预算年度（起）")
    to_year = year(str(query.get("to_year") or ""), "to_year", "预算年度（止）")
    if from_year and to_year and from_year > to_year:
        raise FormError("from_year", "预算年度（起）", "不能晚于预算年度（止）。")
    listed = policy.listed()
    ids = [i for i, _ in listed]
    candidates = [i for i, status in listed if status != "adopted"]
    version = str(query.get("version") or (candidates[0] if candidates else (ids[0] if ids else ""))).strip()
    if version and version not in ids:
        raise FormError("version", "政策版本", f"没有这个版本（现有：{'、'.join(ids)}）。")
    against = str(query.get("against") or "").strip() or (policy.base_of(version) if version else "")
    if against and against not in ids:
        raise FormError("against", "对比版本", f"没有这个版本（现有：{'、'.join(ids)}）。")
    changes = policy.changes(against, version) if version and against else []
    reply = await services.get_outlay(person, from_year, to_year)
    years = list(reply.years)
    try:
        shadow, shadow_error = await services.shadow_difference(person), None
    except Conflict as exc:  # no candidate in shadow on this instance
        shadow, shadow_error = None, exc.message
    except Unavailable as exc:
        shadow, shadow_error = None, exc.message
    return {
        "years": years,
        "total": reply.total,
        "chart": outlay_chart(years),
        "bar_width": OUTLAY_BAR_WIDTH,
        "filters": {"from_year": from_year or "", "to_year": to_year or ""},
        "versions": listed,
        "version": version,
        "against": against,
        "changes": changes,
        "shadow": shadow,
        "shadow_error": shadow_error,
    }


# -- policy versions: the register, a candidate in shadow, adoption (four eyes) --------------

#: ``<version id>+<digest>``, as ``subsidy policy versions`` prints it and AdoptVersion takes it.
_POLICY_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\+[0-9a-f]{6,64}$")


@dataclasses.dataclass(frozen=True)
class VersionView:
    """One version as the policy-versions page shows it: the register's
    entry as the console reads it (``info``) and its adoption state as
    eligibility sees it now (ListVersions), or, when eligibility cannot say,
    the register's status and the step just taken."""

    info: PolicyVersionInfo
    #: The status shown (draft, candidate, adopted, retired).
    status: str
    #: Adopted through eligibility's trail but not yet recorded in policy/versions.yaml.
    unregistered: bool = False
    effective_until: str = ""
    #: PendingProposal waiting for a second reviewer, or None.
    proposal: Any = None
    #: VersionAdoption of the trail (who proposed and approved, when), or None.
    adoption: Any = None
    #: The ``<id>+<digest>`` eligibility reads when it is not the one listed here.
    eligibility_version: str = ""
    #: What a REVIEWER may do: propose, approve, await_other (their own proposal),
    #: adopted, unreadable (its files do not load); "" for the other roles.
    action: str = ""

    @property
    def status_name(self) -> str:
        return VERSION_STATUS.get(self.status, self.status)

    @property
    def version_id(self) -> str:
        return self.info.version_id


def _action(person: Person, info: PolicyVersionInfo, status: str, proposal: Any) -> str:
    if person.role != "REVIEWER" or info.status != "candidate":
        return ""
    if status == "adopted":
        return "adopted"
    if not info.policy_version:
        return "unreadable"
    if proposal is not None and proposal.files_unchanged and proposal.policy_version == info.policy_version:
        return "await_other" if proposal.proposed_by == person.subject else "approve"
    return "propose"


def version_views(person: Person, listed: Iterable[PolicyVersionInfo], state: Any, outcome: Any) -> list[VersionView]:
    """The register's versions with their adoption state: eligibility's
    (``state``, a ListVersionsResponse) when it answered, else the register's
    statuses with the step just taken (``outcome``, an AdoptVersionResponse)
    laid over them, since the register records an adoption only once its
    entry is committed."""
    listed = list(listed)
    views = []
    if state is not None:
        seen = {v.version_id: v for v in state.versions}
        for info in listed:
            known = seen.get(info.version_id)
            if known is None:  # listed here, not by eligibility (another register)
                views.append(VersionView(info, info.status, effective_until=info.effective_until))
                continue
            proposal = known.proposal if known.HasField("proposal") else None
            adoption = known.adoption if known.HasField("adoption") else None
            views.append(
                VersionView(
                    info,
                    known.status,
                    unregistered=known.status == "adopted" and info.status != "adopted",
                    effective_until=known.effective_until,
                    proposal=proposal,
                    adoption=adoption,
                    eligibility_version=(
                        (known.policy_version or f"（无法读取：{known.problem}）")
                        if known.policy_version != info.policy_version
                        else ""
                    ),
                    action=_action(person, info, known.status, proposal),
                )
            )
        return views
    # The step just taken, over the register's statuses: its answer is all the console knows.
    step_id = outcome.version_id if outcome is not None else ""
    proposed = adopted = None
    if outcome is not None and outcome.status == "proposed":
        proposed = policy_service_pb2.PendingProposal(
            policy_version=outcome.policy_version,
            proposed_by=outcome.proposed_by,
            proposed_at=outcome.proposed_at,
            files_unchanged=True,
        )
    elif outcome is not None and outcome.status == "adopted":
        adopted = policy_service_pb2.VersionAdoption(
            policy_version=outcome.policy_version,
            proposed_by=outcome.proposed_by,
            proposed_at=outcome.proposed_at,
            approved_by=outcome.approved_by,
            adopted_at=outcome.adopted_at,
            effective_from=outcome.effective_from,
            base=next((v.base for v in listed if v.version_id == step_id), ""),
        )
    for info in listed:
        status, until = info.status, info.effective_until
        proposal = proposed if info.version_id == step_id else None
        adoption = adopted if info.version_id == step_id else None
        if adoption is not None:
            status = "adopted"
        elif adopted is not None and info.version_id == adopted.base and not until:
            until = adopted.effective_from
        views.append(
            VersionView(
                info,
                status,
                unregistered=adoption is not None and info.status != "adopted",
                effective_until=until,
                proposal=proposal,
                adoption=adoption,
                action=_action(person, info, status, proposal),
            )
        )
    return views


async def policy_versions(services: Services, policy: Any, person: Person, outcome: Any = None) -> dict[str, Any]:
    """The register's versions as they are now (id, status, dates, the
    ``<id>+<digest>`` of their files, citations) with their adoption state
    as eligibility sees it (ListVersions: the pending proposal and who made
    it, the adoption and who approved it, the audit trail), which ones are
    adopted, and the running difference of the candidate in shadow
    (GetShadowDifference), or why there is none. With ``outcome`` (the
    AdoptVersionResponse of the step just taken) the step's answer is shown
    too; should eligibility not answer ListVersions, the version it
    proposed or adopted is shown so over the register's statuses."""
    listed = policy.versions()
    try:
        state, state_error = await services.list_versions(person), None
    except (Conflict, Unavailable, Forbidden) as exc:  # eligibility down or older: the register still shows
        state, state_error = None, exc.message
    views = version_views(person, listed, state, outcome)
    try:
        shadow, shadow_error = await services.shadow_difference(person), None
    except (Conflict, Unavailable) as exc:  # no candidate in shadow, or eligibility down: the list still shows
        shadow, shadow_error = None, exc.message
    # the shadow's "<id>+<digest>": which listed version it is, and whether its files are the ones listed here
    shadow_id = shadow.shadow_version.partition("+")[0] if shadow else ""
    digests = {v.version_id: v.policy_version for v in listed}
    years = list(shadow.years) if shadow else []
    return {
        "versions": views,
        "adopted": [v for v in views if v.status == "adopted"],
        "candidates": [v for v in views if v.info.status == "candidate"],
        "state": state,
        "state_error": state_error,
        "history": list(reversed(state.events)) if state is not None else [],
        "shadow": shadow,
        "shadow_error": shadow_error,
        "shadow_id": shadow_id,
        "shadow_other_files": bool(shadow) and digests.get(shadow_id, "") != shadow.shadow_version,
        "shadow_total": {
            "adopted_fen": sum(y.adopted_fen for y in years),
            "shadow_fen": sum(y.shadow_fen for y in years),
            "difference_fen": sum(y.difference_fen for y in years),
        },
    }


def adopt_request(version_id: str, form: Mapping[str, Any], listed: Iterable[Any]) -> Any:
    """The AdoptVersion request of one reviewer's step: the version, the
    ``<id>+<digest>`` the reviewer was shown (so the approval is of the files
    seen; eligibility refuses it if they changed since) and the reason.
    ``open_applications`` and ``noticed_awards`` stay empty: eligibility
    finds the applications not yet past their notice and the awards past it
    itself (policy_service.proto; docs/console.md, policy versions)."""
    version_id = identifier(version_id, "version_id", "政策版本")
    versions = {v.version_id: v for v in listed}
    if version_id not in versions:
        raise FormError("version_id", "政策版本", f"没有这个版本（现有：{'、'.join(versions)}）。")
    version = versions[version_id]
    if version.status != "candidate":
        raise FormError("version_id", "政策版本", f"只有候选版本可以采纳，该版本为“{version.status_name}”。")
    shown = str(form.get("policy_version") or "").strip()
    if not shown:
        raise FormError("policy_version", "政策版本标识", "必须填写：您审阅的版本标识（版本编号+摘要）。")
    if not _POLICY_VERSION.match(shown) or shown.partition("+")[0] != version_id:
        raise FormError(
            "policy_version", "政策版本标识", f"须为本版本的标识（{version_id}+摘要），即本页显示、您审阅过的那一个。"
        )
    reason = text(form, "reason", "采纳理由", limit=REASON_MAX)
    return policy_service_pb2.AdoptVersionRequest(version_id=version_id, policy_version=shown, reason=reason)


async def adopt_version(
    services: Services, policy: Any, person: Person, version_id: str, form: Mapping[str, Any]
) -> Any:
    """One REVIEWER's step: the first proposes, a second, different one
    approves (eligibility decides which from its audit trail and refuses the
    proposer approving their own proposal). Returns AdoptVersionResponse:
    who proposed and approved when, and once adopted the re-decisions and
    the adoption report."""
    return await services.adopt_version(person, adopt_request(version_id, form, policy.versions()))
