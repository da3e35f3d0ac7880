"""An in-memory stand-in for the services behind the console: the ``Services``
port, answering with the services' own messages, refusing by the services'
real access policy (subsidy/platform/security/access.yaml), and recording
every call so a test can show a refused page called nothing."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import grpc
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.testclient import TestClient

from subsidy.platform.security.policy import AccessPolicy
from subsidy.services.console.adapters.signin import DevSigner, Tokens
from subsidy.services.console.adapters.web import Console
from subsidy.services.console.config import Settings
from subsidy.services.console.model import Conflict, Forbidden, FormError, NotFound, Person
from subsidy.v1 import (
    application_pb2,
    decision_pb2,
    intake_pb2,
    notice_pb2,
    payout_pb2,
    review_pb2,
)

AUDIENCE = "subsidy-api"
ISSUER = "https://sso.test.invalid"
KID = "test-1"
HOSTILE_NAME = '<script>alert("x")</script>恶意企业'

IDENTITIES = [
    {"subject": "reviewer-zhang", "role": "REVIEWER", "name": "张敏（区科委 审核）"},
    {"subject": "reviewer-li", "role": "REVIEWER", "name": "李强（区科委 复核）"},
    {"subject": "finance-wang", "role": "FINANCE", "name": "王芳（区财政）"},
    {"subject": "operator-zhao", "role": "OPERATOR", "name": "赵磊（运维）"},
    {"subject": "portal-songjiang", "role": "PORTAL", "name": "松江区企业服务门户"},
]
#: One demo subject per role; ENTERPRISE signs in with FIRM_A.
SUBJECT_OF_ROLE = {
    "REVIEWER": "reviewer-zhang",
    "FINANCE": "finance-wang",
    "OPERATOR": "operator-zhao",
    "PORTAL": "portal-songjiang",
    "ENTERPRISE": "enterprise",
}


class RpcRefusal(grpc.RpcError):
    """A service's refusal as grpc.aio raises it: a status code and details."""

    def __init__(self, code: grpc.StatusCode, details: str = ""):
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def valid_code(prefix16: str) -> str:
    from subsidy.core.credit_code import complete

    return complete(prefix16)


class FakeServices:
    def __init__(self) -> None:
        self.policy = AccessPolicy.load()
        self.calls: list[tuple[str, str]] = []  # (rpc, subject)
        self.operations_store: Any = None
        #: GetShadowDifference's answer; None: no candidate in shadow (FAILED_PRECONDITION).
        self.shadow: Any = None
        self.firm_a = valid_code("9131011731234567")
        self.firm_b = valid_code("9131011731234568")
        #: AdoptVersion: the four-eyes state (eligibility's audit trail, folded), the requests
        #: received, and what an approval answers with (eligibility finds them itself).
        from subsidy.core.adoption import AdoptionState
        from subsidy.v1 import policy_service_pb2

        self.adoption_state = AdoptionState()
        #: The trail as eligibility writes it: every step and refusal, in order.
        self.adoption_events: list[dict[str, Any]] = []
        #: ListVersions refused with this (a ConsoleError), as the gRPC adapter would; None: it answers.
        self.list_versions_error: Any = None
        self.adopt_requests: list[Any] = []
        self.redecisions = [
            decision_pb2.Decision(
                decision_id="A-1@fictional-final-2023+7a319421",
                application_id="A-1",
                clause="10.cloud",
                outcome="ELIGIBLE",
                max_award_fen=6_200_000,
                policy_version="fictional-final-2023+7a319421",
                supersedes_decision_id="A-1@2025.1",
            )
        ]
        self.adoption_report = [
            policy_service_pb2.AdoptionReportLine(
                application_id="B-1",
                credit_code=self.firm_b,
                clause="6",
                kept_fen=300_000_000,
                kept_policy_version="songjiang-ii-2022-draft+c9f1f78f",
                new_outcome="ELIGIBLE",
                new_max_award_fen=200_000_000,
                difference_fen=-100_000_000,
            )
        ]
        #: (credit_code, firm_name, clause, state, page_token) of each ListApplications.
        self.application_searches: list[tuple[str, str, str, int, str]] = []
        self.recoveries = [
            payout_pb2.Recovery(
                recovery_id="R-open",
                application_id="A-1",
                credit_code=self.firm_a,
                tranche_ids=["A-1#0"],
                amount_fen=1_000_000,
                reason="<script>alert(1)</script>虚报",
                opened_on="2026-11-02",
                status="OPEN",
            ),
            payout_pb2.Recovery(
                recovery_id="R-done",
                application_id="B-1",
                credit_code=self.firm_b,
                amount_fen=500_000,
                recovered_fen=500_000,
                reason="重复申报",
                opened_on="2026-10-01",
                status="RECOVERED",
            ),
        ]
        from subsidy.v1 import proposal_pb2

        self.proposals = [
            proposal_pb2.Proposal(
                proposal_id=f"P-{self.firm_a}-9-abc123",
                credit_code=self.firm_a,
                clause="9",
                fact_reference="DCMM_LEVEL:<b>DCMM-2026-0042</b>",
                application=application_pb2.Application(
                    firm=application_pb2.Firm(credit_code=self.firm_a, name=HOSTILE_NAME)
                ),
                expected_award_fen=20_000_000,
                state=1,
                proposed_on="2026-11-20",
                expires_on="2026-12-20",
            ),
            proposal_pb2.Proposal(
                proposal_id=f"P-{self.firm_a}-11.node-def456",
                credit_code=self.firm_a,
                clause="11.node",
                fact_reference="IDENTIFIER_NODE:N-1",
                expected_award_fen=5_000_000,
                state=3,
                decline_reason="暂不需要",
            ),
        ]
        item = review_pb2.ReviewItem(
            item_id="rv-1",
            decision_id="A-1@2025.1",
            application_id="A-1",
            credit_code=self.firm_a,
            clause="4",
            outcome="ELIGIBLE",
            max_award_fen=50_000_000,
            review_reasons=["ABOVE_FOUR_EYES_THRESHOLD"],
            status="OPEN",
            queued_on="2026-09-25",
            deadline="2026-10-16",
        )
        late = review_pb2.ReviewItem(
            item_id="rv-2",
            application_id="A-2",
            credit_code=self.firm_b,
            clause="15",
            outcome="NEEDS_REVIEW",
            status="OPEN",
            queued_on="2026-09-01",
            deadline="2026-09-20",
            overdue=True,
        )
        self.items = {"rv-1": item, "rv-2": late}
        line = notice_pb2.NoticeLine(
            line_id="notice-2026-09-25-0001/A-1@2025.1",
            decision_id="A-1@2025.1",
            application_id="A-1",
            credit_code=self.firm_a,
            firm_name=HOSTILE_NAME,
            clause="4",
            amount_fen=50_000_000,
        )
        self.notice = review_pb2.Notice(
            notice_id="notice-2026-09-25-0001",
            published_on="2026-09-25",
            period_first_day="2026-09-25",
            period_last_day="2026-10-10",
            published_by="reviewer-zhang",
            lines=[review_pb2.NoticeLineState(line=line, status="NOTICED")],
        )
        self.objection_audit = [
            review_pb2.AuditEntry(
                sequence=1,
                action="OBJECTION_LODGED",
                target=self.notice.notice_id,
                after=json.dumps(
                    {
                        "objection": {
                            "objection_id": line.line_id + "/objection-1",
                            "line_id": line.line_id,
                            "reason": "<b>不实</b>",
                            "lodged_by": "portal-songjiang",
                            "lodged_on": "2026-09-28",
                            "status": "OPEN",
                        }
                    }
                ),
            )
        ]
        self.applications = {
            "A-1": self._application("A-1", self.firm_a, HOSTILE_NAME),
            "B-1": self._application("B-1", self.firm_b, "乙公司"),
        }
        self.tranches = [
            payout_pb2.Tranche(
                tranche_id="A-1/tranche-0",
                application_id="A-1",
                credit_code=self.firm_a,
                clause="4",
                number=0,
                amount_fen=25_000_000,
                due_on="2026-10-20",
                budget_year=2026,
                status=payout_pb2.TRANCHE_STATUS_SCHEDULED,
            ),
            payout_pb2.Tranche(
                tranche_id='=HYPERLINK("x")',
                application_id="-A-2",
                credit_code=self.firm_b,
                clause="1",
                number=0,
                amount_fen=123_456,
                due_on="2026-10-01",
                budget_year=2026,
                status=payout_pb2.TRANCHE_STATUS_DUE,
            ),
        ]

    @staticmethod
    def _application(app_id: str, code: str, name: str) -> Any:
        decision = decision_pb2.Decision(
            decision_id=f"{app_id}@2025.1",
            application_id=app_id,
            clause="4",
            outcome="ELIGIBLE",
            max_award_fen=50_000_000,
            policy_version="2025.1",
            reasons=[decision_pb2.Reason(code="AWARD_BASIS", clause="4", message=f"{name}：按第4项核定")],
        )
        return intake_pb2.ApplicationStatus(
            application=application_pb2.Application(
                application_id=app_id,
                submitted_on="2026-09-20",
                firm=application_pb2.Firm(credit_code=code, name=name),
            ),
            state=intake_pb2.APPLICATION_STATE_RESERVED,
            decision=decision,
            decisions=[decision],  # GetApplication lists every decision read (issue 14)
            grant=payout_pb2.Grant(
                application_id=app_id,
                decision_id=f"{app_id}@2025.1",
                granted_fen=50_000_000,
                state=2,
                paid_fen=25_000_000,
                net_fen=25_000_000,
                tranches=[
                    payout_pb2.Tranche(
                        tranche_id=f"{app_id}/tranche-0",
                        application_id=app_id,
                        credit_code=code,
                        amount_fen=25_000_000,
                        status=payout_pb2.TRANCHE_STATUS_PAID,
                        paid_on="2026-10-20",
                    ),
                    payout_pb2.Tranche(
                        tranche_id=f"{app_id}/tranche-1",
                        application_id=app_id,
                        credit_code=code,
                        number=1,
                        amount_fen=25_000_000,
                        status=payout_pb2.TRANCHE_STATUS_HELD,
                        held_on="2027-01-05",
                        hold_until="2027-02-04",
                        hold_reason="<i>企业迁出本区</i>",
                    ),
                ],
                recoveries=[
                    payout_pb2.Recovery(
                        recovery_id=f"{app_id}/recovery-1",
                        application_id=app_id,
                        amount_fen=1_000_000,
                        status="OPEN",
                        reason="<b>发票不实</b>",
                    )
                ],
            ),
        )

    # operations: the real OperationsService use cases over an in-memory SQLite store
    def _operations(self) -> Any:
        if self.operations_store is None:
            from subsidy.platform.db import Database
            from subsidy.services.operations.adapters.store import SqlStore

            self.operations_store = SqlStore(Database("sqlite:///:memory:", store="operations"))
            self.operations_store.create_schema()
        return self.operations_store

    def add_dead_letter(self, value: bytes, *, topic: str = "subsidy.applications.v1", offset: int = 0) -> str:
        """A dead letter as eligibility writes one, stored as operations stores it; its id."""
        import datetime as dt
        import types

        from subsidy.contracts import cloudevents
        from subsidy.platform import dead_letters
        from subsidy.services.operations import handlers as operations

        now = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)
        record = types.SimpleNamespace(
            topic=topic,
            partition=0,
            offset=offset,
            key=self.firm_a.encode(),
            value=value,
            headers=cloudevents.headers(
                f"ev-{offset}", "cn.gov.songjiang.subsidy.application.v1", "intake", "t" * 32, time=now
            ),
        )
        built = dead_letters.encode(
            record,
            "unexpected error in 5 attempts: KeyError",
            dlq_topic=topic + ".dlq",
            consumer="eligibility",
            source="eligibility",
            trace_id=None,
            now=now,
        )
        operations.record_letter(
            self._operations(), built.topic, 0, offset, built.value, built.headers, "2026-12-01T09:31:00Z"
        )
        return f"{built.topic}/0/{offset}"

    async def _operation(self, person: Person, method: str, work: Any) -> Any:
        from subsidy.services.operations import model as om

        self._check(person, "OperationsService", method)
        try:
            return work()
        except om.InvalidArgument as exc:
            from subsidy.services.console.adapters.grpc import FIELD_LABELS

            field, label = FIELD_LABELS.get(exc.field, (exc.field, exc.field))
            raise FormError(field, label, f"服务不接受：{exc}") from None
        except om.NotFound as exc:
            raise NotFound(f"死信：未找到（{exc}）。") from None
        except om.FailedPrecondition as exc:
            raise Conflict(f"当前状态下不能进行此操作（{exc}）。") from None
        except om.PermissionDenied as exc:
            raise Forbidden(str(exc)) from None

    async def dead_letter_topics(self, person: Person) -> Any:
        from subsidy.services.operations import handlers as operations
        from subsidy.v1 import operations_pb2

        rows = await self._operation(person, "ListDeadLetterTopics", lambda: operations.list_topics(self._operations()))
        return operations_pb2.ListDeadLetterTopicsResponse(
            topics=[
                operations_pb2.DeadLetterTopicSummary(
                    topic=t, pending=c["PENDING"], replayed=c["REPLAYED"], discarded=c["DISCARDED"]
                )
                for t, c in rows
            ]
        )

    async def list_dead_letters(self, person: Person, topic: str, state: str, page_token: str) -> Any:
        from subsidy.services.operations import handlers as operations
        from subsidy.services.operations.adapters.grpc import letter_to_proto
        from subsidy.v1 import operations_pb2

        views, token = await self._operation(
            person,
            "ListDeadLetters",
            lambda: operations.list_letters(self._operations(), topic, state, 50, page_token),
        )
        return operations_pb2.ListDeadLettersResponse(
            letters=[letter_to_proto(v) for v in views], next_page_token=token
        )

    async def get_dead_letter(self, person: Person, letter_id: str) -> Any:
        from subsidy.services.operations import handlers as operations
        from subsidy.services.operations.adapters.grpc import letter_to_proto
        from subsidy.v1 import operations_pb2

        view, trail = await self._operation(
            person, "GetDeadLetter", lambda: operations.get_letter(self._operations(), letter_id)
        )
        return operations_pb2.GetDeadLetterResponse(
            letter=letter_to_proto(view),
            audit=[
                operations_pb2.DeadLetterAudit(
                    action=a.action, subject=a.subject, role=a.role, reason=a.reason, at=a.at
                )
                for a in trail
            ],
        )

    async def replay_dead_letter(self, person: Person, letter_id: str, reason: str) -> Any:
        from subsidy.services.operations import handlers as operations
        from subsidy.services.operations.model import Actor

        actor = Actor(person.subject, person.role)
        return await self._operation(
            person,
            "ReplayDeadLetter",
            lambda: operations.replay(self._operations(), letter_id, reason, actor, "2026-12-01T10:00:00Z"),
        )

    async def discard_dead_letter(self, person: Person, letter_id: str, reason: str) -> Any:
        from subsidy.services.operations import handlers as operations
        from subsidy.services.operations.model import Actor

        actor = Actor(person.subject, person.role)
        return await self._operation(
            person,
            "DiscardDeadLetter",
            lambda: operations.discard(self._operations(), letter_id, reason, actor, "2026-12-01T10:00:00Z"),
        )

    def _check(self, person: Person, service: str, method: str, credit_code: str | None = None) -> None:
        self.calls.append((f"{service}.{method}", person.subject))
        rule = self.policy.rule(f"subsidy.v1.{service}", method)
        if rule is None or not rule.allows_role(person.role):
            raise Forbidden(f"{method}：服务拒绝了此操作（role {person.role}）。")
        if person.role == "ENTERPRISE" and credit_code is not None and credit_code != person.credit_code:
            raise Forbidden(f"{method}：服务拒绝了此操作（firm）。")

    # review
    async def list_queue(self, person: Person, request: Any) -> Any:
        self._check(person, "ReviewService", "ListQueue")
        items = [i for i in self.items.values() if not request.statuses or i.status in request.statuses]
        return review_pb2.ListQueueResponse(items=items)

    async def get_item(self, person: Person, item_id: str) -> Any:
        self._check(person, "ReviewService", "GetItem")
        if item_id not in self.items:
            raise NotFound("审核事项：未找到。")
        item = self.items[item_id]
        return review_pb2.GetItemResponse(
            item=item,
            application=self.applications["A-1"].application,
            decision_reasons=[decision_pb2.Reason(code="AWARD_BASIS", clause="4", message="按第4项核定")],
        )

    async def claim_item(self, person: Person, item_id: str) -> Any:
        self._check(person, "ReviewService", "ClaimItem")
        self.items[item_id].status = "CLAIMED"
        self.items[item_id].assignee = person.subject
        return self.items[item_id]

    async def decide(self, person: Person, request: Any) -> Any:
        self._check(person, "ReviewService", "Decide")
        self.decided = request
        return self.items[request.item_id]

    async def second_approve(self, person: Person, request: Any) -> Any:
        self._check(person, "ReviewService", "SecondApprove")
        self.seconded = request
        return review_pb2.SecondApproveResponse(item=self.items[request.item_id])

    async def audit_trail(self, person: Person, target: str) -> list[Any]:
        self._check(person, "ReviewService", "ListAuditTrail")
        return self.objection_audit if target == self.notice.notice_id else []

    async def answer_information(self, person: Person, request: Any) -> Any:
        self._check(person, "ReviewService", "AnswerInformation", request.credit_code)
        self.answered = request
        return review_pb2.AnswerInformationResponse()

    async def publish_notice(self, person: Person, title: str) -> Any:
        self._check(person, "ReviewService", "PublishNotice")
        return review_pb2.PublishNoticeResponse(notice=self.notice)

    async def get_notice(self, person: Person, notice_id: str) -> Any:
        self._check(person, "ReviewService", "GetNotice")
        if notice_id != self.notice.notice_id:
            raise NotFound("公示：未找到。")
        return review_pb2.GetNoticeResponse(notice=self.notice, html="", pdf=b"%PDF-1.4 fake")

    async def list_notices(self, person: Person, page_token: str) -> Any:
        self._check(person, "ReviewService", "ListNotices")
        return review_pb2.ListNoticesResponse(notices=[self.notice])

    async def lodge_objection(self, person: Person, request: Any) -> Any:
        self._check(person, "ReviewService", "LodgeObjection", request.credit_code)
        self.lodged = request
        return review_pb2.Objection(objection_id="x", status="OPEN")

    async def resolve_objection(self, person: Person, request: Any) -> Any:
        self._check(person, "ReviewService", "ResolveObjection")
        self.resolved = request
        return review_pb2.Objection(objection_id=request.objection_id, status=request.resolution)

    # intake
    async def list_applications(
        self,
        person: Person,
        credit_code: str,
        page_token: str,
        *,
        firm_name: str = "",
        clause: str = "",
        state: int = 0,
        page_size: int = 100,
    ) -> Any:
        self._check(person, "IntakeService", "ListApplications", credit_code)
        self.application_searches.append((credit_code, firm_name, clause, state, page_token))
        found = [
            a
            for a in self.applications.values()
            if (not credit_code or a.application.firm.credit_code == credit_code)
            and firm_name.casefold() in a.application.firm.name.casefold()
            and (not clause or a.decision.clause == clause)
            and (not state or a.state == state)
        ]
        return intake_pb2.ListApplicationsResponse(applications=found)

    async def get_application(self, person: Person, application_id: str) -> Any:
        self._check(person, "IntakeService", "GetApplication")
        if application_id not in self.applications:
            raise NotFound("申请：未找到。")
        return intake_pb2.GetApplicationResponse(application=self.applications[application_id])

    # payout
    async def get_ledger(self, person: Person, credit_code: str) -> Any:
        self._check(person, "PayoutService", "GetLedger", credit_code)
        grants = [a.grant for a in self.applications.values() if a.application.firm.credit_code == credit_code]
        return payout_pb2.GetLedgerResponse(
            credit_code=credit_code,
            grants=grants,
            paid_fen=sum(g.paid_fen for g in grants),
            recovered_fen=sum(g.recovered_fen for g in grants),
            net_fen=sum(g.net_fen for g in grants),
            scopes=[payout_pb2.ScopeUsage(scope="4", limit="once", used_fen=50_000_000, cap_fen=50_000_000)],
        )

    async def cancel_tranche(self, person: Person, tranche_id: str, reason: str) -> Any:
        self._check(person, "PayoutService", "CancelTranche")
        self.cancelled = (tranche_id, reason)
        return payout_pb2.CancelTrancheResponse()

    async def open_recovery(self, person: Person, request: Any) -> Any:
        self._check(person, "PayoutService", "OpenRecovery")
        self.recovery = request
        return payout_pb2.OpenRecoveryResponse(created=True)

    async def list_proposals(
        self, person: Person, credit_code: str, page_token: str, *, state: int = 0, page_size: int = 100
    ) -> Any:
        from subsidy.v1 import proposal_pb2

        self._check(person, "ProposalService", "ListProposals", credit_code)
        found = [
            p
            for p in self.proposals
            if (not credit_code or p.credit_code == credit_code) and (not state or p.state == state)
        ]
        return proposal_pb2.ListProposalsResponse(proposals=found)

    async def list_recoveries(self, person: Person, recovery_filter: int, page_token: str) -> Any:
        self._check(person, "PayoutService", "ListRecoveries")
        wanted = {0: None, 1: "OPEN", 2: "RECOVERED"}[recovery_filter]
        found = [r for r in self.recoveries if wanted is None or r.status == wanted]
        return payout_pb2.ListRecoveriesResponse(recoveries=found)

    async def get_outlay(self, person: Person, from_year: int, to_year: int) -> Any:
        self._check(person, "PayoutService", "GetOutlay")
        years = [
            payout_pb2.BudgetYearOutlay(budget_year=2025, paid_fen=40_000_000, recovered_fen=1_000_000),
            payout_pb2.BudgetYearOutlay(budget_year=2026, reserved_fen=30_000_000, payable_fen=25_000_000),
            payout_pb2.BudgetYearOutlay(budget_year=2027, payable_fen=20_000_000, held_fen=5_000_000),
        ]
        years = [
            y
            for y in years
            if (not from_year or y.budget_year >= from_year) and (not to_year or y.budget_year <= to_year)
        ]
        total = payout_pb2.BudgetYearOutlay()
        for y in years:
            for field in ("reserved_fen", "payable_fen", "held_fen", "paid_fen", "recovered_fen", "cancelled_fen"):
                setattr(total, field, getattr(total, field) + getattr(y, field))
        return payout_pb2.GetOutlayResponse(years=years, total=total)

    async def shadow_difference(self, person: Person) -> Any:

        self._check(person, "PolicyService", "GetShadowDifference")
        if self.shadow is None:
            raise Conflict("影子评估：当前状态下不能进行此操作（no shadow version is set）。")
        return self.shadow

    async def adopt_version(self, person: Person, request: Any) -> Any:
        """Eligibility's adoption step as it is (subsidy.core.adoption.step
        over the real register: four eyes, only a candidate, the files'
        digest), its refusals as the gRPC adapter translates eligibility's
        status codes; once adopted, the re-decisions and report lines set on
        the fake (eligibility makes them from what it looks up)."""
        from subsidy.core.adoption import ADOPTED, AdoptionRefused, register_entry, step
        from subsidy.core.versions import load_versions
        from subsidy.services.console.adapters.grpc import adoption_refusal
        from subsidy.v1 import policy_service_pb2

        self._check(person, "PolicyService", "AdoptVersion")
        self.adopt_requests.append(request)
        versions = load_versions()
        at = f"2026-12-01T10:0{len(self.adopt_requests)}:00Z"
        try:
            event = step(
                self.adoption_state,
                versions,
                version_id=request.version_id,
                policy_version=request.policy_version,
                subject=person.subject,
                at=at,
                reason=request.reason,
            )
        except AdoptionRefused as exc:
            self.adoption_events.append(
                {
                    "event": "refused",
                    "version_id": request.version_id,
                    "policy_version": request.policy_version,
                    "subject": person.subject,
                    "at": at,
                    "reason": request.reason,
                    "kind": exc.kind,
                    "why": str(exc),
                }
            )
            code = {
                "four_eyes": grpc.StatusCode.PERMISSION_DENIED,
                "precondition": grpc.StatusCode.FAILED_PRECONDITION,
                "invalid": grpc.StatusCode.INVALID_ARGUMENT,
            }[exc.kind]
            raise adoption_refusal(RpcRefusal(code, str(exc))) from None
        self.adoption_events.append(event)
        self.adoption_state = self.adoption_state.apply(event)
        adopted = event["event"] == ADOPTED
        return policy_service_pb2.AdoptVersionResponse(
            status=event["event"],
            version_id=event["version_id"],
            policy_version=event["policy_version"],
            proposed_by=event["proposed_by"] if adopted else event["subject"],
            proposed_at=event["proposed_at"] if adopted else event["at"],
            approved_by=event["subject"] if adopted else "",
            adopted_at=event["at"] if adopted else "",
            effective_from=event.get("effective_from", ""),
            redecisions=self.redecisions if adopted else [],
            report=self.adoption_report if adopted else [],
            register_entry=register_entry(event, versions) if adopted else "",
        )

    async def list_versions(self, person: Person) -> Any:
        """Eligibility's read side itself (AdoptionDesk.overview and the
        servicer's response) over the trail this fake has written."""
        import datetime as dt

        from subsidy.core.versions import load_versions
        from subsidy.services.eligibility.adapters.grpc import list_versions_response
        from subsidy.services.eligibility.adoption import AdoptionDesk

        self._check(person, "PolicyService", "ListVersions")
        if self.list_versions_error is not None:
            raise self.list_versions_error
        events = self.adoption_events

        class Trail:
            where = "topic subsidy.policy.adoptions.v1"

            def read(self) -> list[dict[str, Any]]:
                return [dict(e) for e in events]

            def append(self, event: dict[str, Any]) -> None:
                raise AssertionError("ListVersions writes nothing")

        desk = AdoptionDesk(
            load_versions(),
            Trail(),
            lambda: dt.datetime(2026, 12, 1, 10, 30, tzinfo=dt.UTC),
            lambda router: None,
            open_work=None,  # type: ignore[arg-type]  # reading looks nothing up
        )
        return list_versions_response(desk.overview())

    async def list_tranches(
        self, person: Person, due_from: str, due_to: str, statuses: list[int], page_token: str
    ) -> Any:
        self._check(person, "PayoutService", "ListTranches")
        found = [
            t
            for t in self.tranches
            if (not statuses or t.status in statuses)
            and (not due_from or t.due_on >= due_from)
            and (not due_to or t.due_on <= due_to)
        ]
        return payout_pb2.ListTranchesResponse(tranches=found)

    async def health(self) -> list[tuple[str, str, str]]:
        self.calls.append(("Health.Check", ""))
        return [("intake", "127.0.0.1:1", "SERVING"), ("review", "127.0.0.1:2", "NOT_SERVING")]


@dataclasses.dataclass
class Harness:
    console: Console
    services: FakeServices
    client: TestClient
    now: list[float]

    def csrf(self) -> str:
        """The CSRF token of the client's session (as every rendered form carries it)."""
        page = self.client.get("/").text if self.signed_in() else self.client.get("/signin").text
        marker = 'name="csrf_token" value="'
        start = page.index(marker) + len(marker)
        return page[start : page.index('"', start)]

    def signed_in(self) -> bool:
        return self.client.get("/", follow_redirects=False).status_code == 200

    def sign_in(self, role: str, credit_code: str = "", subject: str = "") -> None:
        """As the role's demo subject, or as ``subject`` (the second reviewer: reviewer-li)."""
        self.client.cookies.clear()
        token = self.csrf()
        data = {"csrf_token": token, "subject": subject or SUBJECT_OF_ROLE[role]}
        if role == "ENTERPRISE":
            data["credit_code"] = credit_code or self.services.firm_a
        reply = self.client.post("/signin/dev", data=data, follow_redirects=False)
        assert reply.status_code == 303, reply.text


def make_harness(tmp_path: Path, **overrides: Any) -> Harness:
    tmp_path.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "signing-key.pem"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=KID, use="sig", alg="ES256")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}), encoding="utf-8")
    values: dict[str, Any] = {
        "http_address": "127.0.0.1:8080",
        "session_secret": "s" * 40,
        "jwks_file": str(jwks),
        "audience": AUDIENCE,
        "issuer": ISSUER,
        "dev_mode": True,
        "dev_signing_key_file": str(key_file),
        "dev_key_id": KID,
        "dev_identities": json.dumps(IDENTITIES),
    }
    settings = Settings(**{**values, **overrides})
    settings.validate()
    now = [time.time()]
    services = FakeServices()
    dev = DevSigner(str(key_file), KID, AUDIENCE, ISSUER, settings.dev_identities) if settings.dev_mode else None
    console = Console(settings, services, Tokens(str(jwks), AUDIENCE, ISSUER), dev, clock=lambda: now[0])
    client = TestClient(console.app(), base_url="http://127.0.0.1:8080")
    return Harness(console, services, client, now)
