"""The console's values and errors: the signed-in person, what a page may
refuse, and the Chinese names of the states the services answer with. No I/O."""

from __future__ import annotations

import dataclasses

ROLES = ("ENTERPRISE", "PORTAL", "REVIEWER", "FINANCE", "OPERATOR")

ROLE_NAMES = {
    "ENTERPRISE": "企业",
    "PORTAL": "企业服务门户",
    "REVIEWER": "审核人员（区科委）",
    "FINANCE": "财政人员（区财政）",
    "OPERATOR": "运维人员",
}


@dataclasses.dataclass(frozen=True)
class Person:
    """Who is signed in: the verified token's claims, and the token itself,
    forwarded on every gRPC call so the services decide."""

    subject: str
    role: str
    name: str
    token: str
    expires_at: float
    credit_code: str = ""

    @property
    def role_name(self) -> str:
        return ROLE_NAMES.get(self.role, self.role)


class ConsoleError(Exception):
    """A refusal shown to the person, in Chinese."""

    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Forbidden(ConsoleError):
    status = 403


class NotFound(ConsoleError):
    status = 404


class Conflict(ConsoleError):
    """The service refused the step in the item's present state (FAILED_PRECONDITION)."""

    status = 409


class Unavailable(ConsoleError):
    status = 503


class SignedOut(ConsoleError):
    """No session, or it expired: sign in again."""

    status = 401


@dataclasses.dataclass
class FormError(ConsoleError):
    """Bad form input: the field's Chinese label and what is wrong; nothing was changed."""

    field: str
    label: str
    problem: str

    def __post_init__(self) -> None:
        super().__init__(f"{self.label}：{self.problem}")

    status = 400


ITEM_STATUS = {
    "OPEN": "待领取",
    "CLAIMED": "审核中",
    "AWAITING_SECOND": "待复核",
    "MORE_INFO_REQUESTED": "待补充材料",
    "APPROVED": "已通过",
    "REJECTED": "不予支持",
}
REVIEW_REASONS = {
    "NEEDS_REVIEW_OUTCOME": "条款未规定金额，须人工核定",
    "ABOVE_FOUR_EYES_THRESHOLD": "金额达到双人复核标准",
    "REGISTRY_FACTS_CHANGED": "登记信息有变化",
    "POLICY_VERSION_IN_NOTICE": "公示期间政策版本调整，金额须重新审核并公示",
}
OUTCOMES = {"ELIGIBLE": "符合", "INELIGIBLE": "不符合", "NEEDS_REVIEW": "须人工审核", "REFERRED": "转由投资基金支持"}
LINE_STATUS = {"NOTICED": "公示中", "HELD": "异议处理中", "PAYABLE": "可拨付", "WITHDRAWN": "已撤回"}
OBJECTION_STATUS = {"OPEN": "待处理", "UPHELD": "异议成立", "DISMISSED": "异议不成立"}
APPLICATION_STATE = {
    0: "未知",
    1: "已受理",
    2: "已决定",
    3: "已入账",
    4: "人工审核中",
    5: "已预留（待公示）",
    6: "可拨付",
    7: "已撤回",
}
GRANT_STATE = {0: "可拨付", 1: "已预留（待公示）", 2: "可拨付", 3: "已撤回"}
TRANCHE_STATUS = {0: "未知", 1: "已排期", 2: "应付", 3: "已支付", 4: "已取消", 5: "暂缓（放款条件未满足）"}
#: The statuses the finance page filters by, as ListTranches takes them.
TRANCHE_STATUS_CODES = {"SCHEDULED": 1, "DUE": 2, "PAID": 3, "CANCELLED": 4, "HELD": 5}
#: Tranches that may still be cancelled (payout: SCHEDULED, DUE, HELD).
OPEN_TRANCHES = (1, 2, 5)
RECOVERY_STATUS = {"OPEN": "追回中", "RECOVERED": "已追回"}
#: A dead letter's handling (OperationsService).
LETTER_STATE = {"PENDING": "待处理", "REPLAYED": "已重放", "DISCARDED": "已丢弃"}
#: What each dead-letter topic holds, for the operator.
DLQ_TOPIC_NAMES = {
    "subsidy.applications.v1.dlq": "申请（eligibility 无法处理）",
    "subsidy.decisions.v1.dlq": "决定（intake、payout、review 等无法处理）",
    "subsidy.payouts.v1.dlq": "拨付事件",
    "subsidy.payments.v1.dlq": "支付确认（payout 无法入账）",
    "subsidy.notices.v1.dlq": "公示事件",
    "subsidy.firms.v1.dlq": "企业信息（数据平台变更）",
    "subsidy.notifications.v1.dlq": "通知（notify 多次重试仍未送达）",
}
#: A 免申即享 proposal's state (ProposalState).
PROPOSAL_STATE = {0: "未知", 1: "待企业确认", 2: "已确认（已提交申请）", 3: "企业已谢绝", 4: "已过期"}
#: A policy version's status as the register lists it (policy/versions.yaml).
VERSION_STATUS = {"draft": "草案", "candidate": "候选", "adopted": "已采纳", "retired": "已废止"}
#: What one reviewer's adoption step did (AdoptVersionResponse.status).
ADOPTION_STEP = {"proposed": "已提议采纳，待另一位审核人员批准", "adopted": "已采纳"}
#: An event of eligibility's adoption audit trail (ListVersions' AdoptionEvent.event).
ADOPTION_EVENT = {
    "proposed": "提议采纳",
    "adopted": "批准，已采纳",
    "refused": "被拒绝",
    "redecisions_published": "重新决定已发布",
}
#: Why a step was refused (AdoptionEvent.refusal_kind).
REFUSAL_KIND = {"four_eyes": "四眼原则", "precondition": "条件不满足", "invalid": "请求无效"}


@dataclasses.dataclass(frozen=True)
class PolicyVersionInfo:
    """One version of the register, as the policy-versions page lists it:
    ``policy_version`` is ``<id>+<digest>`` of its files as they are now (what
    a reviewer approves), ``problem`` why its files do not load (then the
    digest is unknown)."""

    version_id: str
    status: str
    name: str = ""
    base: str = ""
    effective_from: str = ""
    effective_until: str = ""
    policy_version: str = ""
    citations: tuple[str, ...] = ()
    retired: tuple[tuple[str, str], ...] = ()  # (clause, cites)
    fictional: bool = False
    problem: str = ""

    @property
    def status_name(self) -> str:
        return VERSION_STATUS.get(self.status, self.status)
