"""The Chinese texts of the notifications: one ``string.Template`` per event
kind for the subject, the e-mail/webhook body and the short SMS text (and
one more set for the GrantRecorded of a RESERVED grant). Review and the
public notice (issue 12): under review, the review's result (amount and
basis, or reasons), the firm's own lines on a notice list (never another
firm's), the objection's outcome, payable. Issue 13: a tranche held by
the release gate (why, what to do, the grace's last day), released, a
recovery (追回) opened, a 免申即享 proposal made (what to confirm, until
when) and one expired.

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
    DecisionUnderReview,
    Event,
    GrantAdjusted,
    GrantPayable,
    GrantRecorded,
    InformationRequested,
    NoticeListed,
    ObjectionResolved,
    ProposalCreated,
    ProposalExpired,
    RecoveryOpened,
    Rendered,
    ReviewDecided,
    TrancheCancelled,
    TrancheDue,
    TrancheHeld,
    TranchePaid,
    TrancheReleased,
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
    model.GRANT_PAYABLE: "公示期满，资助可拨付",
    model.TRANCHE_HELD: "拨付已暂停",
    model.TRANCHE_RELEASED: "暂停已解除，资金待拨付",
    model.RECOVERY_OPENED: "资金追回",
    model.GRANT_ADJUSTED: "资助金额已按新政策版本调整",
}

#: A GrantRecorded of a RESERVED grant (since the notice gate): its own texts.
GRANT_RESERVED = "grant_recorded.reserved"

#: Why a decision goes to review (decision.proto: review_reasons), in words.
REVIEW_REASONS = {
    "NEEDS_REVIEW_OUTCOME": "该条款的支持金额须由审核人员核定",
    "ABOVE_FOUR_EYES_THRESHOLD": "支持金额达到双人复核标准，须经两名审核人员审核",
    "REGISTRY_FACTS_CHANGED": "企业登记信息在申请后发生变化，须重新核实",
    "POLICY_VERSION_IN_NOTICE": "公示期间政策版本调整，调整后的金额须经审核后重新公示",
}

REVIEW_RESULTS = {"APPROVED": "审核通过", "REJECTED": "审核未通过"}

RESOLUTIONS = {
    "UPHELD": "异议成立，该项资助已撤销，不予拨付",
    "DISMISSED": "异议不成立，该项资助按公示结果继续办理",
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

SUBJECTS.update(
    {
        GRANT_RESERVED: Template("【$programme】申请 $application_id 资助核定：$granted（待公示）"),
        model.UNDER_REVIEW: Template("【$programme】申请 $application_id 已转人工审核"),
        model.REVIEW_DECIDED: Template("【$programme】申请 $application_id 审核结果：$result_text"),
        model.NOTICE_LISTED: Template("【$programme】贵单位资助项目已列入公示名单（$notice_id）"),
        model.OBJECTION_RESOLVED: Template("【$programme】公示异议处理结果：$resolution_short"),
        model.GRANT_PAYABLE: Template("【$programme】申请 $application_id 公示期满，资助可拨付：$granted"),
        model.INFORMATION_REQUESTED: Template("【$programme】申请 $application_id 需补充材料"),
    }
)

BODIES.update(
    {
        GRANT_RESERVED: Template(
            "$firm：\n\n"
            "贵单位的申请 $application_id 资助金额已核定并预留额度，列入公示名单、公示期满无异议后方可排期拨付。\n\n"
            "条款：$clause_text\n"
            "结果：资助已核定，待公示\n"
            "核定资助金额：$granted（最高支持金额 $ceiling）\n"
            "决定年度：$decision_year年\n"
            "理由：\n$reasons\n\n"
            "政策版本：$policy_version" + _FOOTER
        ),
        model.UNDER_REVIEW: Template(
            "$firm：\n\n"
            "贵单位的申请 $application_id 已完成系统评审，须由审核人员人工审核；审核完成前不核定、不拨付资金。\n\n"
            "条款：$clause_text\n"
            "系统评审结果：$outcome\n"
            "需人工审核的原因：\n$review_reasons\n"
            "申请日期：$submitted_on\n\n"
            "审核结果将另行通知。\n\n"
            "政策版本：$policy_version" + _FOOTER
        ),
        model.REVIEW_DECIDED: Template(
            "$firm：\n\n"
            "贵单位的申请 $application_id 已完成人工审核。\n\n"
            "条款：$clause_text\n"
            "审核结果：$result_text\n"
            "核定支持金额：$amount\n"
            "审核依据：$basis\n"
            "理由：\n$reasons\n"
            "审核日期：$decided_on\n\n"
            "$next_step\n\n"
            "政策版本：$policy_version" + _FOOTER
        ),
        model.NOTICE_LISTED: Template(
            "$firm：\n\n"
            "贵单位的以下资助项目已列入公示名单（公示编号 $notice_id），"
            "公示期自$period_first_day起至$period_last_day止。公示期内无异议的，期满次日起可拨付。\n\n"
            "$lines\n\n"
            "公示日期：$published_on" + _FOOTER
        ),
        model.OBJECTION_RESOLVED: Template(
            "$firm：\n\n"
            "针对贵单位公示项目（公示编号 $notice_id，决定编号 $decision_id）的异议已处理完毕。\n\n"
            "处理结果：$resolution_text\n"
            "处理说明：$reasons_text\n"
            "处理日期：$resolved_on" + _FOOTER
        ),
        model.GRANT_PAYABLE: Template(
            "$firm：\n\n"
            "贵单位的申请 $application_id 公示期满无异议，资助自$payable_on起可拨付，分$tranche_count期拨付，"
            "各期拨付排期另行通知。\n\n"
            "条款：$clause_text\n"
            "结果：$outcome\n"
            "核定资助金额：$granted\n"
            "公示编号：$notice_id\n"
            "可拨付日期：$payable_on" + _FOOTER
        ),
        model.INFORMATION_REQUESTED: Template(
            "$firm：\n\n"
            "贵单位的申请 $application_id 在人工审核中，审核人员需要贵单位补充以下材料（第$request_number次补充要求）：\n\n"
            "$missing\n\n"
            "请通过松江区企业服务门户提交补充材料。每次补充要求可答复一次；收到答复后审核继续。" + _FOOTER
        ),
    }
)

# -- policy versions (issue 14) ---------------------------------------------------------------

SUBJECTS[model.GRANT_ADJUSTED] = Template("【$programme】申请 $application_id 因政策调整重新核定：$granted（待公示）")
BODIES[model.GRANT_ADJUSTED] = Template(
    "$firm：\n\n"
    "本专项资金政策已采用新版本（$policy_version），经两名审核人员审定。贵单位的申请 $application_id "
    "尚未公示期满，已按新版本重新评审：核定资助由$previous_granted调整为$granted（$change_text）。"
    "调整后的金额将列入公示，公示期满无异议后拨付。\n\n"
    "条款：$clause_text\n"
    "评审结果：$result\n"
    "评审上限：$ceiling\n"
    "原核定资助：$previous_granted（政策版本 $previous_policy_version）\n"
    "现核定资助：$granted（政策版本 $policy_version）\n"
    "说明：$reasons" + _FOOTER
)

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
    GRANT_RESERVED: Template(
        "【松江区经委】贵单位申请$application_id$clause_short核定资助$granted，公示期满无异议后拨付。"
    ),
    model.UNDER_REVIEW: Template("【松江区经委】贵单位申请$application_id$clause_short已转人工审核，结果将另行通知。"),
    model.REVIEW_DECIDED: Template(
        "【松江区经委】贵单位申请$application_id$clause_short审核结果：$result_text$amount_short。详见邮件。"
    ),
    model.NOTICE_LISTED: Template(
        "【松江区经委】贵单位$count项资助已列入公示（$period_first_day至$period_last_day），期满无异议后拨付。"
    ),
    model.OBJECTION_RESOLVED: Template("【松江区经委】贵单位公示项目的异议处理结果：$resolution_short。详见邮件。"),
    model.GRANT_PAYABLE: Template(
        "【松江区经委】贵单位申请$application_id$clause_short公示期满，资助$granted自$payable_on起可拨付。"
    ),
    model.INFORMATION_REQUESTED: Template(
        "【松江区经委】贵单位申请$application_id需补充材料，请登录企业服务门户查看并提交。详见邮件。"
    ),
    model.GRANT_ADJUSTED: Template(
        "【松江区经委】因政策调整，贵单位申请$application_id$clause_short核定资助由$previous_granted调整为$granted，"
        "公示期满无异议后拨付。详见邮件。"
    ),
}


# -- release gates and recovery (issue 13, ADR 0017) -----------------------------------

SUBJECTS.update(
    {
        model.TRANCHE_HELD: Template("【$programme】$tranche_id 拨付已暂停：$amount"),
        model.TRANCHE_RELEASED: Template("【$programme】$tranche_id 暂停拨付已解除：$amount"),
        model.RECOVERY_OPENED: Template("【$programme】申请 $application_id 资金追回通知：$amount"),
    }
)

BODIES.update(
    {
        model.TRANCHE_HELD: Template(
            "$firm：\n\n"
            "贵单位申请 $application_id 的一笔资助款原定于$due_on拨付。拨付前核验发现，"
            "根据政务数据平台的最新信息$facts_as_of，贵单位已不符合《政策》一、适用范围"
            "（在松江区工商登记、税务登记且具有独立法人资格），该笔拨付自$held_on起暂停。\n\n"
            "条款：$clause_text\n"
            "结果：$outcome\n"
            "本期金额：$amount\n"
            "暂停原因：$reason\n"
            "宽限期截止：$hold_until\n"
            "拨付编号：$tranche_id\n\n"
            "如上述信息有误或情况已变化，请于$hold_until前到工商、税务登记机关办理相关登记，"
            "登记信息经政务数据平台更新后，该笔资金将恢复拨付。逾期仍不符合条件的，该笔拨付将被取消。"
            "如有疑问，请与松江区经济委员会联系。" + _FOOTER
        ),
        model.TRANCHE_RELEASED: Template(
            "$firm：\n\n"
            "贵单位申请 $application_id 的一笔资助款自$held_on起暂停拨付。经核验，贵单位的登记信息已恢复，"
            "符合《政策》一、适用范围，该笔拨付已于$released_on解除暂停，将按程序拨付。\n\n"
            "条款：$clause_text\n"
            "结果：$outcome\n"
            "本期金额：$amount\n"
            "拨付编号：$tranche_id" + _FOOTER
        ),
        model.RECOVERY_OPENED: Template(
            "$firm：\n\n"
            "经审核，贵单位申请 $application_id 已拨付的资助资金须予追回。\n\n"
            "条款：$clause_text\n"
            "追回金额：$amount\n"
            "追回原因：$reason\n"
            "涉及拨付：$tranches\n"
            "$void_text"
            "决定日期：$opened_on\n"
            "追回编号：$recovery_id\n\n"
            "区财政部门将与贵单位联系办理退款手续，请按通知将上述款项退回。"
            "如有异议，请与松江区经济委员会联系。" + _FOOTER
        ),
    }
)

SMS.update(
    {
        model.TRANCHE_HELD: Template(
            "【松江区经委】资助款$amount$clause_short暂停拨付：$reason。请于$hold_until前办理登记，逾期取消。详见邮件。"
        ),
        model.TRANCHE_RELEASED: Template("【松江区经委】资助款$amount$clause_short已解除暂停，将按程序拨付。"),
        model.RECOVERY_OPENED: Template(
            "【松江区经委】贵单位申请$application_id$clause_short须退回已拨资金$amount：$reason。详见邮件。"
        ),
    }
)


# -- 免申即享 proposals (issue 13, item 4) ---------------------------------------------

SUBJECTS.update(
    {
        model.PROPOSAL_CREATED: Template(
            "【$programme】免申即享：贵单位可享受$clause_title资助，请于$expires_on前确认"
        ),
        model.PROPOSAL_EXPIRED: Template("【$programme】免申即享提议 $proposal_id 已过期"),
    }
)

BODIES.update(
    {
        model.PROPOSAL_CREATED: Template(
            "$firm：\n\n"
            "根据政务数据平台的信息，贵单位符合《政策》$clause_text的支持条件，"
            "无需提交申请即可享受（免申即享）。\n\n"
            "依据：$fact_reference\n"
            "预计支持金额：$expected\n"
            "提议日期：$proposed_on\n"
            "确认截止：$expires_on\n"
            "提议编号：$proposal_id\n\n"
            "如需享受，请于$expires_on前通过松江区企业服务门户确认：同意以上述信息申请，并确认收款账户。"
            "确认后按规定程序审核、公示并拨付，实际金额以审核结果为准。"
            "如不需要，可在门户中放弃；逾期未确认的，提议自动失效。\n\n"
            "政策版本：$policy_version" + _FOOTER
        ),
        model.PROPOSAL_EXPIRED: Template(
            "$firm：\n\n"
            "贵单位的免申即享提议 $proposal_id 在确认期限内未获确认，已于$expired_on失效，不予办理。\n\n"
            "如仍符合条件，贵单位可通过松江区企业服务门户自行提出申请。" + _FOOTER
        ),
    }
)

SMS.update(
    {
        model.PROPOSAL_CREATED: Template(
            "【松江区经委】贵单位符合政策第$item条支持条件，预计可获$expected（免申即享），请于$expires_on前登录企业服务门户确认。"
        ),
        model.PROPOSAL_EXPIRED: Template(
            "【松江区经委】贵单位的免申即享提议$proposal_id未在期限内确认，已于$expired_on失效。"
        ),
    }
)


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
    if isinstance(fact, DecisionUnderReview):
        return {
            "application_id": fact.application_id or "—",
            **_clause(fact.clause, titles),
            "outcome": OUTCOMES.get(fact.outcome, fact.outcome),
            "review_reasons": "\n".join(f"- {REVIEW_REASONS.get(code, code)}" for code in fact.review_reasons)
            or "（未说明）",
            "submitted_on": date_zh(fact.submitted_on),
            "policy_version": fact.policy_version or "—",
        }
    if isinstance(fact, ReviewDecided):
        approved = fact.result == "APPROVED"
        return {
            "application_id": fact.application_id or "—",
            **_clause(fact.clause, titles),
            "result_text": REVIEW_RESULTS[fact.result],
            "amount": yuan(fact.amount_fen) if approved else "不适用",
            "amount_short": f"，核定支持{yuan(fact.amount_fen)}" if approved else "",
            "basis": fact.basis or "（未说明）",
            "reasons": reasons_text(fact.reasons),
            "decided_on": date_zh(fact.decided_on),
            "next_step": "核定金额将列入公示名单，公示期满无异议后方可拨付。"
            if approved
            else "如有疑问，请与松江区经济委员会联系。",
            "policy_version": fact.policy_version or "—",
        }
    if isinstance(fact, NoticeListed):
        lines = [
            f"- 申请 {line.application_id or '—'}，{clause_text(line.clause, titles)}，公示金额 {yuan(line.amount_fen)}"
            for line in fact.lines
        ]
        return {
            "notice_id": fact.notice_id or "—",
            "published_on": date_zh(fact.published_on),
            "period_first_day": date_zh(fact.period_first_day),
            "period_last_day": date_zh(fact.period_last_day),
            "lines": "\n".join(lines),
            "count": str(len(fact.lines)),
        }
    if isinstance(fact, InformationRequested):
        return {
            "application_id": fact.application_id or "—",
            "request_number": str(fact.request_number),
            "missing": fact.missing or "（未说明）",
            "clause_short": "",
        }
    if isinstance(fact, ObjectionResolved):
        return {
            "notice_id": fact.notice_id or "—",
            "decision_id": fact.decision_id or "—",
            "resolution_text": RESOLUTIONS[fact.resolution],
            "resolution_short": "异议成立，资助撤销" if fact.resolution == "UPHELD" else "异议不成立，按公示结果办理",
            "reasons_text": fact.reasons or "（未说明）",
            "resolved_on": date_zh(fact.resolved_on),
        }
    if isinstance(fact, ProposalCreated):
        title = titles.get(fact.clause, "")
        return {
            **_clause(fact.clause, titles),
            "clause_title": f"“{title}”" if title else f"第{clause_item(fact.clause)}条",
            "proposal_id": fact.proposal_id,
            "fact_reference": fact.fact_reference or "（未说明）",
            "expected": yuan(fact.expected_award_fen),
            "proposed_on": date_zh(fact.proposed_on),
            "expires_on": date_zh(fact.expires_on),
            "policy_version": fact.policy_version or "—",
        }
    if isinstance(fact, ProposalExpired):
        return {"proposal_id": fact.proposal_id, "expired_on": date_zh(fact.expired_on)}
    values = {"outcome": STEPS[fact.KIND], **_clause(fact.clause, titles)}
    if isinstance(fact, RecoveryOpened):
        return {
            **values,
            "application_id": fact.application_id or "—",
            "recovery_id": fact.recovery_id or "—",
            "amount": yuan(fact.amount_fen),
            "reason": fact.reason,
            "tranches": "、".join(fact.tranche_ids) or "—",
            "void_text": "该项资助已被认定无效，尚未拨付的款项不再拨付。\n" if fact.void_award else "",
            "opened_on": date_zh(fact.opened_on),
        }
    if isinstance(fact, GrantAdjusted):
        if fact.topped_up_fen:
            change = f"增加{yuan(fact.topped_up_fen)}"
        elif fact.released_fen:
            change = f"减少{yuan(fact.released_fen)}"
        else:
            change = "金额不变"
        return {
            **values,
            "application_id": fact.application_id or "—",
            "result": OUTCOMES.get(fact.outcome, fact.outcome or "—"),
            "granted": yuan(fact.granted_fen),
            "previous_granted": yuan(fact.previous_granted_fen),
            "ceiling": yuan(fact.max_award_fen),
            "change_text": change,
            "reasons": reasons_text(fact.reasons),
            "policy_version": fact.policy_version or "—",
            "previous_policy_version": fact.previous_policy_version or "—",
        }
    if isinstance(fact, GrantPayable):
        return {
            **values,
            "application_id": fact.application_id or "—",
            "granted": yuan(fact.granted_fen),
            "notice_id": fact.notice_id or "—",
            "payable_on": date_zh(fact.payable_on),
            "tranche_count": str(fact.tranche_count),
        }
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
    if isinstance(fact, TrancheHeld):
        return {
            **values,
            "application_id": fact.application_id or "—",
            "due_on": date_zh(fact.due_on),
            "held_on": date_zh(fact.held_on),
            "hold_until": date_zh(fact.hold_until),
            "facts_as_of": f"（截至{date_zh(fact.facts_as_of)}）" if fact.facts_as_of else "",
            "reason": fact.reason,
        }
    if isinstance(fact, TrancheReleased):
        return {
            **values,
            "application_id": fact.application_id or "—",
            "held_on": date_zh(fact.held_on),
            "released_on": date_zh(fact.released_on),
        }
    raise TypeError(f"no texts for {type(fact).__name__}")  # pragma: no cover - Fact is closed


def values(event: Event, titles: Mapping[str, str], firm_name: str = "") -> dict[str, str]:
    return {
        "programme": PROGRAMME,
        "firm": firm_name or f"统一社会信用代码为 {event.credit_code} 的单位",
        "event_id": event.event_id,
        "credit_code": event.credit_code,
        **_fact_values(event.fact, titles),
    }


def template_key(event: Event) -> str:
    """The event's kind, or GRANT_RESERVED for the GrantRecorded of a RESERVED
    grant of more than 0 fen (a grant of 0 — nothing to notice or pay — and a
    grant recorded before the notice gate keep the old texts)."""
    if isinstance(event.fact, GrantRecorded) and event.fact.state == "RESERVED" and event.fact.granted_fen > 0:
        return GRANT_RESERVED
    return event.kind


def render(event: Event, titles: Mapping[str, str], firm_name: str = "") -> Rendered:
    v = values(event, titles, firm_name)
    key = template_key(event)
    return Rendered(
        subject=SUBJECTS[key].substitute(v),
        body=BODIES[key].substitute(v),
        sms=SMS[key].substitute(v),
    )
