"""The release gate over payout's use cases (handlers.advance_tranches,
apply_firm_facts, parse_firm_facts) on the in-memory unit of work: held,
released within the grace, cancelled after it; later tranches follow; a firm
the feed never mentioned keeps today's behaviour; finance never gets a
TrancheDue for a firm that has left."""

from __future__ import annotations

import datetime as dt

import pytest

from subsidy.core import release
from subsidy.core.release import FirmStanding
from subsidy.services.payout import handlers
from subsidy.services.payout.model import CANCELLED, DUE, HELD, PAID, SCHEDULED, Payment, Rejected
from subsidy.v1 import firm_facts_pb2, payout_pb2

from .fakes import FakeUnitOfWork
from .support import FIRM, OTHER_FIRM, line, rent_decision

TRACE = "ab" * 16
AT = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
D = dt.date.fromisoformat
GRACE = 90


def grace(day):
    return GRACE


def payable(uow, application_id="A-1", firm=FIRM):
    """A PAYABLE grant of 240万 in three tranches (40/30/30) due 2025-02-20, 2026-02-20, 2027-02-20."""
    decision = rent_decision(application_id, 240_000_000, firm=firm, shares=(40, 30, 30))
    handlers.apply_decision(uow, decision, TRACE, AT)
    handlers.apply_notice_line(uow, line(decision), AT)
    return [f"{application_id}/tranche-{k}" for k in range(3)]


def facts(firm=FIRM, *, sequence, as_of, registered=True, tax=True, independent=True, known=True):
    return FirmStanding(firm, known, D(as_of) if known else None, registered, tax, independent, sequence)


def left(firm=FIRM, *, sequence=2, as_of="2025-12-01"):
    return facts(firm, sequence=sequence, as_of=as_of, registered=False)


def kinds(uow, since=0):
    out = []
    for m in uow.outbox.messages[since:]:
        e = payout_pb2.PayoutEvent.FromString(m.value)
        out.append((e.WhichOneof("event"), e.event_id))
    return out


def body(uow, event_id):
    m = next(m for m in uow.outbox.messages if m.event_id == event_id)
    e = payout_pb2.PayoutEvent.FromString(m.value)
    return getattr(e, e.WhichOneof("event"))


def status(uow, tranche_id):
    return uow.tranches.rows[tranche_id].status


def advance(uow, day):
    return handlers.advance_tranches(uow, D(day), AT, grace)


class TestTheGateAtDue:
    def test_a_firm_the_feed_never_mentioned_becomes_due_as_before(self):
        uow = FakeUnitOfWork()
        t0, t1, _ = payable(uow)
        done = advance(uow, "2026-02-20")
        assert [t.tranche_id for t in done.due] == [t0, t1]
        assert (status(uow, t0), status(uow, t1)) == (DUE, DUE)

    def test_a_firm_meeting_the_scope_becomes_due(self):
        uow = FakeUnitOfWork()
        t0, *_ = payable(uow)
        handlers.apply_firm_facts(uow, facts(sequence=1, as_of="2025-01-01"), "某公司", D("2025-02-01"), AT, grace)
        assert [t.tranche_id for t in advance(uow, "2025-02-20").due] == [t0]

    def test_a_firm_that_left_gets_its_tranche_held_with_the_reason_the_facts_day_and_the_grace(self):
        uow = FakeUnitOfWork()
        t0, t1, t2 = payable(uow)
        advance(uow, "2025-02-20")  # tranche 0 DUE while the firm was in
        handlers.apply_firm_facts(uow, facts(sequence=1, as_of="2025-01-01"), "某公司", D("2025-02-21"), AT, grace)
        handlers.apply_firm_facts(uow, left(), "某公司", D("2025-12-02"), AT, grace)
        before = len(uow.outbox.messages)
        # tranche 0 was DUE and unpaid: held at once by the facts (covered below); tranche 1 at its day.
        done = advance(uow, "2026-02-20")
        assert (done.due, [t.tranche_id for t in done.held]) == ([], [t1])
        row = uow.tranches.rows[t1]
        assert (row.status, row.held_on, row.hold_until, row.hold_count) == (HELD, "2026-02-20", "2026-05-21", 1)
        assert kinds(uow, before) == [("tranche_held", f"held:{t1}#1")]
        held = body(uow, f"held:{t1}#1")
        assert (held.reason, held.facts_as_of, held.hold_until, list(held.reason_codes)) == (
            "工商登记已不在松江区",
            "2025-12-01",
            "2026-05-21",
            [release.REGISTERED_OUTSIDE],
        )
        assert (held.application_id, held.credit_code, held.amount_fen, held.due_on) == (
            "A-1",
            FIRM,
            72_000_000,
            "2026-02-20",
        )
        assert status(uow, t2) == SCHEDULED

    def test_finance_never_gets_a_due_for_a_firm_that_has_left(self):
        uow = FakeUnitOfWork()
        payable(uow)
        payable(uow, "B-1", firm=OTHER_FIRM)
        handlers.apply_firm_facts(uow, left(as_of="2025-01-10"), "某公司", D("2025-01-11"), AT, grace)
        for day in ("2025-02-20", "2026-02-20", "2027-02-20"):
            advance(uow, day)
        due_events = [m for m in uow.outbox.messages if m.event_id.startswith("due:")]
        assert due_events and all(m.key == OTHER_FIRM.encode() for m in due_events)
        assert not any(t.status == DUE for t in uow.tranches.rows.values() if t.credit_code == FIRM)

    def test_a_tombstone_fails_the_gate(self):
        uow = FakeUnitOfWork()
        t0, *_ = payable(uow)
        handlers.apply_firm_facts(uow, facts(sequence=1, as_of="2025-01-01"), "某公司", D("2025-01-02"), AT, grace)
        gone = FirmStanding(FIRM, False, None, False, False, False, 0)
        assert handlers.apply_firm_facts(uow, gone, "", D("2025-01-03"), AT, grace).result == "applied"
        assert uow.facts.rows[FIRM].feed_sequence == 1  # the sequence is kept: a replay of record 1 stays stale
        done = advance(uow, "2025-02-20")
        assert [t.tranche_id for t in done.held] == [t0]
        assert body(uow, f"held:{t0}#1").reason == "政务数据平台已无该企业的登记信息"
        assert body(uow, f"held:{t0}#1").facts_as_of == ""


class TestAfterTheHold:
    def held_tranche(self):
        uow = FakeUnitOfWork()
        t0, t1, t2 = payable(uow)
        handlers.apply_firm_facts(uow, left(as_of="2025-02-01"), "某公司", D("2025-02-02"), AT, grace)
        advance(uow, "2025-02-20")
        assert status(uow, t0) == HELD
        return uow, (t0, t1, t2)

    def test_facts_restored_within_the_grace_release_it_then_it_is_due(self):
        uow, (t0, *_) = self.held_tranche()
        handlers.apply_firm_facts(uow, facts(sequence=3, as_of="2025-04-01"), "某公司", D("2025-04-02"), AT, grace)
        before = len(uow.outbox.messages)
        done = advance(uow, "2025-04-02")
        assert [t.tranche_id for t in done.released] == [t0] and [t.tranche_id for t in done.due] == [t0]
        assert status(uow, t0) == DUE
        assert kinds(uow, before) == [
            ("tranche_released", f"released:{t0}#1"),
            ("tranche_due", f"due:{t0}#released-1"),
        ]
        released = body(uow, f"released:{t0}#1")
        assert (released.held_on, released.released_on, released.facts_as_of) == (
            "2025-02-20",
            "2025-04-02",
            "2025-04-01",
        )
        assert advance(uow, "2025-04-03").due == []  # idempotent

    def test_it_is_kept_through_the_grace_and_cancelled_with_the_reason_after_it(self):
        uow, (t0, *_) = self.held_tranche()
        assert uow.tranches.rows[t0].hold_until == "2025-05-21"
        done = advance(uow, "2025-05-21")
        assert (done.released, done.cancelled) == ([], [])
        assert status(uow, t0) == HELD
        before = len(uow.outbox.messages)
        done = advance(uow, "2025-05-22")
        assert [t.tranche_id for t in done.cancelled] == [t0]
        assert status(uow, t0) == CANCELLED
        assert kinds(uow, before) == [("tranche_cancelled", f"cancelled:{t0}")]
        cancelled = body(uow, f"cancelled:{t0}")
        assert cancelled.cancelled_on == "2025-05-22"
        assert "宽限期至2025年5月21日届满" in cancelled.reason and "工商登记已不在松江区" in cancelled.reason
        assert advance(uow, "2025-05-23").cancelled == []

    def test_facts_restored_after_the_grace_do_not_release_it(self):
        uow, (t0, *_) = self.held_tranche()
        handlers.apply_firm_facts(uow, facts(sequence=3, as_of="2025-06-01"), "某公司", D("2025-06-02"), AT, grace)
        done = advance(uow, "2025-06-02")
        assert (done.released, [t.tranche_id for t in done.cancelled]) == ([], [t0])
        assert "企业信息恢复晚于宽限期" in body(uow, f"cancelled:{t0}").reason

    def test_later_tranches_of_the_grant_follow_the_same_gate(self):
        uow, (t0, t1, t2) = self.held_tranche()
        advance(uow, "2025-05-22")  # t0 cancelled
        done = advance(uow, "2026-02-20")
        assert [t.tranche_id for t in done.held] == [t1]
        assert uow.tranches.rows[t1].hold_until == "2026-05-21"
        handlers.apply_firm_facts(uow, facts(sequence=9, as_of="2026-03-01"), "某公司", D("2026-03-01"), AT, grace)
        assert [t.tranche_id for t in advance(uow, "2026-03-01").released] == [t1]
        assert [t.tranche_id for t in advance(uow, "2027-02-20").due] == [t2]
        assert [status(uow, t) for t in (t0, t1, t2)] == [CANCELLED, DUE, DUE]

    def test_the_grace_in_force_on_the_hold_day_is_used(self):
        uow = FakeUnitOfWork()
        t0, *_ = payable(uow)
        handlers.apply_firm_facts(uow, left(as_of="2025-02-01"), "某公司", D("2025-02-02"), AT, grace)
        handlers.advance_tranches(uow, D("2025-02-20"), AT, lambda day: 30 if day >= D("2025-01-01") else 90)
        assert uow.tranches.rows[t0].hold_until == "2025-03-22"


class TestFactsOnTheFeed:
    def test_due_tranches_of_a_firm_that_left_are_held_at_once(self):
        uow = FakeUnitOfWork()
        t0, *_ = payable(uow)
        advance(uow, "2025-02-20")
        assert status(uow, t0) == DUE
        applied = handlers.apply_firm_facts(uow, left(), "某公司", D("2025-12-02"), AT, grace)
        assert (applied.result, [t.tranche_id for t in applied.held]) == ("applied", [t0])
        assert status(uow, t0) == HELD
        assert kinds(uow)[-1] == ("tranche_held", f"held:{t0}#1")
        # Restored, released, then the firm leaves again: a second hold with its own ids.
        handlers.apply_firm_facts(uow, facts(sequence=3, as_of="2025-12-10"), "某公司", D("2025-12-10"), AT, grace)
        advance(uow, "2025-12-10")
        handlers.apply_firm_facts(uow, left(sequence=4, as_of="2025-12-20"), "某公司", D("2025-12-20"), AT, grace)
        assert uow.tranches.rows[t0].hold_count == 2
        assert ("tranche_held", f"held:{t0}#2") in kinds(uow)

    def test_the_highest_sequence_wins_and_a_redelivery_changes_nothing(self):
        uow = FakeUnitOfWork()
        assert handlers.apply_firm_facts(uow, left(sequence=5), "甲", D("2025-12-02"), AT, grace).result == "applied"
        older = facts(sequence=4, as_of="2025-11-01")
        assert handlers.apply_firm_facts(uow, older, "甲", D("2025-12-02"), AT, grace).result == "stale"
        assert handlers.apply_firm_facts(uow, left(sequence=5), "甲", D("2025-12-02"), AT, grace).result == "stale"
        assert uow.facts.rows[FIRM].registered_in_district is False

    def test_a_second_tombstone_is_a_repeat(self):
        uow = FakeUnitOfWork()
        gone = FirmStanding(FIRM, False, None, False, False, False, 0)
        assert handlers.apply_firm_facts(uow, gone, "", D("2025-12-02"), AT, grace).result == "applied"
        assert handlers.apply_firm_facts(uow, gone, "", D("2025-12-02"), AT, grace).result == "repeat"

    def test_a_payment_of_a_held_tranche_is_recorded_the_money_moved(self):
        uow = FakeUnitOfWork()
        t0, *_ = payable(uow)
        handlers.apply_firm_facts(uow, left(as_of="2025-02-01"), "某公司", D("2025-02-02"), AT, grace)
        advance(uow, "2025-02-20")
        result, tranche = handlers.apply_payment(uow, Payment("P-1", t0, FIRM, 96_000_000, "2025-02-25"), AT)
        assert (result, tranche.status) == ("applied", PAID)
        assert advance(uow, "2025-06-01").cancelled == []  # a paid tranche is no longer held

    def test_a_held_tranche_may_be_cancelled_by_finance(self):
        uow = FakeUnitOfWork()
        t0, *_ = payable(uow)
        handlers.apply_firm_facts(uow, left(as_of="2025-02-01"), "某公司", D("2025-02-02"), AT, grace)
        advance(uow, "2025-02-20")
        tranche, changed = handlers.cancel_tranche(uow, t0, "企业已迁出", D("2025-03-01"), AT)
        assert (tranche.status, changed) == (CANCELLED, True)

    def test_a_failure_keeps_nothing(self):
        uow = FakeUnitOfWork()
        t0, *_ = payable(uow)
        advance(uow, "2025-02-20")

        def broken(day):
            raise RuntimeError("settings unreadable")

        with pytest.raises(RuntimeError):
            handlers.apply_firm_facts(uow, left(), "某公司", D("2025-12-02"), AT, broken)
        assert (uow.facts.rows, status(uow, t0)) == ({}, DUE)


def facts_bytes(firm=FIRM, **fields):
    values = dict(
        credit_code=firm,
        name="上海某某科技有限公司",
        as_of="2025-12-01",
        feed_sequence=7,
        registered_in_district=True,
        tax_registered_in_district=False,
        independent_legal_person=True,
    )
    values.update(fields)
    return firm_facts_pb2.FirmFacts(**values).SerializeToString()


class TestParseFirmFacts:
    def test_facts_dated_after_payouts_today_are_kept_registry_sync_checked_them_on_its_clock(self):
        standing, _ = handlers.parse_firm_facts(FIRM.encode(), facts_bytes(as_of="2099-01-01"))
        assert standing.as_of == D("2099-01-01")

    def test_a_record_is_read_as_the_gate_needs_it(self):
        standing, name = handlers.parse_firm_facts(FIRM.encode(), facts_bytes())
        assert standing == FirmStanding(FIRM, True, D("2025-12-01"), True, False, True, 7)
        assert name == "上海某某科技有限公司"

    @pytest.mark.parametrize("value", [None, b""])
    def test_a_tombstone_is_a_firm_unknown_to_the_platform(self, value):
        standing, _ = handlers.parse_firm_facts(FIRM.encode(), value)
        assert (standing.credit_code, standing.known) == (FIRM, False)

    @pytest.mark.parametrize(
        ("key", "value", "message"),
        [
            (b"nope", facts_bytes(), "^key: not a valid unified social credit code"),
            (None, None, "^key: not a valid unified social credit code"),
            (b"\xff", facts_bytes(), "^key: not UTF-8"),
            (FIRM.encode(), b"\xff\xff\xff", "^not a subsidy.v1.FirmFacts protobuf"),
            (FIRM.encode(), facts_bytes(credit_code=OTHER_FIRM), "^credit_code: .* is not the record's key"),
            (FIRM.encode(), facts_bytes(feed_sequence=0), "^feed_sequence: must be positive"),
            (FIRM.encode(), facts_bytes(as_of="2025-13-01"), "^as_of: not a date"),
            (FIRM.encode(), facts_bytes(as_of=""), "^as_of: not a date"),
        ],
    )
    def test_an_unusable_record_is_rejected_naming_the_field(self, key, value, message):
        with pytest.raises(Rejected, match=message):
            handlers.parse_firm_facts(key, value)
