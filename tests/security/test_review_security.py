"""The review service's edge with JWT authentication (issue 12): four-eyes is
by token subject (the same subject twice is PERMISSION_DENIED, another one
approves), an ENTERPRISE answers information requests and lodges objections
only as its own firm, and nothing a refusal touched changed."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest

from security.conftest import ENTERPRISE_CODE, OTHER_CODE
from subsidy.core.domain import NEEDS_REVIEW, Decision, Reason
from subsidy.core.workflow import review
from subsidy.core.workflow.settings import load_workflow
from subsidy.services.review import handlers
from subsidy.v1 import review_pb2, review_pb2_grpc

WORKFLOW = load_workflow()
NOW = dt.datetime(2025, 6, 3, 2, tzinfo=dt.UTC)


def _md(signers, role, sub, code=""):
    return (("authorization", f"Bearer {signers['rsa'].token(role, code, sub=sub)}"),)


def _queue(store, app_id):
    decision = review.stamp(
        Decision(
            decision_id=f"{app_id}@v",
            application_id=app_id,
            credit_code=ENTERPRISE_CODE,
            clause="13",
            outcome=NEEDS_REVIEW,
            max_award_fen=0,
            reasons=(Reason("REVIEW_REQUIRED", "13", "转人工审核"),),
            policy_version="v",
            decision_year=2025,
            submitted_on=dt.date(2025, 6, 3),
        ),
        WORKFLOW.on(dt.date(2025, 6, 3)),
    )
    handlers.queue_decision(store, decision, WORKFLOW, dt.date(2025, 6, 3), NOW, "0" * 32)
    return review.item_id_for(decision.decision_id)


def test_four_eyes_is_by_token_subject(jwt_servers, signers):
    item_id = _queue(jwt_servers.review_store, "SEC-REVIEW-1")
    alice = _md(signers, "REVIEWER", "alice")
    with grpc.insecure_channel(jwt_servers.address("review")) as channel:
        stub = review_pb2_grpc.ReviewServiceStub(channel)
        assert stub.ClaimItem(review_pb2.ClaimItemRequest(item_id=item_id), metadata=alice).item.assignee == "alice"
        first = stub.Decide(
            review_pb2.DecideRequest(item_id=item_id, result="APPROVED", amount_fen=500_000, basis="区人社局30%"),
            metadata=alice,
        ).item
        assert first.status == "AWAITING_SECOND"
        with pytest.raises(grpc.RpcError) as refused:
            stub.SecondApprove(review_pb2.SecondApproveRequest(item_id=item_id), metadata=alice)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "four-eyes" in refused.value.details()
        unchanged = stub.GetItem(review_pb2.GetItemRequest(item_id=item_id), metadata=alice).item
        assert unchanged == first
        with pytest.raises(grpc.RpcError) as operator:
            stub.SecondApprove(
                review_pb2.SecondApproveRequest(item_id=item_id), metadata=_md(signers, "OPERATOR", "olga")
            )
        assert operator.value.code() == grpc.StatusCode.PERMISSION_DENIED
        done = stub.SecondApprove(
            review_pb2.SecondApproveRequest(item_id=item_id), metadata=_md(signers, "REVIEWER", "bob")
        ).item
        assert (done.status, done.first_reviewer, done.second_reviewer) == ("APPROVED", "alice", "bob")
        trail = stub.ListAuditTrail(
            review_pb2.ListAuditTrailRequest(target=item_id), metadata=_md(signers, "OPERATOR", "olga")
        )
        assert [(e.action, e.subject) for e in trail.entries] == [
            ("QUEUED", "system:review"),
            ("CLAIMED", "alice"),
            ("DECIDED_APPROVED", "alice"),
            ("SECOND_APPROVED", "bob"),
        ]


def test_an_enterprise_answers_only_for_its_own_firm(jwt_servers, signers):
    item_id = _queue(jwt_servers.review_store, "SEC-REVIEW-2")
    alice = _md(signers, "REVIEWER", "alice")
    with grpc.insecure_channel(jwt_servers.address("review")) as channel:
        stub = review_pb2_grpc.ReviewServiceStub(channel)
        stub.ClaimItem(review_pb2.ClaimItemRequest(item_id=item_id), metadata=alice)
        stub.Decide(
            review_pb2.DecideRequest(item_id=item_id, result="MORE_INFO_REQUESTED", missing="培训签到表"),
            metadata=alice,
        )
        other = _md(signers, "ENTERPRISE", "other-firm", OTHER_CODE)
        for code in (OTHER_CODE, ENTERPRISE_CODE):
            with pytest.raises(grpc.RpcError) as refused:
                stub.AnswerInformation(
                    review_pb2.AnswerInformationRequest(
                        item_id=item_id, credit_code=code, request_number=1, answer="x"
                    ),
                    metadata=other,
                )
            # its own code: the item is not its firm's (NOT_FOUND, no oracle); another's: the policy refuses
            assert refused.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED)
        own = _md(signers, "ENTERPRISE", "the-firm", ENTERPRISE_CODE)
        answered = stub.AnswerInformation(
            review_pb2.AnswerInformationRequest(
                item_id=item_id, credit_code=ENTERPRISE_CODE, request_number=1, answer="已补充签到表"
            ),
            metadata=own,
        ).item
        assert answered.status == "CLAIMED" and answered.information_requests[0].answer == "已补充签到表"
        with pytest.raises(grpc.RpcError) as twice:
            stub.AnswerInformation(
                review_pb2.AnswerInformationRequest(
                    item_id=item_id, credit_code=ENTERPRISE_CODE, request_number=1, answer="again"
                ),
                metadata=own,
            )
        assert twice.value.code() == grpc.StatusCode.FAILED_PRECONDITION
