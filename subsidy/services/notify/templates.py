"""The Chinese texts of the notifications: one ``string.Template`` per event
kind for the subject, the e-mail/webhook body and the short SMS text.

``render(event, titles, ...)`` turns an event's data into the template
values: amounts from integer fen to 元 (``2,962,962.96元``), ISO dates to
``2026年1月15日``, the clause with its title from the policy, the outcome in
words and the reasons one per line.
"""

from __future__ import annotations

import datetime as dt
from string import Template
from typing import Any, Mapping

from subsidy.core.money import yuan
from subsidy.services.notify import model
from subsidy.services.notify.model import Event, Rendered, TrancheInfo

PROGRAMME = "松江区工业互联网专项资金"

OUTCOMES = {
    "ELIGIBLE": "符合支持条件",
    "INELIGIBLE": "不符合支持条件",
    "NEEDS_REVIEW": "需人工复核",
    "REFERRED": "已转至相关基金办理",
}

# What happened, in words, per payout event kind (the "outcome" of that step).
STEPS = {
    model.GRANT_RECORDED: "资助已核定",
    model.TRANCHE_SCHEDULED: "拨付已排期",
    model.TRANCHE_DUE: "拨付已到期，待财政拨款",
    model.TRANCHE_PAID: "资金已拨付",
    model.TRANCHE_CANCELLED: "拨付已取消",
}

_FOOTER = "\n\n此邮件由系统自动发送，请勿直接回复。事件编号：$event_id\n松江区经济委员会 工业互联网专项资金管理系统\n"

SUBJECTS = {
    model.DECISION: Template("【$programme】申请 $application_id 评审结果：$outcome"),
    model.GRANT_RECORDED: Template("【$programme】申请 $application_id 资助核定：$granted"),
    model.TRANCHE_SCHEDULED: Template("【$programme】申请 $application_id 第$ordinal期拨付已排期：$amount"),
    model.TRANCHE_DUE: Template("【$programme】$tranche_id 拨付已到期：$amount"),
    model.TRANCHE_PAID: Template("【$programme】$tranche_id 资金已拨付：$amount"),
    model.TRANCHE_CANCELLED: Template("【$programme】$tranche_id 拨付已取消：$amount"),
}

BODIES = {
    model.DECISION: Template(
        "$firm：\n\n"
        "贵单位的申请 $application_id 已完成评审。\n\n"
        "条款：$clause_text\n"
        "结果：$outcome\n"
        "最高支持金额：$ceiling\n"
        "决定年度：$decision_year年\n"
        "申请日期：$submitted_on\n"
        "理由：\n$reasons\n\n"
        "政策版本：$policy_version" + _FOOTER
    ),
    model.GRANT_RECORDED: Template(
        "$firm：\n\n"
        "贵单位的申请 $application_id 资助金额已核定。\n\n"
        "条款：$clause_text\n"
        "结果：$outcome\n"
        "核定资助金额：$granted（最高支持金额 $ceiling）\n"
        "拨付期数：$tranche_count期\n"
        "决定年度：$decision_year年\n"
        "理由：\n$reasons\n\n"
        "政策版本：$policy_version" + _FOOTER
    ),
    model.TRANCHE_SCHEDULED: Template(
        "$firm：\n\n"
        "贵单位的申请 $application_id 第$ordinal期资金拨付已排期。\n\n"
        "条款：$clause_text\n"
        "结果：$outcome\n"
        "本期金额：$amount\n"
        "预计拨付日期：$due_on\n"
        "预算年度：$budget_year年\n"
        "拨付编号：$tranche_id" + _FOOTER
    ),
    model.TRANCHE_DUE: Template(
        "$firm：\n\n"
        "贵单位的资助款项 $tranche_id 已到拨付日期，财政部门将据此拨款。\n\n"
        "条款：$clause_text\n"
        "结果：$outcome\n"
        "本期金额：$amount\n"
        "拨付日期：$due_on\n"
        "预算年度：$budget_year年" + _FOOTER
    ),
    model.TRANCHE_PAID: Template(
        "$firm：\n\n"
        "贵单位的资助款项 $tranche_id 已拨付，请注意查收。\n\n"
        "条款：$clause_text\n"
        "结果：$outcome\n"
        "拨付金额：$amount\n"
        "拨付日期：$paid_on\n"
        "支付流水号：$payment_id" + _FOOTER
    ),
    model.TRANCHE_CANCELLED: Template(
        "$firm：\n\n"
        "贵单位的资助款项 $tranche_id 将不再拨付。\n\n"
        "条款：$clause_text\n"
        "结果：$outcome\n"
        "取消金额：$amount\n"
        "取消日期：$cancelled_on\n"
        "原因：$reason" + _FOOTER
    ),
}

SMS = {
    model.DECISION: Template("【松江区经委】贵单位申请$application_id$clause_short评审结果：$outcome$ceiling_short。详见邮件。"),
    model.GRANT_RECORDED: Template("【松江区经委】贵单位申请$application_id$clause_short核定资助$granted，分$tranche_count期拨付。"),
    model.TRANCHE_SCHEDULED: Template("【松江区经委】申请$application_id第$ordinal期$amount已排期，预计$due_on拨付。"),
    model.TRANCHE_DUE: Template("【松江区经委】资助款$amount$clause_short已到拨付日期$due_on。"),
    model.TRANCHE_PAID: Template("【松江区经委】资助款$amount$clause_short已于$paid_on拨付，请查收。"),
    model.TRANCHE_CANCELLED: Template("【松江区经委】资助款$amount$clause_short已取消：$reason"),
}


def date_zh(iso: str) -> str:
    """'2026-01-15' -> '2026年1月15日'; anything else as it is ('' -> '未定')."""
    if not iso:
        return "未定"
    try:
        d = dt.date.fromisoformat(iso)
    except ValueError:
        return iso
    return f"{d.year}年{d.month}月{d.day}日"


def clause_item(clause: str) -> str:
    """'10.cloud' -> '10'; '一' stays '一'."""
    return clause.split(".", 1)[0] if clause else "—"


def clause_text(clause: str, titles: Mapping[str, str]) -> str:
    """'第10条“鼓励企业上云上平台”（10.cloud）'."""
    if not clause:
        return "未知（未收到该笔拨付的排期通知）"
    if clause == "一":
        return "一、适用范围"
    title = titles.get(clause, "")
    head = f"第{clause_item(clause)}条“{title}”" if title else f"第{clause_item(clause)}条"
    return f"{head}（{clause}）" if "." in clause or not title else head


def reasons_text(reasons: list[Mapping[str, Any]]) -> str:
    if not reasons:
        return "（无）"
    lines = []
    for r in reasons:
        cited = r.get("clause", "")
        where = "（一、适用范围）" if cited == "一" else (f"（第{cited}条）" if cited else "")
        lines.append(f"- {r.get('message') or r.get('code', '')}{where} [{r.get('code', '')}]")
    return "\n".join(lines)


def values(event: Event, titles: Mapping[str, str], firm_name: str = "",
           tranche: TrancheInfo | None = None) -> dict[str, str]:
    d = event.data
    clause = d.get("clause") or (tranche.clause if tranche else "")
    application_id = d.get("application_id") or (tranche.application_id if tranche else "")
    number = d.get("number", tranche.number if tranche else None)
    out = {
        "programme": PROGRAMME,
        "firm": firm_name or f"统一社会信用代码为 {event.credit_code} 的单位",
        "event_id": event.event_id,
        "credit_code": event.credit_code,
        "application_id": application_id or "—",
        "clause": clause or "—",
        "item": clause_item(clause),
        "clause_text": clause_text(clause, titles),
        "outcome": OUTCOMES.get(d.get("outcome", ""), d.get("outcome", ""))
        if event.kind == model.DECISION else STEPS[event.kind],
        "ceiling": yuan(int(d.get("max_award_fen", 0))),
        "granted": yuan(int(d.get("granted_fen", 0))),
        "amount": yuan(int(d.get("amount_fen", 0))),
        "decision_year": str(d.get("decision_year", "")),
        "budget_year": str(d.get("budget_year") or (tranche.budget_year if tranche else "")),
        "tranche_count": str(d.get("tranche_count", 0)),
        "tranche_id": d.get("tranche_id", ""),
        "ordinal": str(int(number) + 1) if number is not None else "—",
        "submitted_on": date_zh(d.get("submitted_on", "")),
        "due_on": date_zh(d.get("due_on", "")),
        "paid_on": date_zh(d.get("paid_on", "")),
        "cancelled_on": date_zh(d.get("cancelled_on", "")),
        "payment_id": d.get("payment_id", "") or "—",
        "reason": d.get("reason", "") or "未说明",
        "reasons": reasons_text(list(d.get("reasons", []))),
        "policy_version": d.get("policy_version", "") or "—",
    }
    out["clause_short"] = f"（第{out['item']}条）" if clause else ""
    out["ceiling_short"] = f"，最高支持{out['ceiling']}"
    if event.kind == model.DECISION and d.get("outcome") != "ELIGIBLE":
        out["ceiling"] = "不适用"
        out["ceiling_short"] = ""
    return out


def render(event: Event, titles: Mapping[str, str], firm_name: str = "",
           tranche: TrancheInfo | None = None) -> Rendered:
    v = values(event, titles, firm_name, tranche)
    return Rendered(
        subject=SUBJECTS[event.kind].substitute(v),
        body=BODIES[event.kind].substitute(v),
        sms=SMS[event.kind].substitute(v),
    )
