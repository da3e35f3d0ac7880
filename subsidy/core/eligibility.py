"""The eligibility core: (application, policy, date) -> decision.

What is common to every clause lives here: the scope facts (一、适用范围),
the policy in force on the date, the firm's kind, turning what the clause's
rule found into a decision with entitlements. Each clause's own rule lives in
its module, subsidy/core/clauses/<claim key>.py, and is found through the
registry (subsidy.core.clauses).

Pure: no I/O, no clock, no Kafka. Every number comes from the policy data in
force on the evaluation date (by default the day the application was
submitted); every INELIGIBLE carries at least one reason citing its clause.
The history of the firm (caps used, one-time awards paid) is not looked at
here: the decision lists entitlements that the payout ledger checks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from subsidy.core import clauses, domain
from subsidy.core.clauses import Finding, Rule, given
from subsidy.core.domain import (
    ELIGIBLE,
    INELIGIBLE,
    NEEDS_REVIEW,
    Application,
    Claim,
    ClauseError,
    Decision,
    Entitlement,
    Reason,
)
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

# The rule of each clause, from its module (subsidy/core/clauses/<claim key>.py).
RULES: dict[str, Rule] = {clause.id: given(clause.rule, clause, "rule") for clause in clauses.ALL}

# ---------------------------------------------------------------- decision

_SCOPE_FACTS = (
    ("registered_in_district", "NOT_REGISTERED_IN_DISTRICT", "未在本区进行工商登记"),
    ("tax_registered_in_district", "NOT_TAX_REGISTERED_IN_DISTRICT", "未在本区进行税务登记"),
    ("independent_legal_person", "NOT_INDEPENDENT_LEGAL_PERSON", "不具有独立承担民事责任能力"),
)


def _scope_key(cp: ClausePolicy, claim: Claim, extra: Mapping[str, object]) -> str:
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
    if params is None:
        reasons.append(
            Reason(
                "POLICY_NOT_IN_FORCE",
                cp.item,
                f"第{cp.item}条“{cp.title}”自{policy.effective_from.isoformat()}起执行，{on.isoformat()}时尚未施行",
            )
        )
        return _decision(app, policy, cp, INELIGIBLE, 0, tuple(reasons))
    if cp.retired_cites is not None:  # retired by this version (subsidy/core/versions.py)
        reasons.append(Reason("CLAUSE_RETIRED", cp.item, f"第{cp.item}条“{cp.title}”已废止（{cp.retired_cites}）"))
        return _decision(app, policy, cp, INELIGIBLE, 0, tuple(reasons))

    finding = Finding(cp)
    kinds: frozenset[str] | None = params["eligible_kinds"]  # None: ANY
    if kinds is not None and kinds.isdisjoint(firm.kinds):
        wanted = "或".join(KIND_NAMES[k] for k in sorted(kinds))
        finding.refuse("KIND_NOT_ELIGIBLE", f"申报主体须为{wanted}")
    RULES[cp.clause](finding, app, params)
    reasons.extend(finding.against)

    if reasons:
        return _decision(app, policy, cp, INELIGIBLE, 0, tuple(reasons))
    if finding.outcome != ELIGIBLE:
        code = "REVIEW_REQUIRED" if finding.outcome == NEEDS_REVIEW else "REFERRED_TO_FUND"
        basis = Reason(code, cp.item, f"第{cp.item}条“{cp.title}”：{finding.basis}")
        return _decision(app, policy, cp, finding.outcome, 0, (basis,))

    total = sum([amount for _, amount in finding.lines])
    if total == 0:
        reason = Reason("ZERO_CEILING", cp.item, f"不符合第{cp.item}条“{cp.title}”：计算所得补贴为0（{finding.basis}）")
        return _decision(app, policy, cp, INELIGIBLE, 0, (reason,))
    limit = cp.ledger.limit
    if limit is None:  # never: the policy loader gives every clause that pays a ledger limit
        raise ClauseError(f"clause {cp.clause}: its rule awarded {total} fen but the clause pays nothing")
    cap = params.get("cap_fen", 0) if limit == domain.LimitKind.CUMULATIVE_CAP else 0
    entitlements = tuple(
        [Entitlement(_scope_key(cp, claim, extra), limit, amount, cap) for extra, amount in finding.lines]
    )
    return _decision(
        app,
        policy,
        cp,
        ELIGIBLE,
        total,
        (Reason("AWARD_BASIS", cp.item, f"依据第{cp.item}条“{cp.title}”：{finding.basis}"),),
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
