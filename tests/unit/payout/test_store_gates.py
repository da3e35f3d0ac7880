"""Release gates and recovery over the SQL unit of work (adapters/store.py,
migration 0004) on in-memory SQLite, through the consumers' appliers
(FirmFactsApplier, PaymentApplier with a RecoveryConfirmed) and the use
cases: what the tables keep, read back as the gRPC API shows it. The rules
themselves: test_release_gates.py and test_recovery.py (in memory);
PostgreSQL and the broker: tests/integration/test_payout_gates.py."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from subsidy.platform.clock import FixedClock
from subsidy.platform.db import Database
from subsidy.services.payout import handlers
from subsidy.services.payout.adapters.kafka import FirmFactsApplier, PaymentApplier
from subsidy.services.payout.adapters.store import SqlStore
from subsidy.services.payout.model import CANCELLED, DUE, HELD, PAID, RECOVERY_CONFIRMED_TYPE, Payment, Rejected
from subsidy.v1 import firm_facts_pb2, payout_pb2

from .support import FIRM, line, rent_decision

TRACE = "ab" * 16
AT = dt.datetime(2025, 3, 1, 8, 0, tzinfo=dt.UTC)
D = dt.date.fromisoformat


@pytest.fixture
def store():
    db = Database("sqlite:///:memory:", store="payout")
    s = SqlStore(db)
    s.create_schema()
    yield s
    db.close()


def payable(store, application_id="A-1"):
    decision = rent_decision(application_id, 240_000_000, shares=(40, 30, 30))
    handlers.apply_decision(store, decision, TRACE, AT)
    handlers.apply_notice_line(store, line(decision), AT)
    return [f"{application_id}/tranche-{k}" for k in range(3)]


def record(value, key=FIRM.encode(), headers=(), offset=0):
    return SimpleNamespace(
        topic="subsidy.firms.v1", partition=0, offset=offset, key=key, value=value, headers=list(headers)
    )


def facts(sequence, as_of, registered=True):
    return firm_facts_pb2.FirmFacts(
        credit_code=FIRM,
        name="上海某某科技有限公司",
        as_of=as_of,
        feed_sequence=sequence,
        registered_in_district=registered,
        tax_registered_in_district=True,
        independent_legal_person=True,
    ).SerializeToString()


def tranches(store):
    return {t.tranche_id: t for g in handlers.ledger(store, FIRM).grants for t in g.tranches}


def events(store):
    with store.db.transaction() as tx:
        rows = tx.all("SELECT event_id, value FROM payout_outbox ORDER BY id")
    return [(event_id, payout_pb2.PayoutEvent.FromString(bytes(value))) for event_id, value in rows]


def grace(day):
    return 90


def test_a_firm_that_leaves_is_held_then_released_then_held_and_cancelled(store):
    t0, t1, _ = payable(store)
    clock = FixedClock(D("2025-02-20"))
    applier = FirmFactsApplier(store, clock, grace)
    assert applier(record(facts(1, "2025-01-01"))) == "applied"
    handlers.advance_tranches(store, D("2025-02-20"), AT, grace)
    assert tranches(store)[t0].status == DUE
    clock.set(D("2025-03-01"))
    assert applier(record(facts(2, "2025-03-01", registered=False), offset=1)) == "applied"
    held = tranches(store)[t0]
    assert (held.status, held.held_on, held.hold_until, held.hold_reason, held.hold_count) == (
        HELD,
        "2025-03-01",
        "2025-05-30",
        "工商登记已不在松江区",
        1,
    )
    # A redelivery of the older record changes nothing.
    assert applier(record(facts(1, "2025-01-01"), offset=0)) == "stale"
    clock.set(D("2025-04-01"))
    assert applier(record(facts(3, "2025-04-01"), offset=2)) == "applied"
    done = handlers.advance_tranches(store, D("2025-04-01"), AT, grace)
    assert [t.tranche_id for t in done.released] == [t0]
    assert tranches(store)[t0].status == DUE
    # The firm leaves for good: the next tranche is held on its day, then cancelled after the grace.
    clock.set(D("2025-12-01"))
    applier(record(facts(4, "2025-12-01", registered=False), offset=3))
    assert tranches(store)[t0].hold_count == 2
    handlers.advance_tranches(store, D("2026-02-20"), AT, grace)
    assert tranches(store)[t1].status == HELD
    handlers.advance_tranches(store, D("2026-05-22"), AT, grace)
    assert (tranches(store)[t0].status, tranches(store)[t1].status) == (CANCELLED, CANCELLED)
    ids = [event_id for event_id, _ in events(store)]
    for expected in (
        f"due:{t0}",
        f"held:{t0}#1",
        f"released:{t0}#1",
        f"due:{t0}#released-1",
        f"held:{t0}#2",
        f"held:{t1}#1",
        f"cancelled:{t0}",
        f"cancelled:{t1}",
    ):
        assert ids.count(expected) == 1, expected
    assert not any(i.startswith(f"due:{t1}") for i in ids)


def test_a_tombstone_is_kept_as_unknown_and_the_sequence_survives(store):
    payable(store)
    applier = FirmFactsApplier(store, FixedClock(D("2025-02-01")), grace)
    applier(record(facts(5, "2025-01-01")))
    assert applier(record(None, offset=1)) == "applied"
    assert applier(record(b"", offset=2)) == "repeat"
    assert applier(record(facts(5, "2025-01-01"), offset=3)) == "stale"
    with store:
        kept = store.facts.get(FIRM)
        store.commit()
    assert (kept.known, kept.feed_sequence) == (False, 5)


def test_unusable_facts_are_rejected_and_nothing_is_written(store):
    applier = FirmFactsApplier(store, FixedClock(D("2025-02-01")), grace)
    with pytest.raises(Rejected, match="^as_of: not a date"):
        applier(record(facts(1, "2025-02-30")))
    with pytest.raises(Rejected, match="^key: not a valid"):
        applier(record(facts(1, "2025-01-01"), key=b"91310117MA1K7D2E8X"))
    with store:
        assert store.facts.get(FIRM) is None
        store.commit()


def test_a_recovery_through_the_sql_store_and_the_payments_consumer(store):
    t0, t1, _ = payable(store)
    for k, t in enumerate((t0, t1)):
        amount = tranches(store)[t].amount_fen
        handlers.apply_payment(store, Payment(f"P-{k}", t, FIRM, amount, "2025-03-01"), AT)
    req = handlers.check_recovery_request("A-1", (), 100_000_000, "虚报材料", True, "reviewer-1")
    opened = handlers.open_recovery(store, req, D("2026-03-01"), AT)
    assert opened.recovery.allocations == ((t0, 96_000_000), (t1, 4_000_000))
    assert [t.tranche_id for t in opened.cancelled] == ["A-1/tranche-2"]
    assert handlers.open_recovery(store, req, D("2026-03-02"), AT).created is False
    applier = PaymentApplier(store)
    value = payout_pb2.RecoveryConfirmed(
        confirmation_id="C-1",
        recovery_id=opened.recovery.recovery_id,
        credit_code=FIRM,
        amount_fen=70_000_000,
        recovered_on="2026-03-10",
    ).SerializeToString()
    headers = [("ce_type", RECOVERY_CONFIRMED_TYPE.encode())]
    assert applier(record(value, headers=headers)) == "applied"
    assert applier(record(value, headers=headers)) == "repeat"
    ledger = handlers.ledger(store, FIRM)
    (grant,) = ledger.grants
    assert (grant.void, grant.paid_fen, grant.recovered_fen, grant.net_fen) == (
        True,
        168_000_000,
        70_000_000,
        98_000_000,
    )
    (recovery,) = grant.recoveries
    assert (recovery.recovered_fen, recovery.status, recovery.opened_by, recovery.tranche_ids) == (
        70_000_000,
        "OPEN",
        "reviewer-1",
        (t0, t1),
    )
    # Void: the unpaid tranche (72万) and the recovered 70万 are free again.
    (usage,) = ledger.scopes
    assert usage.used_fen == 240_000_000 - 72_000_000 - 70_000_000
    assert [t.status for t in grant.tranches] == [PAID, PAID, CANCELLED]
    # Over what is outstanding: dead-lettered, nothing written.
    over = payout_pb2.RecoveryConfirmed(
        confirmation_id="C-2",
        recovery_id=opened.recovery.recovery_id,
        credit_code=FIRM,
        amount_fen=30_000_001,
        recovered_on="2026-03-11",
    ).SerializeToString()
    with pytest.raises(Rejected, match="^amount_fen: 30000001 fen is more"):
        applier(record(over, headers=headers))
    assert store.recoveries_open() == 1


def test_the_firms_consumer_reads_the_firms_topic_in_its_group_and_dead_letters_to_its_dlq(store):
    from subsidy.contracts import topics
    from subsidy.services.payout.adapters.kafka import firms_consumer
    from subsidy.services.payout.config import Settings

    loop = firms_consumer(store, "unused", "subsidy-payout-firms", FixedClock(D("2025-01-01")), grace, lambda: None)
    assert (loop.topics, loop.dlq_topic, loop.group_id) == (
        (topics.FIRMS.name,),
        topics.FIRMS_DLQ.name,
        "subsidy-payout-firms",
    )
    assert Settings.from_env({}).firms_group == "subsidy-payout-firms"
    assert Settings.from_env({"SUBSIDY_PAYOUT_FIRMS_GROUP": "g"}).firms_group == "g"


def test_finance_lists_held_tranches_by_status_and_due_ones_leave_them_out(store):
    t0, *_ = payable(store)
    FirmFactsApplier(store, FixedClock(D("2025-02-01")), grace)(record(facts(1, "2025-02-01", registered=False)))
    handlers.advance_tranches(store, D("2025-02-20"), AT, grace)
    held = handlers.list_tranches(store, handlers.tranche_query("", "", ["HELD"], 0, ""))[0]
    due = handlers.list_tranches(store, handlers.tranche_query("", "", ["DUE"], 0, ""))[0]
    assert ([t.tranche_id for t in held], due) == ([t0], [])
    assert handlers.from_proto_status(payout_pb2.TRANCHE_STATUS_HELD) == HELD
