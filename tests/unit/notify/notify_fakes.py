"""In-memory fakes of notify's ports, and event builders (generated classes)."""

from __future__ import annotations

from subsidy.core.domain import Firm
from subsidy.core.policy import load_policy
from subsidy.platform.registry import Contacts, FirmRecord
from subsidy.services.notify.model import DeliveryError, PermanentDeliveryError
from subsidy.v1 import decision_pb2, payout_pb2

FIRM = "91310117MA1K7D2E8N"
OTHER_FIRM = "91310117MA1K8Q3P5L"  # another firm on the same notice list
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


# -- review and the public notice (issue 12) ---------------------------------------


def held(app="SJ-2025-0011", reasons=("NEEDS_REVIEW_OUTCOME", "ABOVE_FOUR_EYES_THRESHOLD")):
    """A computed decision that requires review."""
    return decision("NEEDS_REVIEW", app=app, review_required=True, review_reasons=list(reasons))


def reviewed(result="APPROVED", app="SJ-2025-0011", amount=120000000, basis="按人社局核定标准的50%计算"):
    computed = f"{app}@2024.1+abc"
    fields = dict(
        decision_id=f"{computed}/review:R-7",
        review=decision_pb2.ReviewRecord(
            supersedes_decision_id=computed,
            item_id="R-7",
            reviewers=["reviewer-li", "reviewer-wang"],
            basis=basis,
            result=result,
            decided_at="2025-03-03T02:30:00Z",
        ),
    )
    if result == "APPROVED":
        return decision("ELIGIBLE", max_award_fen=amount, app=app, **fields)
    return decision("INELIGIBLE", app=app, **fields)


def reserved(app="SJ-2025-0001", granted=296296296):
    event = grant(app=app, granted=granted)
    event.grant_recorded.tranche_count = 0
    event.grant_recorded.state = payout_pb2.GRANT_STATE_RESERVED
    return event


def notice_published(notice="N-2025-007", lines=None):
    from subsidy.v1 import notice_pb2

    lines = lines or [
        notice_pb2.NoticeLine(
            line_id=f"{notice}/SJ-2025-0001@2024.1+abc",
            decision_id="SJ-2025-0001@2024.1+abc",
            application_id="SJ-2025-0001",
            credit_code=FIRM,
            firm_name="上海泗泾智造示范工厂有限公司",
            clause="2",
            amount_fen=296296296,
        ),
        notice_pb2.NoticeLine(
            line_id=f"{notice}/SJ-2025-0011@2024.1+abc/review:R-7",
            decision_id="SJ-2025-0011@2024.1+abc/review:R-7",
            application_id="SJ-2025-0011",
            credit_code=FIRM,
            firm_name="上海泗泾智造示范工厂有限公司",
            clause="13",
            amount_fen=120000000,
        ),
        notice_pb2.NoticeLine(
            line_id=f"{notice}/SJ-OTHER-1@2024.1+abc",
            decision_id="SJ-OTHER-1@2024.1+abc",
            application_id="SJ-OTHER-1",
            credit_code=OTHER_FIRM,
            firm_name="上海别家科技有限公司",
            clause="10.cloud",
            amount_fen=5000000,
        ),
    ]
    return notice_pb2.NoticeEvent(
        event_id=f"published:{notice}",
        notice_published=notice_pb2.NoticePublished(
            notice_id=notice,
            published_on="2025-01-24",
            period_first_day="2025-01-24",
            period_last_day="2025-02-06",
            lines=lines,
            published_by="reviewer-li",
        ),
    )


def objection_resolved(resolution="DISMISSED", objection="O-3", reasons="经核实，异议理由不成立"):
    from subsidy.v1 import notice_pb2

    return notice_pb2.NoticeEvent(
        event_id=f"resolved:{objection}",
        objection_resolved=notice_pb2.ObjectionResolved(
            objection_id=objection,
            notice_id="N-2025-007",
            line_id="N-2025-007/SJ-2025-0001@2024.1+abc",
            decision_id="SJ-2025-0001@2024.1+abc",
            credit_code=FIRM,
            resolution=resolution,
            reasons=reasons,
            resolved_by="reviewer-wang",
            resolved_on="2025-02-05",
        ),
    )


def grant_payable(app="SJ-2025-0001", granted=296296296):
    return payout_pb2.PayoutEvent(
        event_id=f"payable:{app}@2024.1+abc",
        grant_payable=payout_pb2.GrantPayable(
            application_id=app,
            decision_id=f"{app}@2024.1+abc",
            credit_code=FIRM,
            clause="2",
            notice_id="N-2025-007",
            payable_on="2025-02-07",
            granted_fen=granted,
            tranche_count=3,
        ),
    )


def grant_adjusted(app="SJ-2023-0003", previous=5_000_000, granted=8_000_000):
    """A RESERVED grant re-decided under an adopted policy version (issue 14)."""
    difference = granted - previous
    return payout_pb2.PayoutEvent(
        event_id=f"adjusted:{app}@fictional-final-2023+0123abcd",
        grant_adjusted=payout_pb2.GrantAdjusted(
            application_id=app,
            credit_code=FIRM,
            clause="10.cloud",
            previous_decision_id=f"{app}@songjiang-ii-2022-draft+c9f1f78f",
            decision_id=f"{app}@fictional-final-2023+0123abcd",
            previous_policy_version="songjiang-ii-2022-draft+c9f1f78f",
            policy_version="fictional-final-2023+0123abcd",
            previous_granted_fen=previous,
            granted_fen=granted,
            released_fen=max(0, -difference),
            topped_up_fen=max(0, difference),
            max_award_fen=granted,
            outcome="ELIGIBLE",
            decision_year=2023,
            state=payout_pb2.GRANT_STATE_RESERVED,
        ),
    )


def information_requested(app="SJ-2025-0014", number=1, missing="请提供融资服务合同及付款凭证"):
    from subsidy.v1 import review_pb2

    return review_pb2.ReviewEvent(
        event_id=f"info-requested:rv-0a1b2c:{number}",
        information_requested=review_pb2.InformationRequested(
            item_id="rv-0a1b2c",
            application_id=app,
            credit_code=FIRM,
            request_number=number,
            missing=missing,
            requested_by="reviewer-zhang",
        ),
    )


# -- release gates and recovery (issue 13) -----------------------------------------


def tranche_held(
    app="SJ-2025-0015", number=1, amount=88888889, facts_as_of="2026-01-12", reason="工商登记已不在松江区"
):
    tid = f"{app}/tranche-{number}"
    return payout_pb2.PayoutEvent(
        event_id=f"held:{tid}#1",
        tranche_held=payout_pb2.TrancheHeld(
            tranche_id=tid,
            application_id=app,
            credit_code=FIRM,
            clause="2",
            amount_fen=amount,
            due_on="2026-02-20",
            budget_year=2026,
            held_on="2026-02-20",
            hold_until="2026-05-21",
            reason=reason,
            facts_as_of=facts_as_of,
            reason_codes=["REGISTERED_OUTSIDE_DISTRICT"],
        ),
    )


def tranche_released(app="SJ-2025-0015", number=1, amount=88888889):
    tid = f"{app}/tranche-{number}"
    return payout_pb2.PayoutEvent(
        event_id=f"released:{tid}#1",
        tranche_released=payout_pb2.TrancheReleased(
            tranche_id=tid,
            application_id=app,
            credit_code=FIRM,
            clause="2",
            amount_fen=amount,
            held_on="2026-02-20",
            released_on="2026-03-15",
            facts_as_of="2026-03-14",
        ),
    )


def cancelled_after_grace(app="SJ-2025-0016", number=1, amount=88888889):
    event = cancelled(app=app, number=number, amount=amount)
    event.tranche_cancelled.reason = (
        "暂停拨付（2026年2月20日起）宽限期至2026年5月21日届满，企业仍不符合《政策》一、适用范围：税务登记已不在松江区"
    )
    event.tranche_cancelled.cancelled_on = "2026-05-22"
    return event


def recovery_opened(app="SJ-2025-0001", amount=50000000, void=False, reason="经核查，申报的研发投入存在虚报"):
    rid = f"{app}/recovery-0123456789abcdef"
    return payout_pb2.PayoutEvent(
        event_id=f"recovery:{rid}",
        recovery_opened=payout_pb2.RecoveryOpened(
            recovery_id=rid,
            application_id=app,
            decision_id=f"{app}@2024.1+abc",
            credit_code=FIRM,
            clause="2",
            tranche_ids=[f"{app}/tranche-0", f"{app}/tranche-1"],
            amount_fen=amount,
            reason=reason,
            void_award=void,
            opened_on="2026-06-01",
        ),
    )


def recovery_recorded(app="SJ-2025-0001"):
    rid = f"{app}/recovery-0123456789abcdef"
    return payout_pb2.PayoutEvent(
        event_id="recovered:RC-1",
        recovery_recorded=payout_pb2.RecoveryRecorded(
            recovery_id=rid,
            application_id=app,
            credit_code=FIRM,
            clause="2",
            confirmation_id="RC-1",
            amount_fen=50000000,
            recovered_on="2026-06-20",
            recovered_fen=50000000,
            outstanding_fen=0,
        ),
    )


# -- 免申即享 proposals (issue 13, item 4) ---------------------------------------------


def proposal_created(proposal="P-91310117MA1K7D2E8N-9-4f2a", clause="9", expected=30000000):
    from subsidy.v1 import application_pb2, proposal_pb2

    return proposal_pb2.ProposalEvent(
        event_id=f"proposal:{proposal}:created",
        proposal_id=proposal,
        credit_code=FIRM,
        created=proposal_pb2.ProposalCreated(
            proposal=proposal_pb2.Proposal(
                proposal_id=proposal,
                credit_code=FIRM,
                clause=clause,
                fact_reference="DCMM_LEVEL:DCMM-2026-0042",
                application=application_pb2.Application(application_id=proposal),
                expected_award_fen=expected,
                policy_version="2024.1+abc",
                state=proposal_pb2.PROPOSAL_STATE_PROPOSED,
                proposed_on="2026-03-02",
                expires_on="2026-04-01",
            )
        ),
    )


def proposal_expired(proposal="P-91310117MA1K7D2E8N-9-4f2a"):
    from subsidy.v1 import proposal_pb2

    return proposal_pb2.ProposalEvent(
        event_id=f"proposal:{proposal}:expired",
        proposal_id=proposal,
        credit_code=FIRM,
        expired=proposal_pb2.ProposalExpired(expired_on="2026-04-02"),
    )


def proposal_step(kind, proposal="P-91310117MA1K7D2E8N-9-4f2a"):
    from subsidy.v1 import proposal_pb2

    event = proposal_pb2.ProposalEvent(event_id=f"proposal:{proposal}:{kind}", proposal_id=proposal, credit_code=FIRM)
    if kind == "confirmed":
        event.confirmed.CopyFrom(
            proposal_pb2.ProposalConfirmed(application_id=proposal, confirmed_at="2026-03-05T02:00:00Z")
        )
    else:
        event.declined.CopyFrom(proposal_pb2.ProposalDeclined(reason="不需要", declined_at="2026-03-05T02:00:00Z"))
    return event
