"""The eligibility core: (application, policy, date) -> decision.

Pure: no I/O, no clock, no Kafka. Every number comes from the policy data in
force on the evaluation date (by default the day the application was
submitted); every INELIGIBLE carries at least one reason citing its clause.
The history of the firm (caps used, one-time awards paid) is not looked at
here: the decision lists entitlements that the payout ledger checks.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable, Mapping

from subsidy.core import domain
from subsidy.core.domain import (
    ELIGIBLE,
    INELIGIBLE,
    NEEDS_REVIEW,
    REFERRED,
    Application,
    Decision,
    Entitlement,
    Reason,
)
from subsidy.core.money import floor_percent, pro_rata, yuan
from subsidy.core.policy import ClausePolicy, Policy

SCOPE_CLAUSE = "一"

KIND_NAMES = {
    "PLATFORM": "工业互联网平台",
    "SOLUTION_PROVIDER": "解决方案服务商",
    "INDUSTRIAL": "工业企业",
    "SOFTWARE": "软件企业",
    "SME": "中小企业",
    "PARK_OPERATOR": "园区运营单位",
    "INTERNET": "互联网企业",
    "SMART_HARDWARE": "智能硬件企业",
    "INDUSTRY_ASSOCIATION": "行业协会",
    "TRAINING_INSTITUTION": "培训机构",
}
LEVEL_NAMES = {"national": "国家级", "municipal": "市级", "district": "区级"}


class _Rule:
    """What a clause rule found: reasons against, or the lines of its award."""

    __slots__ = ("cp", "against", "lines", "basis", "outcome")

    def __init__(self, cp: ClausePolicy):
        self.cp = cp
        self.against: list[Reason] = []
        self.lines: list[tuple[dict[str, Any], int]] = []  # (extra scope parts, amount)
        self.basis = ""
        self.outcome = ELIGIBLE

    def refuse(self, code: str, detail: str) -> None:
        cp = self.cp
        self.against.append(Reason(code, cp.item, f"不符合第{cp.item}条“{cp.title}”：{detail}"))

    def award(self, amount: int, basis: str, **scope_parts: Any) -> None:
        self.lines.append((scope_parts, amount))
        self.basis = basis


def _add_years(day: dt.date, years: int) -> dt.date:
    """The same calendar date `years` later; 29 February maps to 1 March."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return dt.date(day.year + years, 3, 1)


def _capped(rule: _Rule, base: int, params: Mapping[str, Any], what: str) -> None:
    rate, cap = params["rate_percent"], params["cap_fen"]
    amount = floor_percent(base, rate)
    if amount > cap:
        rule.award(cap, f"{what}{yuan(base)}×{rate}%={yuan(amount)}，以上限{yuan(cap)}为限")
    else:
        rule.award(amount, f"{what}{yuan(base)}×{rate}%={yuan(amount)}（上限{yuan(cap)}）")


# ------------------------------------------------------------- clause rules


def _newly_introduced(rule: _Rule, app: Application) -> bool:
    if app.firm.introduced_on is None:
        rule.refuse("NOT_NEWLY_INTRODUCED", "登记信息中无引进日期，不属于新引进的平台或服务商")
        return False
    return True


def _rent(rule: _Rule, app: Application, params: Mapping[str, Any]) -> None:
    claim: domain.RentClaim = app.claim  # type: ignore[assignment]
    if not claim.recognized_key_platform:
        rule.refuse("NOT_RECOGNIZED_KEY_PLATFORM", "未经认定为符合工业互联网产业导向的重点平台或服务商")
    if not _newly_introduced(rule, app):
        return
    start, end = claim.lease_start, claim.lease_end
    if end < start:
        rule.refuse("LEASE_PERIOD_INVALID", f"租期结束日{end}早于开始日{start}")
        return
    introduced = app.firm.introduced_on
    years = params["window_years"]
    window_end = _add_years(introduced, years)  # first day no longer counted
    counted_from = max(start, introduced)
    counted_to = min(end, window_end - dt.timedelta(days=1))
    all_days = (end - start).days + 1
    counted_days = max(0, (counted_to - counted_from).days + 1)
    if counted_days == 0:
        rule.refuse(
            "NO_RENT_IN_WINDOW",
            f"租期{start}至{end}不在引进之日{introduced}起{years}年内（至{window_end - dt.timedelta(days=1)}）",
        )
        return
    if claim.rent_paid_fen == 0:
        rule.refuse("ZERO_AMOUNT", "租金为0")
        return
    counted_rent = pro_rata(claim.rent_paid_fen, counted_days, all_days)
    _capped(
        rule,
        counted_rent,
        params,
        f"租期{all_days}天中{counted_days}天在引进后{years}年内，计补租金{yuan(claim.rent_paid_fen)}×{counted_days}/{all_days}=",
    )


def _purchase(rule: _Rule, app: Application, params: Mapping[str, Any]) -> None:
    claim: domain.PurchaseClaim = app.claim  # type: ignore[assignment]
    if not claim.recognized_key_platform:
        rule.refuse("NOT_RECOGNIZED_KEY_PLATFORM", "未经认定为符合工业互联网产业导向的重点平台或服务商")
    _newly_introduced(rule, app)
    if not claim.for_own_use:
        rule.refuse("NOT_FOR_OWN_USE", "所购房产不是自用生产办公用房")
    if claim.purchase_price_fen == 0:
        rule.refuse("ZERO_AMOUNT", "购房金额为0")
    if not rule.against:
        _capped(rule, claim.purchase_price_fen, params, "购房金额")


def _industry_platform(rule: _Rule, app: Application, params: Mapping[str, Any]) -> None:
    claim: domain.IndustryPlatformClaim = app.claim  # type: ignore[assignment]
    base = max(0, claim.investment_fen - claim.infrastructure_investment_fen)
    threshold = params["threshold_fen"]
    if base <= threshold:
        rule.refuse(
            "BELOW_THRESHOLD",
            f"不含基建的投资额{yuan(base)}未超过{yuan(threshold)}",
        )
        return
    _capped(rule, base, params, "不含基建投资额")


def _benchmark_platform(rule: _Rule, app: Application, params: Mapping[str, Any]) -> None:
    claim: domain.BenchmarkPlatformClaim = app.claim  # type: ignore[assignment]
    amount = params["award_by_level_fen"].get(claim.level)
    if amount is None:
        rule.refuse("LEVEL_NOT_ELIGIBLE", f"{LEVEL_NAMES.get(claim.level, claim.level)}优秀平台不在奖励范围内")
        return
    rule.award(amount, f"获评{LEVEL_NAMES[claim.level]}工业互联网优秀平台，奖励{yuan(amount)}")


def _revenue_milestone(rule: _Rule, app: Application, params: Mapping[str, Any]) -> None:
    claim: domain.RevenueMilestoneClaim = app.claim  # type: ignore[assignment]
    revenue = claim.revenue_by_year_fen.get(claim.year, 0)
    earlier_best = max((v for y, v in claim.revenue_by_year_fen.items() if y < claim.year), default=0)
    crossed = []
    for threshold_text, award in sorted(params["award_by_threshold_fen"].items(), key=lambda kv: int(kv[0])):
        threshold = int(threshold_text)
        if revenue > threshold and earlier_best <= threshold:
            crossed.append(threshold)
            rule.lines.append(({"threshold": threshold}, award))
    if not crossed:
        rule.refuse(
            "NO_THRESHOLD_FIRST_CROSSED",
            f"{claim.year}年营业收入{yuan(revenue)}未首次突破5亿、10亿或20亿元",
        )
        return
    parts = "、".join(yuan(t) for t in crossed)
    total = sum(amount for _, amount in rule.lines)
    rule.basis = f"{claim.year}年营业收入{yuan(revenue)}首次突破{parts}，奖励合计{yuan(total)}"


def _jiebang_project(rule: _Rule, app: Application, params: Mapping[str, Any]) -> None:
    claim: domain.JiebangProjectClaim = app.claim  # type: ignore[assignment]
    if not claim.jiebang_selected:
        rule.refuse("NOT_JIEBANG_SELECTED", "项目未入选“揭榜挂帅”")
    if claim.total_investment_fen == 0:
        rule.refuse("ZERO_AMOUNT", "项目总投资为0")
    if not rule.against:
        _capped(rule, claim.total_investment_fen, params, "项目总投资")


RECOGNITION_NAMES = {
    "national_excellent_scenario": "国家级优秀场景",
    "municipal_benchmark_enterprise": "市级工业互联网标杆企业",
    "municipal_demo_scenario": "市级工业互联网示范应用场景",
    "municipal_smart_workshop": "市级智能制造车间",
}


def _benchmark_recognition(rule: _Rule, app: Application, params: Mapping[str, Any]) -> None:
    claim: domain.BenchmarkRecognitionClaim = app.claim  # type: ignore[assignment]
    amount = params["award_by_recognition_fen"].get(claim.recognition)
    name = RECOGNITION_NAMES.get(claim.recognition, claim.recognition)
    if amount is None:
        rule.refuse("RECOGNITION_NOT_ELIGIBLE", f"“{name}”不在奖励范围内")
        return
    rule.award(amount, f"获评{name}，奖励{yuan(amount)}")


def _integration_certification(rule: _Rule, app: Application, params: Mapping[str, Any]) -> None:
    claim: domain.IntegrationCertificationClaim = app.claim  # type: ignore[assignment]
    if claim.version not in params["versions"]:
        rule.refuse("CERTIFICATION_VERSION", f"两化融合管理体系认证版本为“{claim.version}”，须为{'、'.join(params['versions'])}")
    if claim.grade not in params["grades"]:
        rule.refuse("CERTIFICATION_GRADE", f"认证级别{claim.grade}未达到AA级以上")
    if not rule.against:
        amount = params["award_fen"]
        rule.award(amount, f"通过两化融合管理体系{claim.version}贯标认证{claim.grade}级，一次性奖励{yuan(amount)}")


def _dcmm(rule: _Rule, app: Application, params: Mapping[str, Any]) -> None:
    claim: domain.DcmmClaim = app.claim  # type: ignore[assignment]
    amount = params["award_by_level_fen"].get(str(claim.level))
    if amount is None:
        listed = "、".join(f"{k}级" for k in params["award_by_level_fen"])
        rule.refuse("DCMM_LEVEL_NOT_ELIGIBLE", f"DCMM {claim.level}级不在奖励范围内（限{listed}）")
        return
    rule.award(amount, f"通过DCMM {claim.level}级评估，奖励{yuan(amount)}")


def _cloud_adoption(rule: _Rule, app: Application, params: Mapping[str, Any]) -> None:
    claim: domain.CloudAdoptionClaim = app.claim  # type: ignore[assignment]
    if not claim.provider_listed_in_directory:
        rule.refuse("PROVIDER_NOT_IN_DIRECTORY", f"服务商未列入{claim.service_year or ''}年度《名录》")
    if claim.spend_fen == 0:
        rule.refuse("ZERO_AMOUNT", "上云支出为0")
    if not rule.against:
        cap = params["cap_fen"]
        amount = min(claim.spend_fen, cap)
        rule.award(amount, f"使用《名录》内云平台应用服务支出{yuan(claim.spend_fen)}，补贴{yuan(amount)}（上限{yuan(cap)}）")


def _flagged_award(flag: str, code: str, detail: str, basis: str) -> Callable[[_Rule, Application, Mapping[str, Any]], None]:
    def rule_fn(rule: _Rule, app: Application, params: Mapping[str, Any]) -> None:
        if not getattr(app.claim, flag):
            rule.refuse(code, detail)
            return
        amount = params["award_fen"]
        rule.award(amount, f"{basis}，奖励{yuan(amount)}")

    return rule_fn


def _identifier_usage(rule: _Rule, app: Application, params: Mapping[str, Any]) -> None:
    claim: domain.IdentifierUsageClaim = app.claim  # type: ignore[assignment]
    registrations, resolutions = params["registrations_threshold"], params["monthly_resolutions_threshold"]
    if claim.identifier_registrations <= registrations:
        rule.refuse("BELOW_THRESHOLD", f"标识注册量{claim.identifier_registrations}条未超过{registrations}条")
    if claim.monthly_avg_resolutions <= resolutions:
        rule.refuse("BELOW_THRESHOLD", f"月均解析量{claim.monthly_avg_resolutions}次未超过{resolutions}次")
    if not rule.against:
        amount = params["award_fen"]
        rule.award(amount, f"标识注册量超{registrations}条且月均解析量超{resolutions}次，奖励{yuan(amount)}")


CARRIER_NAMES = {"innovation_center": "创新中心", "training_base": "人才实训基地", "key_lab": "重点实验室", "joint_lab": "联合实验室"}


def _innovation_carrier(rule: _Rule, app: Application, params: Mapping[str, Any]) -> None:
    claim: domain.InnovationCarrierClaim = app.claim  # type: ignore[assignment]
    if claim.level not in params["levels"]:
        rule.refuse("LEVEL_NOT_ELIGIBLE", f"{LEVEL_NAMES.get(claim.level, claim.level)}认定不在补贴范围内（须市级以上）")
    if claim.carrier_type not in params["carrier_types"]:
        rule.refuse("CARRIER_TYPE_NOT_ELIGIBLE", f"载体类型“{claim.carrier_type}”不在补贴范围内")
    if not rule.against:
        amount = params["award_fen"]
        rule.award(
            amount,
            f"经认定为{LEVEL_NAMES[claim.level]}{CARRIER_NAMES.get(claim.carrier_type, claim.carrier_type)}，一次性开办费补贴{yuan(amount)}",
        )


def _needs_review(basis: str) -> Callable[[_Rule, Application, Mapping[str, Any]], None]:
    def rule_fn(rule: _Rule, app: Application, params: Mapping[str, Any]) -> None:
        rule.outcome = NEEDS_REVIEW
        rule.basis = basis

    return rule_fn


def _referred(rule: _Rule, app: Application, params: Mapping[str, Any]) -> None:
    rule.outcome = REFERRED
    rule.basis = "由上海临松工业互联网创业投资基金按其自身规则投资，本政策不直接给予资金，已转介"


RULES: dict[str, Callable[[_Rule, Application, Mapping[str, Any]], None]] = {
    "1.rent": _rent,
    "1.purchase": _purchase,
    "2": _industry_platform,
    "3": _benchmark_platform,
    "4": _revenue_milestone,
    "6": _jiebang_project,
    "7": _benchmark_recognition,
    "8": _integration_certification,
    "9": _dcmm,
    "10.cloud": _cloud_adoption,
    "10.park": _flagged_award(
        "recognized_municipal_benchmark_park",
        "NOT_RECOGNIZED_BENCHMARK_PARK",
        "园区未获评市级工业互联网标杆园区",
        "园区获评市级工业互联网标杆园区",
    ),
    "11.node": _flagged_award(
        "connected_to_national_top_node",
        "NODE_NOT_CONNECTED",
        "二级节点未完成与国家顶级节点对接",
        "标识解析二级节点完成与国家顶级节点对接",
    ),
    "11.identifiers": _identifier_usage,
    "12": _innovation_carrier,
    "13": _needs_review("补贴比例参照区人社局有关人才政策确定，本政策未规定金额，转人工审核"),
    "14": _referred,
    "15": _needs_review("资助补贴或政府购买服务的金额本政策未规定，转人工审核"),
}

# ---------------------------------------------------------------- decision

_SCOPE_FACTS = (
    ("registered_in_district", "NOT_REGISTERED_IN_DISTRICT", "未在本区进行工商登记"),
    ("tax_registered_in_district", "NOT_TAX_REGISTERED_IN_DISTRICT", "未在本区进行税务登记"),
    ("independent_legal_person", "NOT_INDEPENDENT_LEGAL_PERSON", "不具有独立承担民事责任能力"),
)


def _scope_key(cp: ClausePolicy, claim: Any, extra: Mapping[str, Any]) -> str:
    parts = [cp.clause]
    for name in cp.ledger.scope_by:
        value = extra[name] if name in extra else getattr(claim, name)
        parts.append(f"{name}={value}")
    return "/".join(parts)


def evaluate(app: Application, policy: Policy, on: dt.date | None = None) -> Decision:
    """Apply the clause rules of `policy` in force on `on` (default: the day
    the application was submitted) to one application."""
    on = on or app.submitted_on
    claim = app.claim
    cp = policy.clauses[claim.CLAUSE]
    reasons: list[Reason] = []

    firm = app.firm
    if not (firm.registered_in_district and firm.tax_registered_in_district and firm.independent_legal_person):
        for fact, code, detail in _SCOPE_FACTS:
            if not getattr(firm, fact):
                reasons.append(Reason(code, SCOPE_CLAUSE, f"不符合一、适用范围：企业{detail}（{policy.scope_text}）"))

    params = cp.parameters_on(on) if on >= policy.effective_from else None
    rule = _Rule(cp)
    if params is None:
        reasons.append(
            Reason(
                "POLICY_NOT_IN_FORCE",
                cp.item,
                f"第{cp.item}条“{cp.title}”自{policy.effective_from.isoformat()}起执行，{on.isoformat()}时尚未施行",
            )
        )
    else:
        kinds = params["eligible_kinds"]
        if kinds is not None and kinds.isdisjoint(firm.kinds):
            wanted = "或".join(KIND_NAMES[k] for k in sorted(kinds))
            rule.refuse("KIND_NOT_ELIGIBLE", f"申报主体须为{wanted}")
        RULES[cp.clause](rule, app, params)
        reasons.extend(rule.against)

    if reasons:
        return _decision(app, policy, cp, INELIGIBLE, 0, tuple(reasons))
    if rule.outcome != ELIGIBLE:
        code = "REVIEW_REQUIRED" if rule.outcome == NEEDS_REVIEW else "REFERRED_TO_FUND"
        basis = Reason(code, cp.item, f"第{cp.item}条“{cp.title}”：{rule.basis}")
        return _decision(app, policy, cp, rule.outcome, 0, (basis,))

    total = sum([amount for _, amount in rule.lines])
    if total == 0:
        reason = Reason("ZERO_CEILING", cp.item, f"不符合第{cp.item}条“{cp.title}”：计算所得补贴为0（{rule.basis}）")
        return _decision(app, policy, cp, INELIGIBLE, 0, (reason,))
    limit = cp.ledger.limit
    cap = params.get("cap_fen", 0) if limit == domain.LimitKind.CUMULATIVE_CAP else 0
    entitlements = tuple([Entitlement(_scope_key(cp, claim, extra), limit, amount, cap) for extra, amount in rule.lines])
    return _decision(
        app,
        policy,
        cp,
        ELIGIBLE,
        total,
        (Reason("AWARD_BASIS", cp.item, f"依据第{cp.item}条“{cp.title}”：{rule.basis}"),),
        entitlements,
        params["tranche_shares_percent"],
    )


def _decision(
    app: Application,
    policy: Policy,
    cp: ClausePolicy,
    outcome: str,
    max_award_fen: int,
    reasons: tuple[Reason, ...],
    entitlements: tuple[Entitlement, ...] = (),
    tranche_shares_percent: tuple[int, ...] = (),
) -> Decision:
    return Decision(
        decision_id=f"{app.application_id}@{policy.version}",
        application_id=app.application_id,
        credit_code=app.firm.credit_code,
        clause=cp.clause,
        outcome=outcome,
        max_award_fen=max_award_fen,
        reasons=reasons,
        policy_version=policy.version,
        decision_year=app.decision_year,
        submitted_on=app.submitted_on,
        entitlements=entitlements,
        tranche_shares_percent=tranche_shares_percent,
    )
