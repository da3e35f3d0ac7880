"""The payout service in-process against the harness's Kafka broker, on
SQLite and on PostgreSQL: decisions in, ledger and events out, replays,
caps, payments, the scheduler with an injected clock, cancelling, the CSV."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from subsidy.contracts import topics
from subsidy.platform.clock import FixedClock
from subsidy.v1 import payout_pb2

from .test_payout_support import (
    RENT_CAP,
    ROOT,
    Producer,
    RunningPayout,
    database_url,
    dead_letters,
    granted_and_payable,
    new_firm,
    new_id,
    payout_events,
    rent_decision,
    settings,
    wait_for,
)

pytestmark = pytest.mark.integration

START = dt.date(2025, 1, 1)
S = payout_pb2


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def payout(request, kafka_bootstrap, tmp_path_factory):
    postgres_url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    url = database_url(request.param, tmp_path_factory.mktemp("payout"), postgres_url)
    clock = FixedClock(START)
    with RunningPayout(settings(kafka_bootstrap, url), clock) as svc:
        svc.url = url
        yield svc


@pytest.fixture(scope="module")
def producer(kafka_bootstrap):
    p = Producer(kafka_bootstrap)
    yield p
    p.close()


def ledger_of(svc, firm, grants=1):
    return wait_for(
        lambda: (lambda r: r if len(r.grants) >= grants else None)(
            svc.stub.GetLedger(S.GetLedgerRequest(credit_code=firm), timeout=5)
        ),
        timeout=30,
    )


def test_a_decision_becomes_a_reserved_grant_and_its_payable_line_schedules_the_tranches(
    payout, producer, kafka_bootstrap
):
    firm, app = new_firm(), new_id()
    decision = rent_decision(app, firm, 100_000_001)
    trace = producer.decision(decision)
    [(_, _, recorded)] = payout_events(kafka_bootstrap, firm, [f"grant:{app}"], settle=0.5)
    grant = recorded.grant_recorded
    assert (
        grant.application_id,
        grant.granted_fen,
        grant.max_award_fen,
        grant.tranche_count,
        grant.decision_year,
        grant.state,
    ) == (app, 100_000_001, 100_000_001, 0, 2025, S.GRANT_STATE_RESERVED)
    reserved = ledger_of(payout, firm)
    assert (reserved.grants[0].state, list(reserved.grants[0].tranches)) == (S.GRANT_STATE_RESERVED, [])
    assert (reserved.scopes[0].used_fen, reserved.scopes[0].reserved_fen) == (100_000_001, 100_000_001)

    producer.notice_line(decision, day="2025-03-14", notice_id="N-2025-03")
    ids = [f"grant:{app}", f"payable:{app}@it+payout"] + [f"scheduled:{app}/tranche-{k}" for k in range(3)]
    events = payout_events(kafka_bootstrap, firm, ids)
    assert [e[0] for e in events] == ids  # one partition per firm: in order
    payable = events[1][2].grant_payable
    assert (payable.notice_id, payable.payable_on, payable.granted_fen, payable.tranche_count) == (
        "N-2025-03",
        "2025-03-14",
        100_000_001,
        3,
    )
    scheduled = [e[2].tranche_scheduled for e in events[2:]]
    assert [(t.number, t.amount_fen, t.due_on, t.budget_year) for t in scheduled] == [
        (0, 40_000_000, "2025-03-14", 2025),
        (1, 30_000_000, "2026-02-20", 2026),
        (2, 30_000_001, "2027-02-20", 2027),
    ]
    assert all(t.credit_code == firm and t.decision_id == f"{app}@it+payout" for t in scheduled)
    for event_id, headers, _ in events:
        assert headers["ce_id"] == event_id
        assert headers["ce_source"] == "/songjiang/subsidy/payout"
        assert headers["ce_traceparent"].startswith(f"00-{trace}-")
        assert headers["content-type"] == "application/protobuf"
    assert events[2][1]["ce_type"] == "cn.gov.songjiang.subsidy.payout.tranche_scheduled.v1"
    assert events[1][1]["ce_type"] == "cn.gov.songjiang.subsidy.payout.grant_payable.v1"
    assert events[0][1]["ce_type"] == "cn.gov.songjiang.subsidy.payout.grant_recorded.v1"

    ledger = ledger_of(payout, firm)
    [g] = ledger.grants
    assert (g.application_id, g.granted_fen, g.outcome, g.state, g.payable_on) == (
        app,
        100_000_001,
        "ELIGIBLE",
        S.GRANT_STATE_PAYABLE,
        "2025-03-14",
    )
    assert [(t.tranche_id, t.status) for t in g.tranches] == [
        (f"{app}/tranche-{k}", S.TRANCHE_STATUS_SCHEDULED) for k in range(3)
    ]
    [scope] = ledger.scopes
    assert (scope.scope, scope.limit, scope.used_fen, scope.cap_fen, scope.remaining_fen, scope.payable_fen) == (
        "1.rent",
        "cumulative_cap",
        100_000_001,
        RENT_CAP,
        RENT_CAP - 100_000_001,
        100_000_001,
    )


def test_review_holds_a_decision_the_reviewed_one_reserves_and_a_withdrawn_line_releases_it(
    payout, producer, kafka_bootstrap
):
    import dataclasses

    from subsidy.core.domain import ReviewRecord

    firm, app = new_firm(), new_id()
    computed = dataclasses.replace(
        rent_decision(app, firm, 300_000_000), review_required=True, review_reasons=("ABOVE_FOUR_EYES_THRESHOLD",)
    )
    producer.decision(computed)
    reviewed = dataclasses.replace(
        rent_decision(app, firm, 250_000_000),
        decision_id=f"{computed.decision_id}/review:R-1",
        review=ReviewRecord(computed.decision_id, "R-1", ("alice", "bob"), "核定", "APPROVED", "2025-03-01T00:00:00Z"),
    )
    producer.decision(reviewed)
    [(event_id, _, recorded)] = payout_events(kafka_bootstrap, firm, [f"grant:{app}"], settle=0.5)
    assert (recorded.grant_recorded.decision_id, recorded.grant_recorded.granted_fen) == (
        reviewed.decision_id,
        250_000_000,
    )
    # A line of the held decision is impossible: dead-lettered, saying why.
    producer.notice_line(computed)
    [letter] = dead_letters(kafka_bootstrap, topics.NOTICES_DLQ.name, firm.encode())
    assert "held for review and never applied" in letter.error and letter.consumer == "payout-notices"
    producer.notice_line(reviewed, "withdrawn", day="2025-03-10", reason="异议成立")
    events = payout_events(kafka_bootstrap, firm, [f"withdrawn:{reviewed.decision_id}"])
    [withdrawn] = [e[2].grant_withdrawn for e in events if e[0].startswith("withdrawn:")]
    assert (withdrawn.released_fen, withdrawn.reason, withdrawn.withdrawn_on) == (250_000_000, "异议成立", "2025-03-10")
    ledger = wait_for(
        lambda: (lambda r: r if r.grants and r.grants[0].state == S.GRANT_STATE_WITHDRAWN else None)(
            payout.stub.GetLedger(S.GetLedgerRequest(credit_code=firm), timeout=5)
        )
    )
    assert (ledger.scopes[0].used_fen, list(ledger.grants[0].tranches)) == (0, [])
    # Payable after withdrawn: dead-lettered, nothing scheduled.
    producer.notice_line(reviewed)
    letters = dead_letters(kafka_bootstrap, topics.NOTICES_DLQ.name, firm.encode(), expect=2)
    assert "it cannot become PAYABLE" in letters[1].error


def test_the_same_decision_replayed_changes_nothing_and_publishes_nothing(payout, producer, kafka_bootstrap):
    firm, app = new_firm(), new_id()
    decision = rent_decision(app, firm, 1000, shares=(100,))
    granted_and_payable(producer, kafka_bootstrap, decision, wait_for_tranches=1)
    producer.decision(decision)
    producer.notice_line(decision)  # a replayed line: nothing new either
    marker = new_id()  # a later decision of the same firm: once it is out, the replays were consumed
    producer.decision(rent_decision(marker, firm, 1000, shares=(100,)))
    events = payout_events(kafka_bootstrap, firm, [f"grant:{marker}"], settle=1.0)
    assert [e[0] for e in events] == [
        f"grant:{app}",
        f"payable:{app}@it+payout",
        f"scheduled:{app}/tranche-0",
        f"grant:{marker}",
    ]
    assert [g.application_id for g in ledger_of(payout, firm, 2).grants] == sorted([app, marker])
    assert ledger_of(payout, firm, 2).scopes[0].used_fen == 2000


def test_the_cap_holds_across_applications_and_the_excess_is_not_granted(payout, producer, kafka_bootstrap):
    firm = new_firm()
    apps = [new_id() for _ in range(3)]
    for app in apps:
        producer.decision(rent_decision(app, firm, 240_000_000, shares=(100,)))
    events = payout_events(kafka_bootstrap, firm, [f"grant:{a}" for a in apps])
    granted = {e[2].grant_recorded.application_id: e[2].grant_recorded for e in events if e[0].startswith("grant:")}
    assert [granted[a].granted_fen for a in apps] == [240_000_000, 240_000_000, 20_000_000]
    assert [r.code for r in granted[apps[2]].reasons] == ["CAP_PARTIAL"]
    ledger = ledger_of(payout, firm, 3)
    assert (ledger.scopes[0].used_fen, ledger.scopes[0].remaining_fen) == (RENT_CAP, 0)


def test_an_ineligible_decision_records_a_grant_of_0_and_an_undecodable_one_goes_to_the_dead_letter_topic(
    payout, producer, kafka_bootstrap
):
    firm, app = new_firm(), new_id()
    producer.decision(rent_decision(app, firm, outcome="NEEDS_REVIEW"))
    [(event_id, _, event)] = payout_events(kafka_bootstrap, firm, [f"grant:{app}"], settle=0.5)
    assert event.grant_recorded.granted_fen == 0 and event.grant_recorded.tranche_count == 0
    key = new_id("garbage").encode()
    producer.raw(topics.DECISIONS.name, key, b"\xff\xfenot a decision")
    [letter] = dead_letters(kafka_bootstrap, topics.DECISIONS_DLQ.name, key)
    assert letter.value == b"\xff\xfenot a decision" and "not a subsidy.v1.Decision" in letter.error
    assert letter.consumer == "payout"


def test_a_payment_pays_its_tranche_a_repeat_is_ignored_and_mismatches_go_to_the_dead_letter_topic(
    payout, producer, kafka_bootstrap
):
    firm, app = new_firm(), new_id()
    granted_and_payable(producer, kafka_bootstrap, rent_decision(app, firm, 1000, shares=(50, 50)), wait_for_tranches=2)
    pay = new_id("PAY")
    producer.payment(pay, f"{app}/tranche-0", firm, 500)
    producer.payment(pay, f"{app}/tranche-0", firm, 500)  # a repeat: ignored
    producer.payment(new_id("PAY"), f"{app}/tranche-9", firm, 500)  # unknown tranche
    producer.payment(new_id("PAY"), f"{app}/tranche-1", firm, 499)  # wrong amount
    letters = dead_letters(kafka_bootstrap, topics.PAYMENTS_DLQ.name, firm.encode(), expect=2)
    assert sorted(letter.error.split(":")[0] for letter in letters) == ["amount mismatch", "unknown tranche"]
    assert all(letter.consumer == "payout-payments" for letter in letters)
    events = payout_events(kafka_bootstrap, firm, [f"paid:{app}/tranche-0"], settle=1.0)
    [paid] = [e[2].tranche_paid for e in events if e[0].startswith("paid:")]
    assert (paid.payment_id, paid.amount_fen, paid.paid_on) == (pay, 500, "2025-03-01")
    tranches = {t.tranche_id: t for t in ledger_of(payout, firm).grants[0].tranches}
    assert (tranches[f"{app}/tranche-0"].status, tranches[f"{app}/tranche-0"].payment_id) == (
        S.TRANCHE_STATUS_PAID,
        pay,
    )
    assert tranches[f"{app}/tranche-1"].status == S.TRANCHE_STATUS_SCHEDULED


def test_tranches_become_due_when_the_injected_clock_reaches_their_day(payout, producer, kafka_bootstrap):
    firm, app = new_firm(), new_id()
    granted_and_payable(
        producer,
        kafka_bootstrap,
        rent_decision(app, firm, 1000, submitted_on="2025-04-15", shares=(50, 50)),
        wait_for_tranches=2,
    )
    try:
        payout.clock.set(dt.date(2025, 4, 15))
        payout.app.scheduler.wake()
        events = payout_events(kafka_bootstrap, firm, [f"due:{app}/tranche-0"], settle=1.0)
        due = [e[2].tranche_due for e in events if e[0].startswith("due:")]
        assert [(d.tranche_id, d.amount_fen, d.due_on, d.budget_year) for d in due] == [
            (f"{app}/tranche-0", 500, "2025-04-15", 2025)
        ]
        listed = payout.stub.ListTranches(
            S.ListTranchesRequest(due_from="2025-04-15", due_to="2025-04-15", statuses=[S.TRANCHE_STATUS_DUE]),
            timeout=5,
        )
        assert f"{app}/tranche-0" in [t.tranche_id for t in listed.tranches]
        assert all(t.status == S.TRANCHE_STATUS_DUE for t in listed.tranches)
    finally:
        payout.clock.set(START)


def test_cancelling_a_tranche_publishes_it_and_a_paid_or_unknown_tranche_is_refused(payout, producer, kafka_bootstrap):
    firm, app = new_firm(), new_id()
    granted_and_payable(producer, kafka_bootstrap, rent_decision(app, firm, 1000, shares=(50, 50)), wait_for_tranches=2)
    answer = payout.stub.CancelTranche(
        S.CancelTrancheRequest(tranche_id=f"{app}/tranche-1", reason="迁出松江区"), timeout=5
    )
    assert answer.tranche.status == S.TRANCHE_STATUS_CANCELLED
    producer.payment(new_id("PAY"), f"{app}/tranche-0", firm, 500)
    events = payout_events(kafka_bootstrap, firm, [f"cancelled:{app}/tranche-1", f"paid:{app}/tranche-0"])
    [cancelled] = [e[2].tranche_cancelled for e in events if e[0].startswith("cancelled:")]
    assert (cancelled.reason, cancelled.amount_fen, cancelled.cancelled_on) == ("迁出松江区", 500, START.isoformat())
    with pytest.raises(grpc.RpcError) as refused:
        payout.stub.CancelTranche(S.CancelTrancheRequest(tranche_id=f"{app}/tranche-0"), timeout=5)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as missing:
        payout.stub.CancelTranche(S.CancelTrancheRequest(tranche_id=f"{app}/tranche-7"), timeout=5)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    producer.payment(new_id("PAY"), f"{app}/tranche-1", firm, 500)
    letters = dead_letters(kafka_bootstrap, topics.PAYMENTS_DLQ.name, firm.encode())
    assert "is cancelled" in letters[0].error


def test_listing_pages_through_tranches_and_bad_requests_are_invalid_arguments(payout, producer, kafka_bootstrap):
    firm, app = new_firm(), new_id()
    granted_and_payable(
        producer,
        kafka_bootstrap,
        rent_decision(app, firm, 1000, submitted_on="2031-07-07", shares=(20, 20, 20, 20, 20)),
        wait_for_tranches=5,
    )
    seen, token = [], ""
    while True:
        page = payout.stub.ListTranches(
            S.ListTranchesRequest(due_from="2031-07-07", due_to="2035-07-07", page_size=2, page_token=token), timeout=5
        )
        seen += [t.tranche_id for t in page.tranches if t.credit_code == firm]
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"{app}/tranche-{k}" for k in range(5)]
    for bad in (
        S.ListTranchesRequest(due_from="2031-02-30"),
        S.ListTranchesRequest(page_size=-1),
        S.ListTranchesRequest(page_token="nonsense"),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            payout.stub.ListTranches(bad, timeout=5)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as refused:
        payout.stub.GetLedger(S.GetLedgerRequest(credit_code="not-a-code"), timeout=5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_health_is_serving_and_the_csv_export_lists_the_budget_year(payout, producer, kafka_bootstrap):
    health = health_pb2_grpc.HealthStub(payout.channel)
    assert (
        health.Check(health_pb2.HealthCheckRequest(service="subsidy.v1.PayoutService"), timeout=5).status
        == health_pb2.HealthCheckResponse.SERVING
    )
    firm, app = new_firm(), new_id()
    granted_and_payable(
        producer,
        kafka_bootstrap,
        rent_decision(app, firm, 100_000_001, submitted_on="2040-03-03", shares=(40, 60)),
        wait_for_tranches=2,
    )
    out = subprocess.run(
        [sys.executable, "-m", "subsidy.cli", "export-tranches", "--year", "2041", "--database-url", payout.url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == (
        "tranche_id,application_id,credit_code,clause,number,amount_fen,amount_yuan,due_on,"
        "budget_year,status,paid_on,payment_id"
    )
    assert f"{app}/tranche-1,{app},{firm},1.rent,1,60000001,600000.01,2041-03-03,2041,SCHEDULED,," in lines
