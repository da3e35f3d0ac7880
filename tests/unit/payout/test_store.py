"""The use cases over the SQL unit of work (adapters/store.py) on an
in-memory SQLite database (the same code runs on PostgreSQL in
tests/integration/test_payout_store.py), the CSV export, and the consumer
loop over fake Kafka clients. The same use cases over the in-memory fake:
test_handlers.py."""

from __future__ import annotations

import datetime as dt
import io
from types import SimpleNamespace

import pytest

from subsidy.platform.db import Database
from subsidy.services.payout import handlers
from subsidy.services.payout.adapters import export
from subsidy.services.payout.adapters.kafka import DecisionApplier, NoticeLineApplier, PaymentApplier, record_loop
from subsidy.services.payout.adapters.store import SqlStore
from subsidy.services.payout.model import (
    CANCELLED,
    DUE,
    PAID,
    SCHEDULED,
    FailedPrecondition,
    GrantState,
    NotFound,
    Rejected,
)
from subsidy.v1 import events_pb2, payout_pb2

from .support import FIRM, OTHER_FIRM, RENT_CAP, decision_bytes, line, notice_event_bytes, rent_decision

TRACE = "ab" * 16
AT = dt.datetime(2025, 3, 1, 8, 0, tzinfo=dt.UTC)


def apply(store, decision, payable=True):
    """The decision applied and, unless ``payable`` is False, its notice line
    payable on its submission day (its tranches due as before the notice gate)."""
    applied = handlers.apply_decision(store, decision, TRACE, AT)
    if payable and applied.result == "applied":
        handlers.apply_notice_line(store, line(decision), AT)
    return applied


def mark_due(store, today):
    return handlers.raise_tranches_due(store, today, AT)


def pay(store, payment):
    return handlers.apply_payment(store, payment, AT)


def cancel(store, tranche_id, reason, today):
    return handlers.cancel_tranche(store, tranche_id, reason, today, AT)


def status_of(store, tranche_id):
    return {t.tranche_id: t.status for g in handlers.ledger(store, FIRM).grants for t in g.tranches}[tranche_id]


@pytest.fixture
def store():
    db = Database("sqlite:///:memory:", store="payout")
    s = SqlStore(db)
    s.create_schema()
    s.create_schema()
    yield s
    db.close()


def pending_ids(store):
    out = []
    store.relay_batch(
        lambda rows: (out.extend(dict(r.headers)["ce_id"].decode() for r in rows), ([r.id for r in rows], None))[1]
    )
    return out


def test_a_decision_reserves_then_its_payable_line_schedules_the_tranches(store):
    decision = rent_decision("A-1", 240_000_000, shares=(40, 30, 30))
    applied = apply(store, decision, payable=False)
    assert applied.result == "applied" and applied.plan.granted_fen == 240_000_000
    ledger = handlers.ledger(store, FIRM)
    [grant] = ledger.grants
    assert (grant.state, grant.tranches, grant.uses, grant.tranche_shares_percent) == (
        GrantState.RESERVED,
        (),
        (("1.rent", 240_000_000),),
        (40, 30, 30),
    )
    assert [(s.scope, s.limit, s.used_fen, s.cap_fen, s.remaining_fen, s.reserved_fen) for s in ledger.scopes] == [
        ("1.rent", "cumulative_cap", 240_000_000, RENT_CAP, RENT_CAP - 240_000_000, 240_000_000)
    ]
    assert pending_ids(store) == ["grant:A-1"]
    result, _, _ = handlers.apply_notice_line(store, line(decision, day="2025-03-14", notice_id="N-7"), AT)
    assert result == "applied"
    [grant] = handlers.ledger(store, FIRM).grants
    assert (grant.state, grant.notice_id, grant.payable_on) == (GrantState.PAYABLE, "N-7", "2025-03-14")
    assert [(t.amount_fen, t.due_on) for t in grant.tranches] == [
        (96_000_000, "2025-03-14"),
        (72_000_000, "2026-02-20"),
        (72_000_000, "2027-02-20"),
    ]
    assert handlers.ledger(store, FIRM).scopes[0].payable_fen == 240_000_000
    assert pending_ids(store) == [
        "payable:A-1@v1+test",
        "scheduled:A-1/tranche-0",
        "scheduled:A-1/tranche-1",
        "scheduled:A-1/tranche-2",
    ]
    assert handlers.apply_notice_line(store, line(decision, day="2025-03-15"), AT)[0] == "repeat"
    assert pending_ids(store) == []


def test_a_withdrawn_line_releases_the_reservation_in_sql(store):
    decision = rent_decision("A-1", 400_000_000)
    apply(store, decision, payable=False)
    assert apply(store, rent_decision("A-2", 400_000_000), payable=False).plan.granted_fen == 100_000_000
    handlers.apply_notice_line(store, line(decision, "withdrawn", "2025-03-05", reason="异议成立"), AT)
    ledger = handlers.ledger(store, FIRM)
    assert [(g.application_id, g.state, g.withdrawn_on, g.withdraw_reason) for g in ledger.grants] == [
        ("A-1", GrantState.WITHDRAWN, "2025-03-05", "异议成立"),
        ("A-2", GrantState.RESERVED, "", ""),
    ]
    assert (ledger.scopes[0].used_fen, ledger.scopes[0].reserved_fen) == (100_000_000, 100_000_000)
    with pytest.raises(Rejected, match="is WITHDRAWN since 2025-03-05"):
        handlers.apply_notice_line(store, line(decision), AT)


def test_a_decision_held_for_review_writes_only_its_inbox_row(store):
    import dataclasses

    held = dataclasses.replace(rent_decision("A-1"), review_required=True, review_reasons=("NEEDS_REVIEW_OUTCOME",))
    assert apply(store, held).result == "held_for_review"
    assert handlers.ledger(store, FIRM).grants == () and pending_ids(store) == []
    with store:
        assert store.inbox.get("A-1@v1+test").result == "held_for_review"
        store.commit()
    with pytest.raises(Rejected, match="held for review and never applied"):
        handlers.apply_notice_line(store, line(held), AT)


def test_a_replayed_decision_writes_nothing(store):
    apply(store, rent_decision("A-1"))
    pending_ids(store)
    assert apply(store, rent_decision("A-1")).result == "replayed"
    assert pending_ids(store) == []
    assert len(handlers.ledger(store, FIRM).grants) == 1


def test_the_cap_holds_across_applications(store):
    for i in range(3):
        apply(store, rent_decision(f"A-{i}", 240_000_000))
    ledger = handlers.ledger(store, FIRM)
    assert [g.granted_fen for g in ledger.grants] == [240_000_000, 240_000_000, 20_000_000]
    assert [r.code for r in ledger.grants[2].reasons] == ["CAP_PARTIAL"]
    assert all(g.state == GrantState.PAYABLE for g in ledger.grants)
    assert ledger.scopes[0].used_fen == RENT_CAP and ledger.scopes[0].remaining_fen == 0
    apply(store, rent_decision("A-9", 1))
    assert handlers.ledger(store, FIRM).grants[-1].granted_fen == 0


def test_an_ineligible_decision_counts_as_applied_with_a_grant_of_0(store):
    apply(store, rent_decision("A-1", outcome="REFERRED"), payable=False)
    [grant] = handlers.ledger(store, FIRM).grants
    assert (grant.outcome, grant.granted_fen, grant.tranches) == ("REFERRED", 0, ())
    assert pending_ids(store) == ["grant:A-1"]


def test_tranches_become_due_when_their_day_comes_and_only_once(store):
    apply(store, rent_decision("A-1", 1000, shares=(50, 50)))
    assert mark_due(store, dt.date(2025, 2, 19)) == []
    assert [t.tranche_id for t in mark_due(store, dt.date(2025, 2, 20))] == ["A-1/tranche-0"]
    assert mark_due(store, dt.date(2025, 12, 31)) == []
    assert [t.tranche_id for t in mark_due(store, dt.date(2026, 2, 20))] == ["A-1/tranche-1"]
    assert [e for e in pending_ids(store) if e.startswith("due:")] == ["due:A-1/tranche-0", "due:A-1/tranche-1"]


def _payment(payment_id="P-1", tranche_id="A-1/tranche-0", amount=500, code=FIRM):
    return handlers.Payment(payment_id, tranche_id, code, amount, "2025-03-01")


def test_a_payment_pays_its_tranche_once_and_a_repeat_is_ignored(store):
    apply(store, rent_decision("A-1", 1000, shares=(50, 50)))
    result, tranche = pay(store, _payment())
    assert result == "applied" and (tranche.status, tranche.payment_id, tranche.paid_on) == (PAID, "P-1", "2025-03-01")
    assert pay(store, _payment()) == ("repeat", None)
    with pytest.raises(Rejected, match="already paid"):
        pay(store, _payment("P-2"))
    with pytest.raises(Rejected, match="unknown tranche"):
        pay(store, _payment("P-3", tranche_id="nope"))
    with pytest.raises(Rejected, match="amount mismatch"):
        pay(store, _payment("P-4", tranche_id="A-1/tranche-1", amount=499))
    assert status_of(store, "A-1/tranche-1") == SCHEDULED
    assert [e for e in pending_ids(store) if e.startswith("paid:")] == ["paid:A-1/tranche-0"]


def test_cancelling_stops_an_open_tranche_but_not_a_paid_one(store):
    apply(store, rent_decision("A-1", 1000, shares=(50, 50)))
    mark_due(store, dt.date(2025, 6, 1))
    tranche, changed = cancel(store, "A-1/tranche-0", "left the district", dt.date(2025, 6, 2))
    assert changed and tranche.status == CANCELLED
    assert cancel(store, "A-1/tranche-0", "again", dt.date(2025, 6, 3)) == (tranche, False)
    with pytest.raises(Rejected, match="cancelled"):
        pay(store, _payment())
    pay(store, _payment("P-1", "A-1/tranche-1"))
    with pytest.raises(FailedPrecondition):
        cancel(store, "A-1/tranche-1", "too late", dt.date(2025, 6, 3))
    with pytest.raises(NotFound):
        cancel(store, "nope", "", dt.date(2025, 6, 3))
    assert status_of(store, "A-1/tranche-1") == PAID


def test_listing_tranches_pages_through_by_due_date_with_filters(store):
    for i in range(5):
        apply(store, rent_decision(f"A-{i}", 1000, submitted_on=f"2025-0{i + 1}-10", shares=(50, 50)))
    mark_due(store, dt.date(2025, 3, 31))
    seen, token = [], ""
    while True:
        query = handlers.tranche_query("2025-01-01", "2026-12-31", [], 3, token)
        rows, token = handlers.list_tranches(store, query)
        seen += [t.tranche_id for t in rows]
        if not token:
            break
    assert len(seen) == 10 and seen[0] == "A-0/tranche-0" and seen[-1] == "A-4/tranche-1"
    due, _ = handlers.list_tranches(store, handlers.tranche_query("", "", [DUE], 100, ""))
    assert [t.tranche_id for t in due] == ["A-0/tranche-0", "A-1/tranche-0", "A-2/tranche-0"]


def test_the_csv_export_lists_a_budget_year_by_due_date_with_exact_yuan(store):
    apply(store, rent_decision("B-1", 100_000_001, submitted_on="2025-05-01", shares=(40, 60)))
    apply(store, rent_decision("A-1", 12_345, submitted_on="2025-03-01"))
    out = io.StringIO()
    assert export.write_csv(handlers.tranches_of_budget_year(store, 2025), out) == 2
    lines = out.getvalue().splitlines()
    assert lines[0] == ",".join(export.COLUMNS)
    assert lines[1] == f"A-1/tranche-0,A-1,{FIRM},1.rent,0,12345,123.45,2025-03-01,2025,SCHEDULED,,"
    assert lines[2] == f"B-1/tranche-0,B-1,{FIRM},1.rent,0,40000000,400000.00,2025-05-01,2025,SCHEDULED,,"


# -- the unit of work itself ----------------------------------------------------------------


def test_a_unit_of_work_keeps_what_it_wrote_only_when_it_commits(store):
    with store:
        store.firms.lock(FIRM, "2025-03-01T00:00:00.000000Z")
        store.commit()
    with store:
        store.firms.lock(OTHER_FIRM, "2025-03-01T00:00:00.000000Z")  # not committed
    with pytest.raises(ValueError), store:
        store.firms.lock("THIRD-FIRM", "2025-03-01T00:00:00.000000Z")
        raise ValueError("refused")
    with store.db.transaction() as tx:
        assert [r[0] for r in tx.all("SELECT credit_code FROM payout_firms")] == [FIRM]


def test_the_tables_are_only_reached_inside_a_unit_of_work_and_one_at_a_time_per_thread(store):
    with pytest.raises(RuntimeError, match="inside a unit of work"):
        store.grants.is_applied("A-1")
    with store:
        with pytest.raises(RuntimeError, match="already open"):
            store.__enter__()
        store.commit()
        with pytest.raises(RuntimeError, match="inside a unit of work"):
            store.tranches.get("A-1/tranche-0")


def test_inside_a_batch_a_unit_of_work_left_without_commit_undoes_only_itself(store):
    with store.batch():
        apply(store, rent_decision("A-1"))
        with store:
            store.firms.lock(OTHER_FIRM, "2025-03-01T00:00:00.000000Z")
        apply(store, rent_decision("A-2", 1))
    with store.db.transaction() as tx:
        assert [r[0] for r in tx.all("SELECT credit_code FROM payout_firms")] == [FIRM]
    assert [g.application_id for g in handlers.ledger(store, FIRM).grants] == ["A-1", "A-2"]


# -- the consumer loop over fakes --------------------------------------------------------


class FakeFuture:
    def get(self, timeout=None):
        return None


class FakeProducer:
    def __init__(self):
        self.sent = []

    def send(self, topic, key, value, headers):
        self.sent.append((topic, key, value, headers))
        return FakeFuture()

    def close(self, timeout=None):
        pass


def record(value, offset=0, key=FIRM.encode(), topic="subsidy.decisions.v1"):
    return SimpleNamespace(topic=topic, partition=0, offset=offset, key=key, value=value, headers=[])


def test_an_undecodable_decision_is_dead_lettered_with_the_error_and_the_raw_bytes(store):
    producer = FakeProducer()
    consumer = record_loop(
        "payout",
        DecisionApplier(store),
        "unused",
        topic="subsidy.decisions.v1",
        dlq_topic="subsidy.decisions.v1.dlq",
        group_id="g",
        producer_factory=lambda: producer,
    )
    assert consumer.handle(record(b"\xff\xfe")) == "dead_letter"
    [(topic, key, value, headers)] = producer.sent
    letter = events_pb2.DeadLetter.FromString(value)
    assert topic == "subsidy.decisions.v1.dlq" and letter.value == b"\xff\xfe" and letter.consumer == "payout"
    assert "not a subsidy.v1.Decision" in letter.error
    assert consumer.handle(record(decision_bytes(rent_decision("A-1")), 1)) == "applied"
    assert consumer.handle(record(decision_bytes(rent_decision("A-1")), 2)) == "replayed"


def test_a_payment_for_an_unknown_tranche_is_dead_lettered_and_not_applied(store):
    producer = FakeProducer()
    consumer = record_loop(
        "payout-payments",
        PaymentApplier(store),
        "unused",
        topic="subsidy.payments.v1",
        dlq_topic="subsidy.payments.v1.dlq",
        group_id="g",
        producer_factory=lambda: producer,
    )
    value = payout_pb2.PaymentConfirmed(
        payment_id="P-1", tranche_id="X/tranche-0", credit_code=FIRM, amount_fen=5, paid_on="2025-03-01"
    ).SerializeToString()
    assert consumer.handle(record(value, topic="subsidy.payments.v1")) == "dead_letter"
    assert "unknown tranche: X/tranche-0" in events_pb2.DeadLetter.FromString(producer.sent[0][2]).error


def test_notice_lines_the_ledger_cannot_follow_are_dead_lettered_and_the_others_applied(store):
    producer = FakeProducer()
    written = []
    consumer = record_loop(
        "payout-notices",
        NoticeLineApplier(store, lambda: written.append(1)),
        "unused",
        topic="subsidy.notices.v1",
        dlq_topic="subsidy.notices.v1.dlq",
        group_id="g",
        producer_factory=lambda: producer,
    )
    decision = rent_decision("A-1", 1000, shares=(50, 50))
    apply(store, decision, payable=False)
    topic = "subsidy.notices.v1"
    assert consumer.handle(record(notice_event_bytes(rent_decision("X-1")), 0, topic=topic)) == "dead_letter"
    assert consumer.handle(record(notice_event_bytes(decision), 1, topic=topic)) == "applied"
    assert consumer.handle(record(notice_event_bytes(decision), 2, topic=topic)) == "repeat"
    assert consumer.handle(record(notice_event_bytes(decision, "withdrawn"), 3, topic=topic)) == "dead_letter"
    assert written == [1]
    errors = [events_pb2.DeadLetter.FromString(value).error for (_, _, value, _) in producer.sent]
    assert [t for (t, _, _, _) in producer.sent] == ["subsidy.notices.v1.dlq"] * 2
    assert "unknown decision X-1@v1+test" in errors[0]
    assert "is PAYABLE since 2025-02-20" in errors[1] and "cannot become WITHDRAWN" in errors[1]
    assert [t.tranche_id for t in handlers.ledger(store, FIRM).grants[0].tranches] == ["A-1/tranche-0", "A-1/tranche-1"]
