"""In-memory fakes of notify's ports, and event builders (generated classes)."""

from __future__ import annotations

from subsidy.core.domain import Firm
from subsidy.core.policy import load_policy
from subsidy.platform.registry import Contacts, FirmRecord
from subsidy.services.notify.model import DeliveryError, PermanentDeliveryError
from subsidy.v1 import decision_pb2, payout_pb2

FIRM = "91310117MA1K7D2E8N"
CONTACTS = Contacts(
    email="zhang.san@example.cn", phone="+86-21-5555-9999", webhook_url="https://hooks.example.cn/secret-path-zhangsan"
)
TITLES = {clause: c.title for clause, c in load_policy().clauses.items()}


def firm_record(code: str = FIRM, contacts: Contacts = CONTACTS) -> FirmRecord:
    firm = Firm(
        credit_code=code,
        name="上海泗泾智造示范工厂有限公司",
        kinds=("INDUSTRIAL",),
        registered_in_district=True,
        tax_registered_in_district=True,
        independent_legal_person=True,
    )
    return FirmRecord(firm, contacts)


class FakeFirms:
    def __init__(self, *records: FirmRecord):
        self.records = {r.firm.credit_code: r for r in records}

    def firm(self, credit_code):
        return self.records.get(credit_code)


class FakeLog:
    def __init__(self):
        self.sent: dict[str, tuple] = {}

    def was_sent(self, nid):
        return nid in self.sent

    def record_sent(self, notification, trace_id, at):
        self.sent.setdefault(notification.id, (notification, trace_id, at))


class FakeChannel:
    def __init__(self, name, field, failures=0, permanent=False, error="HTTP 503"):
        self.name = name
        self.field = field
        self.failures = failures
        self.permanent = permanent
        self.error = error
        self.calls: list = []
        self.delivered: list = []

    def address(self, contacts):
        return getattr(contacts, self.field)

    def send(self, notification, address):
        self.calls.append((notification, address))
        if self.failures:
            self.failures -= 1
            raise (PermanentDeliveryError if self.permanent else DeliveryError)(self.error)
        self.delivered.append((notification, address))


def decision(outcome="ELIGIBLE", max_award_fen=296296296, app="SJ-2025-0001", **kw):
    reasons = [decision_pb2.Reason(code="AWARD_BASIS", clause="2", message="按平台投入的30%计算，最高500万元")]
    if outcome != "ELIGIBLE":
        reasons = [decision_pb2.Reason(code="KIND_NOT_ELIGIBLE", clause="2", message="企业类型不符合第2条要求")]
        max_award_fen = 0
    fields = dict(
        decision_id=f"{app}@2024.1+abc",
        application_id=app,
        credit_code=FIRM,
        clause="2",
        outcome=outcome,
        max_award_fen=max_award_fen,
        reasons=reasons,
        policy_version="2024.1+abc",
        decision_year=2025,
        submitted_on="2025-02-20",
    )
    if outcome == "ELIGIBLE":
        fields["entitlements"] = [
            decision_pb2.Entitlement(scope="2/platform_id=P-01", limit=1, amount_fen=max_award_fen, cap_fen=500000000)
        ]
        fields["tranche_shares_percent"] = [40, 30, 30]
    fields.update(kw)
    return decision_pb2.Decision(**fields)


def grant(app="SJ-2025-0001", granted=296296296):
    return payout_pb2.PayoutEvent(
        event_id=f"grant:{app}",
        grant_recorded=payout_pb2.GrantRecorded(
            application_id=app,
            decision_id=f"{app}@2024.1+abc",
            credit_code=FIRM,
            clause="2",
            policy_version="2024.1+abc",
            max_award_fen=296296296,
            granted_fen=granted,
            decision_year=2025,
            reasons=[
                decision_pb2.Reason(code="CAP_PARTIAL", clause="2", message="累计资助已达上限的一部分，按剩余额度核定")
            ],
            tranche_count=3,
        ),
    )


def scheduled(app="SJ-2025-0001", number=0, amount=118518518):
    tid = f"{app}/tranche-{number}"
    return payout_pb2.PayoutEvent(
        event_id=f"scheduled:{tid}",
        tranche_scheduled=payout_pb2.TrancheScheduled(
            tranche_id=tid,
            application_id=app,
            decision_id=f"{app}@2024.1+abc",
            credit_code=FIRM,
            clause="2",
            policy_version="2024.1+abc",
            number=number,
            amount_fen=amount,
            due_on=f"{2026 + number}-01-15",
            budget_year=2026 + number,
        ),
    )


def _legacy(event, kind):
    """As payout published it before tranche events carried their application
    and clause (TrancheDue always had its clause)."""
    body = getattr(event, kind)
    body.ClearField("application_id")
    if kind != "tranche_due":
        body.ClearField("clause")
    return event


def due(app="SJ-2025-0001", number=0, amount=118518518, legacy=False):
    tid = f"{app}/tranche-{number}"
    event = payout_pb2.PayoutEvent(
        event_id=f"due:{tid}",
        tranche_due=payout_pb2.TrancheDue(
            tranche_id=tid,
            credit_code=FIRM,
            amount_fen=amount,
            due_on="2026-01-15",
            budget_year=2026,
            clause="2",
            application_id=app,
        ),
    )
    return _legacy(event, "tranche_due") if legacy else event


def paid(app="SJ-2025-0001", number=0, amount=118518518, legacy=False):
    tid = f"{app}/tranche-{number}"
    event = payout_pb2.PayoutEvent(
        event_id=f"paid:{tid}",
        tranche_paid=payout_pb2.TranchePaid(
            tranche_id=tid,
            credit_code=FIRM,
            amount_fen=amount,
            paid_on="2026-01-20",
            payment_id="PAY-0001",
            application_id=app,
            clause="2",
        ),
    )
    return _legacy(event, "tranche_paid") if legacy else event


def cancelled(app="SJ-2025-0001", number=2, amount=88888890, legacy=False):
    tid = f"{app}/tranche-{number}"
    event = payout_pb2.PayoutEvent(
        event_id=f"cancelled:{tid}",
        tranche_cancelled=payout_pb2.TrancheCancelled(
            tranche_id=tid,
            credit_code=FIRM,
            amount_fen=amount,
            reason="企业已迁出松江区",
            cancelled_on="2027-03-01",
            application_id=app,
            clause="2",
        ),
    )
    return _legacy(event, "tranche_cancelled") if legacy else event
