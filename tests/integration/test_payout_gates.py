"""Release gates and recovery (issue 13, ADR 0017) with the payout service
in-process against the harness's Kafka broker, on SQLite and on PostgreSQL:
FirmFacts produced on subsidy.firms.v1, the injected clock moved, the
TrancheHeld / TrancheReleased / TrancheCancelled events read back from
subsidy.payouts.v1; a recovery opened through gRPC and confirmed by finance
on subsidy.payments.v1 (a RecoveryConfirmed told by its ce_type header)."""

from __future__ import annotations

import datetime as dt
import uuid

import grpc
import pytest

from subsidy.contracts import cloudevents, topics
from subsidy.platform.clock import FixedClock
from subsidy.services.payout.model import RECOVERY_CONFIRMED_TYPE
from subsidy.v1 import firm_facts_pb2, payout_pb2

from .test_payout_support import (
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
D = dt.date.fromisoformat
S = payout_pb2


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def payout(request, kafka_bootstrap, tmp_path_factory):
    postgres_url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    url = database_url(request.param, tmp_path_factory.mktemp("payout-gates"), postgres_url)
    clock = FixedClock(START)
    overrides = dict(firms_group=f"it-payout-firms-{uuid.uuid4().hex[:8]}")
    with RunningPayout(settings(kafka_bootstrap, url, **overrides), clock) as svc:
        yield svc


@pytest.fixture(scope="module")
def producer(kafka_bootstrap):
    p = Producer(kafka_bootstrap)
    yield p
    p.close()


def facts(producer, firm, sequence, as_of, *, registered=True, tombstone=False):
    value = (
        None
        if tombstone
        else firm_facts_pb2.FirmFacts(
            credit_code=firm,
            name="上海某某科技有限公司",
            as_of=as_of,
            feed_sequence=sequence,
            registered_in_district=registered,
            tax_registered_in_district=True,
            independent_legal_person=True,
        ).SerializeToString()
    )
    producer.producer.send(topics.FIRMS.name, key=firm.encode(), value=value).get(30)


def kept_sequence(svc, firm):
    with svc.app.store:
        standing = svc.app.store.facts.get(firm)
        svc.app.store.commit()
    return standing


def wait_for_facts(svc, firm, sequence, known=True):
    wait_for(
        lambda: (s := kept_sequence(svc, firm)) is not None and s.feed_sequence == sequence and s.known == known,
        timeout=30,
    )


def move(svc, day):
    svc.clock.set(D(day))
    svc.app.scheduler.wake()


def tranche(svc, firm, tranche_id):
    ledger = svc.stub.GetLedger(S.GetLedgerRequest(credit_code=firm), timeout=5)
    return {t.tranche_id: t for g in ledger.grants for t in g.tranches}[tranche_id]


def paid_first_tranche(svc, producer, bootstrap, firm, app):
    """A payable grant of 1000 fen in two tranches (500, 500) due 2025-02-20
    and 2026-02-20, the firm in the district, tranche 0 due and paid."""
    facts(producer, firm, 1, "2025-01-01")
    wait_for_facts(svc, firm, 1)
    granted_and_payable(producer, bootstrap, rent_decision(app, firm, 1000, shares=(50, 50)), wait_for_tranches=2)
    move(svc, "2025-02-20")
    payout_events(bootstrap, firm, [f"due:{app}/tranche-0"])
    producer.payment(new_id("PAY"), f"{app}/tranche-0", firm, 500)
    payout_events(bootstrap, firm, [f"paid:{app}/tranche-0"])


def test_a_firm_that_leaves_between_tranches_gets_the_next_one_held_then_cancelled_after_the_grace(
    payout, producer, kafka_bootstrap
):
    firm, app = new_firm(), new_id()
    t1 = f"{app}/tranche-1"
    try:
        paid_first_tranche(payout, producer, kafka_bootstrap, firm, app)
        move(payout, "2025-12-01")
        facts(producer, firm, 2, "2025-12-01", registered=False)
        wait_for_facts(payout, firm, 2)
        move(payout, "2026-02-20")
        events = payout_events(kafka_bootstrap, firm, [f"held:{t1}#1"])
        [held] = [e[2].tranche_held for e in events if e[0] == f"held:{t1}#1"]
        assert (held.reason, held.facts_as_of, held.held_on, held.hold_until, held.amount_fen) == (
            "工商登记已不在松江区",
            "2025-12-01",
            "2026-02-20",
            "2026-05-21",
            500,
        )
        headers = next(e[1] for e in events if e[0] == f"held:{t1}#1")
        assert headers["ce_type"] == "cn.gov.songjiang.subsidy.payout.tranche_held.v1"
        assert tranche(payout, firm, t1).status == S.TRANCHE_STATUS_HELD
        # Finance never sees it DUE: not as an event, not in the listing.
        listed = payout.stub.ListTranches(S.ListTranchesRequest(statuses=[S.TRANCHE_STATUS_DUE]), timeout=5)
        assert t1 not in [t.tranche_id for t in listed.tranches]
        move(payout, "2026-05-21")  # the grace's last day: still held
        move(payout, "2026-05-22")
        events = payout_events(kafka_bootstrap, firm, [f"cancelled:{t1}"], settle=1.0)
        [cancelled] = [e[2].tranche_cancelled for e in events if e[0] == f"cancelled:{t1}"]
        assert cancelled.cancelled_on == "2026-05-22" and "工商登记已不在松江区" in cancelled.reason
        assert not any(e[0].startswith(f"due:{t1}") for e in events)
        assert tranche(payout, firm, t1).status == S.TRANCHE_STATUS_CANCELLED
    finally:
        payout.clock.set(START)


def test_a_registration_restored_within_the_grace_releases_the_held_tranche(payout, producer, kafka_bootstrap):
    firm, app = new_firm(), new_id()
    t1 = f"{app}/tranche-1"
    try:
        paid_first_tranche(payout, producer, kafka_bootstrap, firm, app)
        move(payout, "2026-01-10")
        facts(producer, firm, 2, "2026-01-10", tombstone=True)
        wait_for_facts(payout, firm, 1, known=False)  # a tombstone keeps the sequence
        move(payout, "2026-02-20")
        events = payout_events(kafka_bootstrap, firm, [f"held:{t1}#1"])
        [held] = [e[2].tranche_held for e in events if e[0] == f"held:{t1}#1"]
        assert (held.reason, list(held.reason_codes)) == ("政务数据平台已无该企业的登记信息", ["UNKNOWN_TO_PLATFORM"])
        payout.clock.set(D("2026-03-15"))
        facts(producer, firm, 3, "2026-03-15")  # applying it wakes the scheduler
        ids = [f"released:{t1}#1", f"due:{t1}#released-1"]
        events = payout_events(kafka_bootstrap, firm, ids, settle=0.5)
        assert [e[0] for e in events if e[0] in ids or e[0].startswith("held:")] == [f"held:{t1}#1", *ids]
        released = next(e[2].tranche_released for e in events if e[0] == ids[0])
        assert (released.held_on, released.released_on, released.facts_as_of) == (
            "2026-02-20",
            "2026-03-15",
            "2026-03-15",
        )
        assert tranche(payout, firm, t1).status == S.TRANCHE_STATUS_DUE
    finally:
        payout.clock.set(START)


def test_unusable_firm_facts_go_to_the_dead_letter_topic(payout, producer, kafka_bootstrap):
    firm = new_firm()
    producer.raw(topics.FIRMS.name, firm.encode(), b"\xff\xff not facts")
    facts(producer, firm, 0, "2025-01-01")  # no feed sequence
    letters = dead_letters(kafka_bootstrap, topics.FIRMS_DLQ.name, firm.encode(), expect=2)
    assert sorted(letter.error.split(":")[0] for letter in letters) == [
        "feed_sequence",
        "not a subsidy.v1.FirmFacts protobuf",
    ]
    assert {letter.consumer for letter in letters} == {"payout-firms"}
    assert kept_sequence(payout, firm) is None


def test_a_recovery_is_opened_through_grpc_and_confirmed_on_the_payments_topic(payout, producer, kafka_bootstrap):
    firm, app = new_firm(), new_id()
    try:
        paid_first_tranche(payout, producer, kafka_bootstrap, firm, app)
        with pytest.raises(grpc.RpcError) as refused:
            payout.stub.OpenRecovery(
                S.OpenRecoveryRequest(application_id=app, amount_fen=501, reason="虚报"), timeout=5
            )
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert refused.value.details().startswith("amount_fen: 501 fen is more than")
        with pytest.raises(grpc.RpcError) as refused:
            payout.stub.OpenRecovery(S.OpenRecoveryRequest(application_id=app, amount_fen=300), timeout=5)
        assert (refused.value.code(), refused.value.details().split(":")[0]) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "reason",
        )
        request = S.OpenRecoveryRequest(application_id=app, amount_fen=300, reason="虚报研发投入")
        opened = payout.stub.OpenRecovery(request, timeout=5)
        assert opened.created and opened.recovery.tranche_ids == [f"{app}/tranche-0"]
        assert payout.stub.OpenRecovery(request, timeout=5).created is False  # a retry: the same recovery
        rid = opened.recovery.recovery_id
        events = payout_events(kafka_bootstrap, firm, [f"recovery:{rid}"])
        [event] = [e[2].recovery_opened for e in events if e[0] == f"recovery:{rid}"]
        assert (event.amount_fen, event.reason, event.void_award) == (300, "虚报研发投入", False)

        confirmation = payout_pb2.RecoveryConfirmed(
            confirmation_id="RC-" + uuid.uuid4().hex[:8],
            recovery_id=rid,
            credit_code=firm,
            amount_fen=300,
            recovered_on="2025-03-20",
        )
        headers = cloudevents.headers(
            confirmation.confirmation_id, RECOVERY_CONFIRMED_TYPE, "/songjiang/finance", cloudevents.new_trace_id()
        )
        for _ in range(2):  # a repeat is ignored
            producer.producer.send(
                topics.PAYMENTS.name, key=firm.encode(), value=confirmation.SerializeToString(), headers=headers
            ).get(30)
        ids = [f"recovered:{confirmation.confirmation_id}"]
        events = payout_events(kafka_bootstrap, firm, ids, settle=1.0)
        recorded = [e[2].recovery_recorded for e in events if e[0] in ids]
        assert len(recorded) == 1
        assert (recorded[0].amount_fen, recorded[0].recovered_fen, recorded[0].outstanding_fen) == (300, 300, 0)
        ledger = wait_for(
            lambda: (lambda r: r if r.recovered_fen == 300 else None)(
                payout.stub.GetLedger(S.GetLedgerRequest(credit_code=firm), timeout=5)
            )
        )
        assert (ledger.paid_fen, ledger.recovered_fen, ledger.net_fen) == (500, 300, 200)
        [grant] = ledger.grants
        assert (grant.paid_fen, grant.recovered_fen, grant.net_fen, grant.void) == (500, 300, 200, False)
        assert (grant.recoveries[0].status, grant.recoveries[0].recovered_fen) == ("RECOVERED", 300)
        # The cap still counts the whole award: the reviewer did not declare it void.
        assert ledger.scopes[0].used_fen == 1000
    finally:
        payout.clock.set(START)
