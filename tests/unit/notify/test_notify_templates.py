"""The Chinese texts: clause with its title, outcome, reasons, amounts in 元, dates."""

from __future__ import annotations

import datetime as dt

from notify_fakes import TITLES, cancelled, decision, due, grant, paid, scheduled

from subsidy.core.domain import Reason
from subsidy.services.notify import handlers, templates

FIRM_NAME = "上海泗泾智造示范工厂有限公司"


def render(message, parse=handlers.parse_payout_event):
    return templates.render(parse(message.SerializeToString()), TITLES, FIRM_NAME)


def test_an_eligible_decision_states_clause_title_outcome_ceiling_reasons_and_date():
    r = render(decision(), handlers.parse_decision)
    assert "评审结果：符合支持条件" in r.subject and "SJ-2025-0001" in r.subject
    assert "第2条“鼓励培育行业性工业互联网平台”" in r.body
    assert "最高支持金额：2,962,962.96元" in r.body
    assert "按平台投入的30%计算" in r.body and "[AWARD_BASIS]" in r.body
    assert "2025年2月20日" in r.body and r.body.startswith(FIRM_NAME)
    assert "2,962,962.96元" in r.sms and "第2条" in r.sms


def test_an_ineligible_decision_gives_its_reasons_and_no_ceiling():
    r = render(decision("INELIGIBLE"), handlers.parse_decision)
    assert "不符合支持条件" in r.subject
    assert "最高支持金额：不适用" in r.body and "[KIND_NOT_ELIGIBLE]" in r.body
    assert "最高支持" not in r.sms


def test_a_decision_on_a_sub_clause_names_the_sub_clause_and_the_item_title():
    r = render(decision(clause="10.cloud"), handlers.parse_decision)
    assert "第10条“鼓励企业上云上平台”（10.cloud）" in r.body


def test_a_grant_states_granted_and_ceiling_in_yuan_and_the_ledger_reasons():
    r = render(grant(granted=100000050))
    assert "资助核定：1,000,000.50元" in r.subject
    assert "核定资助金额：1,000,000.50元（最高支持金额 2,962,962.96元）" in r.body
    assert "[CAP_PARTIAL]" in r.body and "拨付期数：3期" in r.body


def test_a_scheduled_tranche_states_amount_due_date_budget_year_and_its_ordinal():
    r = render(scheduled(number=1, amount=88888889))
    assert "第2期拨付已排期：888,888.89元" in r.subject
    assert "预计拨付日期：2027年1月15日" in r.body and "预算年度：2027年" in r.body
    assert "第2条“鼓励培育行业性工业互联网平台”" in r.body


def test_a_due_tranche_states_the_clause_it_carries():
    r = render(due())
    assert "拨付已到期" in r.subject and "第2条“鼓励培育行业性工业互联网平台”" in r.body


def test_a_paid_tranche_names_the_clause_it_carries():
    r = render(paid())
    assert "资金已拨付：1,185,185.18元" in r.subject
    assert "第2条“鼓励培育行业性工业互联网平台”" in r.body and "（第2条）" in r.sms
    assert "2026年1月20日" in r.body and "PAY-0001" in r.body


def test_a_cancelled_tranche_names_the_clause_it_carries_and_the_reason():
    r = render(cancelled())
    assert "原因：企业已迁出松江区" in r.body and "888,888.90元" in r.body
    assert "第2条“鼓励培育行业性工业互联网平台”" in r.body


def test_a_tranche_event_from_before_the_clause_was_carried_says_the_clause_is_unknown():
    for message in (cancelled(legacy=True), paid(legacy=True)):
        r = render(message)
        assert "条款：未知" in r.body and "第—条" not in r.sms and "（第" not in r.sms
    assert "原因：企业已迁出松江区" in render(cancelled(legacy=True)).body


def test_whole_yuan_amounts_have_no_fen_digits():
    assert (
        templates.values(handlers.parse_payout_event(scheduled(amount=500000000).SerializeToString()), TITLES)["amount"]
        == "5,000,000元"
    )


def test_dates_are_written_in_chinese_and_a_missing_one_is_undetermined():
    assert templates.date_zh(dt.date(2026, 1, 5)) == "2026年1月5日"
    assert templates.date_zh(None) == "未定"
    undated = scheduled()
    undated.tranche_scheduled.due_on = ""
    assert "预计拨付日期：未定" in render(undated).body


def test_a_reason_without_a_message_shows_its_code_and_one_citing_the_scope_says_so():
    assert templates.reasons_text((Reason("NO_TEXT", "", ""), Reason("OUT_OF_SCOPE", "一", "不在本区"))) == (
        "- NO_TEXT [NO_TEXT]\n- 不在本区（一、适用范围） [OUT_OF_SCOPE]"
    )
    assert templates.reasons_text(()) == "（无）"
