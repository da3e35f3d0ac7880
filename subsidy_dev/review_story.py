"""The people's part of the demo story, over the review service's gRPC API
as the demo identities (subsidy_dev/identities.py):

1. every decision that needs people is claimed and decided by the first
   reviewer (张敏) and, where four-eyes applies, approved by the second (李强);
   the clause 15 item first asks the firm for a document, which the firm
   sends through the portal;
2. the first reviewer publishes the public notice (公示) of every approved
   award not yet noticed;
3. the portal lodges an objection against one line, which the second
   reviewer dismisses;
4. the stack's clock is moved past the notice period, and the lines become
   payable: only then does payout schedule their tranches.

The end-to-end tests and the fault suite drive the same functions, so the
story `make run` shows is the one they check.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from subsidy_dev.identities import PORTAL, REVIEWER_1, REVIEWER_2, DevIdentityProvider, enterprise

#: What the reviewers of the demo decide where the text sets no amount
#: (clauses 13 and 15). Fictional bases for a demo, not the HR bureau's rules.
MANUAL_AWARDS = {
    "13": (
        30,
        "按区人社局职业技能培训补贴标准（演示数据），以经审核的培训费用的30%核定",
        "training_cost_fen",
    ),
    "15": (None, "按融资对接服务合同实际发生的服务费核定（演示数据）：200,000元", None),
}
DEMO_FINANCING_AWARD_FEN = 20_000_000  # 200,000 元


@dataclass
class ReviewOutcome:
    approved: dict[str, int] = field(default_factory=dict)  # application id -> amount fen
    rejected: list[str] = field(default_factory=list)
    information_asked: list[str] = field(default_factory=list)
    items: int = 0


def _stub(address: str):
    import grpc

    from subsidy.v1 import review_pb2_grpc

    channel = grpc.insecure_channel(address)
    return channel, review_pb2_grpc.ReviewServiceStub(channel)


def queue(stub: Any, idp: DevIdentityProvider, statuses: tuple[str, ...] = ()) -> list[Any]:
    from subsidy.v1 import review_pb2

    items, token = [], ""
    while True:
        reply = stub.ListQueue(
            review_pb2.ListQueueRequest(statuses=list(statuses), page_size=100, page_token=token),
            metadata=idp.metadata(REVIEWER_1),
            timeout=10,
        )
        items.extend(reply.items)
        token = reply.next_page_token
        if not token:
            return items


def wait_queued(stub: Any, idp: DevIdentityProvider, application_ids: set[str], timeout: float = 60) -> list[Any]:
    """Until an item is queued for each of ``application_ids``."""
    deadline = time.monotonic() + timeout
    while True:
        items = queue(stub, idp)
        missing = application_ids - {i.application_id for i in items}
        if not missing:
            return [i for i in items if i.application_id in application_ids]
        if time.monotonic() > deadline:
            raise TimeoutError(f"not in the review queue after {timeout:.0f}s: {', '.join(sorted(missing))}")
        time.sleep(0.3)


def _manual_amount(item: Any, application: Any) -> tuple[int, str, dict[str, int]]:
    share, basis, input_field = MANUAL_AWARDS[item.clause]
    if item.clause == "13":
        cost = application.talent_training.training_cost_fen
        return cost * share // 100, basis, {input_field: cost}
    return DEMO_FINANCING_AWARD_FEN, basis, {}


def review_all(address: str, idp: DevIdentityProvider, application_ids: list[str]) -> ReviewOutcome:
    """Decide every queued item of ``application_ids`` as the demo's
    reviewers do, in that order (oldest application first: the cap room of
    a firm goes to awards in the order they are approved, so a reviewer who
    works first-come first-served gives what `subsidy simulate` gives)."""
    from subsidy.v1 import review_pb2

    first, second = idp.metadata(REVIEWER_1), idp.metadata(REVIEWER_2)
    outcome = ReviewOutcome()
    channel, stub = _stub(address)
    with channel:
        order = {app_id: n for n, app_id in enumerate(application_ids)}
        for item in sorted(wait_queued(stub, idp, set(application_ids)), key=lambda i: order[i.application_id]):
            outcome.items += 1
            if item.status in ("APPROVED", "REJECTED"):
                continue  # decided by an earlier run of the story
            detail = stub.GetItem(review_pb2.GetItemRequest(item_id=item.item_id), metadata=first, timeout=10)
            if item.status == "OPEN":
                stub.ClaimItem(review_pb2.ClaimItemRequest(item_id=item.item_id), metadata=first, timeout=10)
            if item.clause == "15" and not item.information_requests:
                stub.Decide(
                    review_pb2.DecideRequest(
                        item_id=item.item_id,
                        result="MORE_INFO_REQUESTED",
                        missing="请提供与融资对接服务机构签订的服务合同及付款凭证",
                    ),
                    metadata=first,
                    timeout=10,
                )
                stub.AnswerInformation(
                    review_pb2.AnswerInformationRequest(
                        item_id=item.item_id,
                        credit_code=item.credit_code,
                        request_number=1,
                        answer="已上传服务合同（编号 RZ-2025-017）及银行付款回单",
                    ),
                    metadata=idp.metadata(enterprise(item.credit_code)),
                    timeout=10,
                )
                outcome.information_asked.append(item.application_id)
                item = stub.GetItem(review_pb2.GetItemRequest(item_id=item.item_id), metadata=first, timeout=10).item
                if item.status == "OPEN":
                    stub.ClaimItem(review_pb2.ClaimItemRequest(item_id=item.item_id), metadata=first, timeout=10)
            if item.status != "AWAITING_SECOND":
                if item.outcome == "NEEDS_REVIEW":
                    amount, basis, inputs = _manual_amount(item, detail.application)
                else:  # at or above the four-eyes threshold: confirmed as computed
                    amount, basis, inputs = item.max_award_fen, "核对申报材料无误，按政策条款计算金额确认", {}
                item = stub.Decide(
                    review_pb2.DecideRequest(
                        item_id=item.item_id, result="APPROVED", amount_fen=amount, basis=basis, reviewer_amounts=inputs
                    ),
                    metadata=first,
                    timeout=10,
                )
            if item.status == "AWAITING_SECOND":
                item = stub.SecondApprove(
                    review_pb2.SecondApproveRequest(item_id=item.item_id), metadata=second, timeout=10
                )
            if item.status == "APPROVED":
                outcome.approved[item.application_id] = item.amount_fen
            elif item.status == "REJECTED":
                outcome.rejected.append(item.application_id)
    return outcome


@dataclass
class NoticeOutcome:
    notices: list[Any]  # as they ended, every line PAYABLE
    objected_line: str
    lines: int


def publish_and_close_notices(
    stack: Any, idp: DevIdentityProvider, expected_lines: int, *, object_to: str | None = None, timeout: float = 90
) -> NoticeOutcome:
    """Publish the notice of every award recorded and not yet noticed, until
    ``expected_lines`` awards are on a notice (the review service learns of
    grants from subsidy.payouts.v1, so the first list may come before the
    last grant: a second list then carries the rest, as a district's would);
    have the portal object to one line (``object_to``: an application id) and
    the second reviewer dismiss it; move the clock past the last period; wait
    until every line is payable."""
    from subsidy.v1 import review_pb2

    reviewer, second = idp.metadata(REVIEWER_1), idp.metadata(REVIEWER_2)
    channel, stub = _stub(stack.address("review"))
    with channel:
        notices = _publish_until(stub, reviewer, expected_lines, timeout)
        objected = ""
        if object_to:
            line = next(s.line for n in notices for s in n.lines if s.line.application_id == object_to)
            objection = stub.LodgeObjection(
                review_pb2.LodgeObjectionRequest(
                    line_id=line.line_id,
                    credit_code=line.credit_code,
                    reason="该企业实际经营地是否仍在松江区存疑，请核实",
                ),
                metadata=idp.metadata(PORTAL),
                timeout=10,
            )
            stub.ResolveObjection(
                review_pb2.ResolveObjectionRequest(
                    objection_id=objection.objection_id,
                    resolution="DISMISSED",
                    reasons="经核实，企业工商、税务登记均在松江区，实际经营地与登记一致",
                ),
                metadata=second,
                timeout=10,
            )
            objected = line.line_id
        # A line is payable the day after its period's last day.
        last = max(_date(n.period_last_day) for n in notices)
        if stack.today() <= last:
            stack.advance_clock(days=(last - stack.today()).days + 1)
        deadline = time.monotonic() + timeout
        while True:
            current = [
                stub.GetNotice(review_pb2.GetNoticeRequest(notice_id=n.notice_id), metadata=reviewer, timeout=10).notice
                for n in notices
            ]
            waiting = [s.line.application_id for n in current for s in n.lines if s.status != "PAYABLE"]
            if not waiting:
                return NoticeOutcome(current, objected, sum(len(n.lines) for n in current))
            if time.monotonic() > deadline:
                raise TimeoutError(f"lines not payable after {timeout:.0f}s: {waiting}")
            time.sleep(0.3)


def _publish_until(stub: Any, reviewer: Any, expected_lines: int, timeout: float) -> list[Any]:
    import grpc

    from subsidy.v1 import review_pb2

    deadline = time.monotonic() + timeout
    published: list[Any] = []
    while sum(len(n.lines) for n in published) < expected_lines:
        if time.monotonic() > deadline:
            lines = sum(len(n.lines) for n in published)
            raise TimeoutError(f"{lines} of {expected_lines} awards on a notice after {timeout:.0f}s")
        try:
            published.append(
                stub.PublishNotice(
                    review_pb2.PublishNoticeRequest(title="松江区工业互联网专项资金拟支持项目公示"),
                    metadata=reviewer,
                    timeout=10,
                )
            )
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:  # anything but "nothing to notice yet"
                raise
        time.sleep(1.0)
    return published


def _date(text: str):
    import datetime as dt

    return dt.date.fromisoformat(text)
