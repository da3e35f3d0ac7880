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
    works first-come first-served gives what `subsidy simulate` gives).

    Each item is taken from whatever state it is in to APPROVED, so a run
    cut short (a service killed mid-way, in the fault suite) is finished by
    running it again."""
    outcome = ReviewOutcome()
    channel, stub = _stub(address)
    with channel:
        order = {app_id: n for n, app_id in enumerate(application_ids)}
        for item in sorted(wait_queued(stub, idp, set(application_ids)), key=lambda i: order[i.application_id]):
            outcome.items += 1
            item = _finish(stub, idp, item, outcome)
            if item.status == "APPROVED":
                outcome.approved[item.application_id] = item.amount_fen
            elif item.status == "REJECTED":
                outcome.rejected.append(item.application_id)
    return outcome


def _finish(stub: Any, idp: DevIdentityProvider, item: Any, outcome: ReviewOutcome) -> Any:
    from subsidy.v1 import review_pb2

    first, second = idp.metadata(REVIEWER_1), idp.metadata(REVIEWER_2)
    for _ in range(12):  # each pass moves the item one step; a handful suffice
        detail = stub.GetItem(review_pb2.GetItemRequest(item_id=item.item_id), metadata=first, timeout=10)
        item = detail.item
        if item.status in ("APPROVED", "REJECTED"):
            return item
        if item.status == "OPEN":
            stub.ClaimItem(review_pb2.ClaimItemRequest(item_id=item.item_id), metadata=first, timeout=10)
        elif item.status == "CLAIMED" and item.clause == "15" and not item.information_requests:
            stub.Decide(
                review_pb2.DecideRequest(
                    item_id=item.item_id,
                    result="MORE_INFO_REQUESTED",
                    missing="请提供与融资对接服务机构签订的服务合同及付款凭证",
                ),
                metadata=first,
                timeout=10,
            )
        elif item.status == "MORE_INFO_REQUESTED":
            request = item.information_requests[-1]
            stub.AnswerInformation(
                review_pb2.AnswerInformationRequest(
                    item_id=item.item_id,
                    credit_code=item.credit_code,
                    request_number=request.number,
                    answer="已上传服务合同（编号 RZ-2025-017）及银行付款回单",
                ),
                metadata=idp.metadata(enterprise(item.credit_code)),
                timeout=10,
            )
            if item.application_id not in outcome.information_asked:
                outcome.information_asked.append(item.application_id)
        elif item.status == "CLAIMED":
            if item.outcome == "NEEDS_REVIEW":
                amount, basis, inputs = _manual_amount(item, detail.application)
            else:  # at or above the four-eyes threshold: confirmed as computed
                amount, basis, inputs = item.max_award_fen, "核对申报材料无误，按政策条款计算金额确认", {}
            stub.Decide(
                review_pb2.DecideRequest(
                    item_id=item.item_id, result="APPROVED", amount_fen=amount, basis=basis, reviewer_amounts=inputs
                ),
                metadata=first,
                timeout=10,
            )
        elif item.status == "AWAITING_SECOND":
            stub.SecondApprove(review_pb2.SecondApproveRequest(item_id=item.item_id), metadata=second, timeout=10)
        else:
            raise AssertionError(f"review item {item.item_id} in an unknown state {item.status!r}")
    raise AssertionError(f"review item {item.item_id} not decided after 12 steps: {item.status}")


@dataclass
class NoticeOutcome:
    notices: list[Any]  # as they ended, every line PAYABLE
    objected_line: str
    lines: int


def publish_and_close_notices(
    stack: Any,
    idp: DevIdentityProvider,
    application_ids: list[str],
    *,
    object_to: str | None = None,
    timeout: float = 90,
) -> NoticeOutcome:
    """Publish the notice of every award recorded and not yet noticed, until
    the awards of ``application_ids`` are all on a notice (the review service
    learns of grants from subsidy.payouts.v1, so a first list may come before
    the last grant: a second list then carries the rest, as a district's
    would); have the portal object to the line of ``object_to`` and the
    second reviewer dismiss it; move the clock past the last period; wait
    until every line is payable. Resumable: run again after a failure, it
    goes on from what the review service already holds."""
    from subsidy.core.workflow.notice import objection_id_for
    from subsidy.v1 import review_pb2

    reviewer, second = idp.metadata(REVIEWER_1), idp.metadata(REVIEWER_2)
    wanted = set(application_ids)
    channel, stub = _stub(stack.address("review"))
    with channel:
        notices = _publish_until(stub, reviewer, wanted, timeout)
        objected = ""
        if object_to:
            state = next(s for n in notices for s in n.lines if s.line.application_id == object_to)
            line = state.line
            if state.status == "NOTICED":
                stub.LodgeObjection(
                    review_pb2.LodgeObjectionRequest(
                        line_id=line.line_id,
                        credit_code=line.credit_code,
                        reason="该企业实际经营地是否仍在松江区存疑，请核实",
                    ),
                    metadata=idp.metadata(PORTAL),
                    timeout=10,
                )
                state = _line(stub, reviewer, line)
            if state.status == "HELD":
                stub.ResolveObjection(
                    review_pb2.ResolveObjectionRequest(
                        objection_id=objection_id_for(line.line_id, 1),
                        resolution="DISMISSED",
                        reasons="经核实，企业工商、税务登记均在松江区，实际经营地与登记一致",
                    ),
                    metadata=second,
                    timeout=10,
                )
            objected = line.line_id
        if not notices:  # nothing awaited a notice (every award already noticed, or none)
            return NoticeOutcome([], objected, 0)
        # A line is payable the day after its period's last day.
        last = max(_date(n.period_last_day) for n in notices)
        if stack.today() <= last:
            stack.advance_clock(days=(last - stack.today()).days + 1)
        deadline = time.monotonic() + timeout
        while True:
            current = _ours(stub, reviewer, wanted)
            waiting = [s.line.application_id for n in current for s in n.lines if s.status != "PAYABLE"]
            if not waiting:
                return NoticeOutcome(current, objected, sum(len(n.lines) for n in current))
            if time.monotonic() > deadline:
                raise TimeoutError(f"lines not payable after {timeout:.0f}s: {waiting}")
            time.sleep(0.3)


def _ours(stub: Any, reviewer: Any, wanted: set[str]) -> list[Any]:
    """The notices holding a line of ``wanted``, each with its lines as they are now."""
    from subsidy.v1 import review_pb2

    found, token = [], ""
    while True:
        reply = stub.ListNotices(
            review_pb2.ListNoticesRequest(page_size=100, page_token=token), metadata=reviewer, timeout=10
        )
        found += [n for n in reply.notices if any(s.line.application_id in wanted for s in n.lines)]
        token = reply.next_page_token
        if not token:
            return found


def _line(stub: Any, reviewer: Any, line: Any) -> Any:
    for notice in _ours(stub, reviewer, {line.application_id}):
        for state in notice.lines:
            if state.line.line_id == line.line_id:
                return state
    raise AssertionError(f"line {line.line_id} is on no notice")


def _publish_until(stub: Any, reviewer: Any, wanted: set[str], timeout: float) -> list[Any]:
    import grpc

    from subsidy.platform.grpc import status as rich_status
    from subsidy.services.review.model import NOTICE_POOL_EMPTY
    from subsidy.v1 import review_pb2

    deadline = time.monotonic() + timeout
    while True:
        notices = _ours(stub, reviewer, wanted)
        missing = wanted - {s.line.application_id for n in notices for s in n.lines}
        if not missing:
            return notices
        if time.monotonic() > deadline:
            raise TimeoutError(f"not on a notice after {timeout:.0f}s: {', '.join(sorted(missing))}")
        try:
            stub.PublishNotice(
                review_pb2.PublishNoticeRequest(title="松江区工业互联网专项资金拟支持项目公示"),
                metadata=reviewer,
                timeout=10,
            )
        except grpc.RpcError as exc:
            # Only "nothing to notice yet" is waited out (the grants are on their way);
            # any other refusal, such as a notice period in a year the holiday calendar
            # does not know, is raised as it is rather than waited into a timeout.
            if not (
                exc.code() == grpc.StatusCode.FAILED_PRECONDITION
                and NOTICE_POOL_EMPTY in rich_status.precondition_types(exc.trailing_metadata())
            ):
                raise
            time.sleep(1.0)


def _date(text: str):
    import datetime as dt

    return dt.date.fromisoformat(text)
