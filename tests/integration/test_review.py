"""The review service in-process against the harness's Kafka broker, on
SQLite and on PostgreSQL, through its gRPC API: a decision with
review_required on subsidy.decisions.v1 becomes a queue item; claim, decide,
a same-subject second approval refused, a second reviewer approves; the
reviewed decision appears on subsidy.decisions.v1; the grant payout records
for it fills the notice pool; publish, lodge an objection, dismiss it,
advance the FixedClock past the period: LinePayable on subsidy.notices.v1.
Replays change nothing."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess

import grpc
import pytest

from subsidy.contracts import cloudevents, codec, topics
from subsidy.core.workflow import review
from subsidy.platform.clock import FixedClock
from subsidy.v1 import decision_pb2, notice_pb2, review_pb2

from .running import wait_for
from .test_payout_support import read_topic
from .test_review_support import (
    Producer,
    RunningReview,
    as_,
    database_url,
    new_firm,
    new_id,
    settings,
    training_decision,
)

pytestmark = pytest.mark.integration

PUBLISHED_ON = dt.date(2025, 1, 24)  # Friday before the Spring Festival: the period ends on 2025-02-06
R = review_pb2


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def svc(request, kafka_bootstrap, tmp_path_factory):
    postgres_url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    url = database_url(request.param, tmp_path_factory.mktemp("review"), postgres_url)
    with RunningReview(settings(kafka_bootstrap, url), FixedClock(PUBLISHED_ON)) as running:
        yield running


@pytest.fixture(scope="module")
def producer(kafka_bootstrap):
    p = Producer(kafka_bootstrap)
    yield p
    p.close()


def records(bootstrap, topic, firm, event_ids, timeout=60.0):
    found = read_topic(
        bootstrap,
        topic,
        lambda r: r.key == firm.encode(),
        lambda got: set(event_ids) <= {cloudevents.as_dict(r.headers).get("ce_id") for r in got},
        timeout,
    )
    return {cloudevents.as_dict(r.headers)["ce_id"]: r for r in found}


def refusal(call):
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code(), raised.value.details()


def test_from_review_to_a_payable_line(svc, producer, kafka_bootstrap):
    svc.clock.set(PUBLISHED_ON)
    firm, app = new_firm(), new_id()
    decision = training_decision(app, firm, dt.date(2025, 1, 6))
    item_id = review.item_id_for(decision.decision_id)
    producer.application(app, firm, "上海松江云栈培训有限公司")
    producer.decision(decision)
    producer.decision(decision)  # a redelivery: still one item
    alice, bob = as_("alice"), as_("bob")

    def queued():
        items = svc.stub.ListQueue(R.ListQueueRequest(clause="13"), metadata=alice, timeout=5).items
        return [i for i in items if i.item_id == item_id]

    (item,) = wait_for(queued, timeout=60)
    assert (item.status, list(item.review_reasons)) == ("OPEN", [review.NEEDS_REVIEW_OUTCOME])
    detail = wait_for(
        lambda: (lambda d: d if d.HasField("application") else None)(
            svc.stub.GetItem(R.GetItemRequest(item_id=item_id), metadata=alice, timeout=5)
        ),
        timeout=60,
    )
    assert detail.application.firm.name == "上海松江云栈培训有限公司"
    assert detail.decision_reasons[0].code == "REVIEW_REQUIRED"

    svc.stub.ClaimItem(R.ClaimItemRequest(item_id=item_id), metadata=alice, timeout=5)
    code, details = refusal(
        lambda: svc.stub.Decide(
            R.DecideRequest(item_id=item_id, result="APPROVED", amount_fen=100_000_001, basis="x"), metadata=alice
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("amount_fen:")
    first = svc.stub.Decide(
        R.DecideRequest(
            item_id=item_id,
            result="APPROVED",
            amount_fen=600_000,
            basis="按区人社局培训补贴比例30%核定",
            reviewer_amounts={"training_cost_fen": 2_000_000},
        ),
        metadata=alice,
        timeout=5,
    ).item
    assert first.status == "AWAITING_SECOND"
    code, details = refusal(lambda: svc.stub.SecondApprove(R.SecondApproveRequest(item_id=item_id), metadata=alice))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "four-eyes" in details
    assert svc.stub.GetItem(R.GetItemRequest(item_id=item_id), metadata=alice).item == first
    done = svc.stub.SecondApprove(R.SecondApproveRequest(item_id=item_id), metadata=bob, timeout=5).item
    assert (done.status, done.first_reviewer, done.second_reviewer) == ("APPROVED", "alice", "bob")
    code, _ = refusal(
        lambda: svc.stub.Decide(R.DecideRequest(item_id=item_id, result="REJECTED", reasons="x"), metadata=alice)
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION

    reviewed_id = done.reviewed_decision_id
    assert reviewed_id == f"{decision.decision_id}/review:{item_id}"
    record = records(kafka_bootstrap, topics.DECISIONS.name, firm, [reviewed_id])[reviewed_id]
    reviewed = codec.decision_from_proto(decision_pb2.Decision.FromString(record.value))
    assert (reviewed.outcome, reviewed.max_award_fen, reviewed.review_required) == ("ELIGIBLE", 600_000, False)
    assert (
        reviewed.review.reviewers == ("alice", "bob") and reviewed.review.supersedes_decision_id == decision.decision_id
    )
    review_ids = [f"requested:{item_id}", f"decided:{item_id}", f"second:{item_id}"]
    assert set(review_ids) <= set(records(kafka_bootstrap, topics.REVIEWS.name, firm, review_ids))

    producer.grant_recorded(reviewed, 600_000)  # payout applied the reviewed decision
    wait_for(
        lambda: svc.stub.GetItem(R.GetItemRequest(item_id=item_id), metadata=alice).ledger_granted_fen == 600_000,
        timeout=60,
    )
    notice = svc.stub.PublishNotice(R.PublishNoticeRequest(), metadata=alice, timeout=10).notice
    (line,) = [x for x in notice.lines if x.line.credit_code == firm]
    assert (notice.period_first_day, notice.period_last_day) == ("2025-01-24", "2025-02-06")
    assert (line.line.decision_id, line.line.amount_fen, line.line.firm_name) == (
        reviewed_id,
        600_000,
        "上海松江云栈培训有限公司",
    )
    doc = svc.stub.GetNotice(R.GetNoticeRequest(notice_id=notice.notice_id), metadata=as_("someone", "PORTAL"))
    assert "上海松江云栈培训有限公司" in doc.html and firm in doc.html
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", "-", "-"], input=doc.pdf, capture_output=True, check=True).stdout.decode()
        assert all(s in text for s in ("上海松江云栈培训有限公司", firm, "第13条", "6,000元"))

    portal = as_("portal-1", "PORTAL")
    objection = svc.stub.LodgeObjection(
        R.LodgeObjectionRequest(line_id=line.line.line_id, reason="培训未实际开展"), metadata=portal, timeout=5
    ).objection
    resolved = svc.stub.ResolveObjection(
        R.ResolveObjectionRequest(objection_id=objection.objection_id, resolution="DISMISSED", reasons="经核实已开展"),
        metadata=bob,
        timeout=5,
    ).objection
    assert resolved.status == "DISMISSED"

    svc.clock.set(dt.date(2025, 2, 6))  # the period's last day: not yet
    svc.app.scheduler.wake()
    svc.clock.set(dt.date(2025, 2, 7))
    svc.app.scheduler.wake()
    payable_id = f"payable:{reviewed_id}"
    found = records(kafka_bootstrap, topics.NOTICES.name, firm, [payable_id])
    event = notice_pb2.NoticeEvent.FromString(found[payable_id].value)
    assert (event.line_payable.payable_on, event.line_payable.application_id) == ("2025-02-07", app)
    kinds = {notice_pb2.NoticeEvent.FromString(r.value).WhichOneof("event") for r in found.values()}
    assert kinds == {"notice_published", "objection_lodged", "objection_resolved", "line_payable"}

    code, details = refusal(
        lambda: svc.stub.LodgeObjection(
            R.LodgeObjectionRequest(line_id=line.line.line_id, reason="迟到"), metadata=portal
        )
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "2025-02-06" in details
    # A replay of the decision and of the grant changes nothing: one item, still APPROVED, nothing new to notice.
    producer.decision(decision)
    producer.grant_recorded(reviewed, 600_000)
    assert [i.status for i in queued()] == ["APPROVED"]
    # The shared broker holds other tests' grants too: a second list may exist, never with this line again.
    try:
        again = svc.stub.PublishNotice(R.PublishNoticeRequest(), metadata=alice, timeout=10).notice
        assert all(x.line.decision_id != reviewed_id for x in again.lines)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
    entries, token = [], ""
    while True:  # the list may hold other tests' firms too: read the whole trail
        page = svc.stub.ListAuditTrail(
            R.ListAuditTrailRequest(target=notice.notice_id, page_size=200, page_token=token),
            metadata=as_("olga", "OPERATOR"),
        )
        entries += page.entries
        token = page.next_page_token
        if not token:
            break
    mine = [e.action for e in entries if line.line.line_id in e.after]
    assert mine == ["NOTICE_PUBLISHED", "OBJECTION_LODGED", "OBJECTION_DISMISSED", "LINE_PAYABLE"], mine
    assert all(e.subject and e.at for e in entries)
