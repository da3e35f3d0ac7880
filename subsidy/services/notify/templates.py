"""The Chinese texts of the notifications: one ``string.Template`` per event
kind for the subject, the e-mail/webhook body and the short SMS text.

``render(event, titles, ...)`` turns an event's fact (notify's own values,
model.py) into the template values: amounts from integer fen to 元
(``2,962,962.96元``), dates to ``2026年1月15日``, the clause with its title
from the policy, the outcome in words and the reasons one per line.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from string import Template

from subsidy.core.domain import Reason
from subsidy.core.money import yuan
from subsidy.services.notify import model
from subsidy.services.notify.model import (
    DecisionMade,
    Event,
    GrantRecorded,
    Rendered,
    TrancheCancelled,
    TrancheDue,
    TranchePaid,
    TrancheScheduled,
)

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
    model.DECISION: Template(
        "【松江区经委】贵单位申请$application_id$clause_short评审结果：$outcome$ceiling_short。详见邮件。"
    ),
    model.GRANT_RECORDED: Template(
        "【松江区经委】贵单位申请$application_id$clause_short核定资助$granted，分$tranche_count期拨付。"
    ),
    model.TRANCHE_SCHEDULED: Template("【松江区经委】申请$application_id第$ordinal期$amount已排期，预计$due_on拨付。"),
    model.TRANCHE_DUE: Template("【松江区经委】资助款$amount$clause_short已到拨付日期$due_on。"),
    model.TRANCHE_PAID: Template("【松江区经委】资助款$amount$clause_short已于$paid_on拨付，请查收。"),
    model.TRANCHE_CANCELLED: Template("【松江区经委】资助款$amount$clause_short已取消：$reason"),
}


def date_zh(day: dt.date | None) -> str:
    """2026-01-15 -> '2026年1月15日'; no date -> '未定'."""
    if day is None:
        return "未定"
    return f"{day.year}年{day.month}月{day.day}日"


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


def reasons_text(reasons: tuple[Reason, ...]) -> str:
    if not reasons:
        return "（无）"
    lines = []
    for r in reasons:
        where = "（一、适用范围）" if r.clause == "一" else (f"（第{r.clause}条）" if r.clause else "")
        lines.append(f"- {r.message or r.code}{where} [{r.code}]")
    return "\n".join(lines)


def _clause(clause: str, titles: Mapping[str, str]) -> dict[str, str]:
    return {
        "clause": clause or "—",
        "item": clause_item(clause),
        "clause_text": clause_text(clause, titles),
        "clause_short": f"（第{clause_item(clause)}条）" if clause else "",
    }


def _fact_values(fact: model.Fact, titles: Mapping[str, str]) -> dict[str, str]:
    """What each kind's templates say, from its fact."""
    if isinstance(fact, DecisionMade):
        eligible = fact.outcome == "ELIGIBLE"
        ceiling = yuan(fact.max_award_fen)
        return {
            "application_id": fact.application_id or "—",
            **_clause(fact.clause, titles),
            "outcome": OUTCOMES.get(fact.outcome, fact.outcome),
            "ceiling": ceiling if eligible else "不适用",
            "ceiling_short": f"，最高支持{ceiling}" if eligible else "",
            "decision_year": str(fact.decision_year),
            "submitted_on": date_zh(fact.submitted_on),
            "reasons": reasons_text(fact.reasons),
            "policy_version": fact.policy_version or "—",
        }
    values = {"outcome": STEPS[fact.KIND], **_clause(fact.clause, titles)}
    if isinstance(fact, GrantRecorded):
        return {
            **values,
            "application_id": fact.application_id or "—",
            "granted": yuan(fact.granted_fen),
            "ceiling": yuan(fact.max_award_fen),
            "tranche_count": str(fact.tranche_count),
            "decision_year": str(fact.decision_year),
            "reasons": reasons_text(fact.reasons),
            "policy_version": fact.policy_version or "—",
        }
    values.update(tranche_id=fact.tranche_id, amount=yuan(fact.amount_fen))
    if isinstance(fact, TrancheScheduled):
        return {
            **values,
            "application_id": fact.application_id or "—",
            "ordinal": str(fact.number + 1),
            "due_on": date_zh(fact.due_on),
            "budget_year": str(fact.budget_year),
        }
    if isinstance(fact, TrancheDue):
        return {**values, "due_on": date_zh(fact.due_on), "budget_year": str(fact.budget_year or "")}
    if isinstance(fact, TranchePaid):
        return {**values, "paid_on": date_zh(fact.paid_on), "payment_id": fact.payment_id or "—"}
    if isinstance(fact, TrancheCancelled):
        return {**values, "cancelled_on": date_zh(fact.cancelled_on), "reason": fact.reason or "未说明"}
    raise TypeError(f"no texts for {type(fact).__name__}")  # pragma: no cover - Fact is closed


def values(event: Event, titles: Mapping[str, str], firm_name: str = "") -> dict[str, str]:
    return {
        "programme": PROGRAMME,
        "firm": firm_name or f"统一社会信用代码为 {event.credit_code} 的单位",
        "event_id": event.event_id,
        "credit_code": event.credit_code,
        **_fact_values(event.fact, titles),
    }


def render(event: Event, titles: Mapping[str, str], firm_name: str = "") -> Rendered:
    v = values(event, titles, firm_name)
    return Rendered(
        subject=SUBJECTS[event.kind].substitute(v),
        body=BODIES[event.kind].substitute(v),
        sms=SMS[event.kind].substitute(v),
    )
