"""Recovery (追回) over payout's use cases on the in-memory unit of work:
open_recovery (amounts ≤ paid and not yet claimed, derived ids, refusals
keep nothing, a void award cancels the open tranches and frees the cap),
apply_recovery_confirmation (idempotent, ≤ outstanding, cap freed only for a
void award), the ledger's paid, recovered and net, and the parsing of
RecoveryConfirmed and of the request."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from subsidy.services.payout import handlers
from subsidy.services.payout.model import (
    CANCELLED,
    PAID,
    RECOVERY_CONFIRMED_TYPE,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Payment,
    RecoveryConfirmation,
    Rejected,
)
from subsidy.v1 import payout_pb2

from .fakes import FakeUnitOfWork
from .support import FIRM, OTHER_FIRM, RENT_CAP, line, rent_decision

TRACE = "ab" * 16
AT = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
TODAY = dt.date(2026, 3, 1)


def paid_grant(uow, application_id="A-1", paid=2):
    """240万 in three tranches (96万, 72万, 72万), the first ``paid`` paid."""
    decision = rent_decision(application_id, 240_000_000, shares=(40, 30, 30))
    handlers.apply_decision(uow, decision, TRACE, AT)
    handlers.apply_notice_line(uow, line(decision), AT)
    ids = [f"{application_id}/tranche-{k}" for k in range(3)]
    for k in range(paid):
        t = uow.tranches.rows[ids[k]]
        handlers.apply_payment(
            uow, Payment(f"P-{application_id}-{k}", t.tranche_id, FIRM, t.amount_fen, "2025-03-01"), AT
        )
    return ids


def request(application_id="A-1", tranche_ids=(), amount=10_000_000, reason="虚报材料", void=False, by="reviewer-1"):
    return handlers.check_recovery_request(application_id, tranche_ids, amount, reason, void, by)


def tables(uow):
    return (
        dict(uow.recoveries.rows),
        dict(uow.tranches.rows),
        dict(uow.usage.rows),
        dict(uow.grants.rows),
        list(uow.outbox.event_ids),
    )


def body(uow, event_id):
    m = next(m for m in uow.outbox.messages if m.event_id == event_id)
    e = payout_pb2.PayoutEvent.FromString(m.value)
    return e.WhichOneof("event"), getattr(e, e.WhichOneof("event"))


class TestOpenRecovery:
    def test_a_recovery_of_paid_money_is_opened_with_its_event(self):
        uow = FakeUnitOfWork()
        t0, t1, _ = paid_grant(uow)
        opened = handlers.open_recovery(uow, request(amount=100_000_000), TODAY, AT)
        r = opened.recovery
        assert (opened.created, opened.cancelled) == (True, [])
        assert r.allocations == ((t0, 96_000_000), (t1, 4_000_000))
        assert (r.amount_fen, r.recovered_fen, r.status, r.opened_on, r.opened_by) == (
            100_000_000,
            0,
            "OPEN",
            "2026-03-01",
            "reviewer-1",
        )
        kind, event = body(uow, f"recovery:{r.recovery_id}")
        assert kind == "recovery_opened"
        assert (list(event.tranche_ids), event.amount_fen, event.reason, event.void_award, event.decision_id) == (
            [t0, t1],
            100_000_000,
            "虚报材料",
            False,
            "A-1@v1+test",
        )
        assert uow.outbox.messages[-1].key == FIRM.encode()
        # Not void: the cap still counts the whole grant.
        assert uow.usage.used_fen(FIRM, "1.rent") == 240_000_000

    def test_the_same_request_again_is_the_same_recovery_and_writes_nothing(self):
        uow = FakeUnitOfWork()
        paid_grant(uow)
        first = handlers.open_recovery(uow, request(), TODAY, AT)
        before = tables(uow)
        again = handlers.open_recovery(uow, request(), TODAY, AT)
        assert (again.created, again.recovery) == (False, first.recovery)
        assert tables(uow) == before

    def test_at_most_what_was_paid_and_not_yet_claimed(self):
        uow = FakeUnitOfWork()
        t0, t1, _ = paid_grant(uow)
        handlers.open_recovery(uow, request(tranche_ids=(t0,), amount=90_000_000), TODAY, AT)
        before = tables(uow)
        with pytest.raises(FailedPrecondition, match=r"^amount_fen: 6000001 fen .* 6000000 fen \(paid 96000000 fen\)"):
            handlers.open_recovery(uow, request(tranche_ids=(t0,), amount=6_000_001, reason="再追"), TODAY, AT)
        assert tables(uow) == before
        # The rest of tranche 0 and all of tranche 1 are still open to recovery.
        opened = handlers.open_recovery(uow, request(amount=78_000_000, reason="再追"), TODAY, AT)
        assert opened.recovery.allocations == ((t0, 6_000_000), (t1, 72_000_000))
        with pytest.raises(FailedPrecondition, match="^amount_fen: 1 fen is more than"):
            handlers.open_recovery(uow, request(amount=1, reason="第三次"), TODAY, AT)

    def test_only_paid_tranches_of_that_grant(self):
        uow = FakeUnitOfWork()
        _, _, t2 = paid_grant(uow)
        paid_grant(uow, "B-1")
        before = tables(uow)
        with pytest.raises(FailedPrecondition, match=rf"^tranche_ids\[0\]: tranche {t2} is SCHEDULED"):
            handlers.open_recovery(uow, request(tranche_ids=(t2,)), TODAY, AT)
        with pytest.raises(NotFound, match=r"^tranche_ids\[0\]: 'B-1/tranche-0' is not a tranche of application A-1"):
            handlers.open_recovery(uow, request(tranche_ids=("B-1/tranche-0",)), TODAY, AT)
        with pytest.raises(NotFound, match="^application_id: no grant for application 'Z-9'"):
            handlers.open_recovery(uow, request("Z-9"), TODAY, AT)
        assert tables(uow) == before

    def test_a_grant_with_nothing_paid_has_nothing_to_recover(self):
        uow = FakeUnitOfWork()
        paid_grant(uow, paid=0)
        with pytest.raises(FailedPrecondition, match="^application_id: application A-1 has no paid tranche"):
            handlers.open_recovery(uow, request(), TODAY, AT)

    def test_a_void_award_cancels_its_open_tranches_and_frees_their_cap_room(self):
        uow = FakeUnitOfWork()
        t0, t1, t2 = paid_grant(uow, paid=1)
        opened = handlers.open_recovery(uow, request(amount=96_000_000, void=True), TODAY, AT)
        assert [t.tranche_id for t in opened.cancelled] == [t1, t2]
        assert [uow.tranches.rows[t].status for t in (t0, t1, t2)] == [PAID, CANCELLED, CANCELLED]
        assert uow.grants.rows["A-1"].void is True
        # The two unpaid tranches (144万) will never be paid: their room is free at once.
        assert opened.released_fen == 144_000_000
        assert uow.usage.used_fen(FIRM, "1.rent") == 96_000_000
        kinds = [body(uow, i)[0] for i in uow.outbox.event_ids[-3:]]
        assert kinds == ["recovery_opened", "tranche_cancelled", "tranche_cancelled"]
        assert "奖励已被认定无效" in body(uow, f"cancelled:{t1}")[1].reason


class TestConfirmations:
    def opened(self, void=False, amount=100_000_000):
        uow = FakeUnitOfWork()
        paid_grant(uow)
        r = handlers.open_recovery(uow, request(amount=amount, void=void), TODAY, AT).recovery
        return uow, r

    def test_finance_confirms_part_then_the_rest(self):
        uow, r = self.opened()
        result, after, released = handlers.apply_recovery_confirmation(
            uow, RecoveryConfirmation("C-1", r.recovery_id, FIRM, 60_000_000, "2026-03-10"), AT
        )
        assert (result, after.recovered_fen, after.status, released) == ("applied", 60_000_000, "OPEN", 0)
        kind, event = body(uow, "recovered:C-1")
        assert (kind, event.amount_fen, event.recovered_fen, event.outstanding_fen, event.released_fen) == (
            "recovery_recorded",
            60_000_000,
            60_000_000,
            40_000_000,
            0,
        )
        _, after, _ = handlers.apply_recovery_confirmation(
            uow, RecoveryConfirmation("C-2", r.recovery_id, FIRM, 40_000_000, "2026-03-20"), AT
        )
        assert (after.recovered_fen, after.status) == (100_000_000, "RECOVERED")
        # Recovered money does not free the cap unless the award is void.
        assert uow.usage.used_fen(FIRM, "1.rent") == 240_000_000

    def test_a_repeated_confirmation_changes_nothing(self):
        uow, r = self.opened()
        c = RecoveryConfirmation("C-1", r.recovery_id, FIRM, 60_000_000, "2026-03-10")
        handlers.apply_recovery_confirmation(uow, c, AT)
        before = tables(uow)
        assert handlers.apply_recovery_confirmation(uow, c, AT) == ("repeat", None, 0)
        assert tables(uow) == before

    @pytest.mark.parametrize(
        ("confirmation", "message"),
        [
            (RecoveryConfirmation("C-1", "nope", FIRM, 1, "2026-03-10"), "^recovery_id: unknown recovery 'nope'"),
            (RecoveryConfirmation("C-1", None, OTHER_FIRM, 1, "2026-03-10"), "^credit_code: recovery .* is of"),
            (RecoveryConfirmation("C-1", None, FIRM, 100_000_001, "2026-03-10"), r"^amount_fen: 100000001 fen is more"),
        ],
    )
    def test_a_confirmation_that_cannot_be_applied_is_rejected_and_keeps_nothing(self, confirmation, message):
        uow, r = self.opened()
        if confirmation.recovery_id is None:
            confirmation = RecoveryConfirmation(
                confirmation.confirmation_id, r.recovery_id, *list(confirmation.__dict__.values())[2:]
            )
        before = tables(uow)
        with pytest.raises(Rejected, match=message):
            handlers.apply_recovery_confirmation(uow, confirmation, AT)
        assert tables(uow) == before and uow.confirmations.rows == {}

    def test_recovered_money_of_a_void_award_frees_the_cap(self):
        uow, r = self.opened(void=True, amount=168_000_000)
        # Void: the unpaid tranche (72万) freed at once; the paid 168万 still counts.
        assert uow.usage.used_fen(FIRM, "1.rent") == 168_000_000
        _, after, released = handlers.apply_recovery_confirmation(
            uow, RecoveryConfirmation("C-1", r.recovery_id, FIRM, 100_000_000, "2026-03-10"), AT
        )
        assert released == 100_000_000
        assert uow.usage.used_fen(FIRM, "1.rent") == 68_000_000
        assert body(uow, "recovered:C-1")[1].released_fen == 100_000_000
        assert uow.grants.rows["A-1"].cap_released_fen == 72_000_000 + 100_000_000


class TestLedger:
    def test_paid_recovered_and_net_per_grant_and_per_firm(self):
        uow = FakeUnitOfWork()
        paid_grant(uow)
        paid_grant(uow, "B-1", paid=1)
        r = handlers.open_recovery(uow, request(amount=50_000_000), TODAY, AT).recovery
        handlers.apply_recovery_confirmation(
            uow, RecoveryConfirmation("C-1", r.recovery_id, FIRM, 30_000_000, "2026-03-10"), AT
        )
        ledger = handlers.ledger(uow, FIRM)
        a, b = ledger.grants
        assert (a.paid_fen, a.recovered_fen, a.net_fen, [x.recovery_id for x in a.recoveries]) == (
            168_000_000,
            30_000_000,
            138_000_000,
            [r.recovery_id],
        )
        assert (b.paid_fen, b.recovered_fen, b.net_fen, b.recoveries) == (96_000_000, 0, 96_000_000, ())
        assert (ledger.paid_fen, ledger.recovered_fen, ledger.net_fen) == (264_000_000, 30_000_000, 234_000_000)
        assert RENT_CAP  # the cap is the fixture's


class TestRequestForm:
    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"application_id": ""}, "^application_id: is required"),
            ({"application_id": " A-1"}, "^application_id: must not contain whitespace"),
            ({"amount": 0}, "^amount_fen: must be positive, got 0"),
            ({"amount": -5}, "^amount_fen: must be positive, got -5"),
            ({"reason": "  "}, "^reason: is required"),
            ({"reason": "x" * 1001}, "^reason: at most 1000 characters"),
            ({"reason": "a\nb"}, "^reason: at most 1000 characters and no control characters"),
            ({"tranche_ids": ("t", "t")}, r"^tranche_ids\[1\]: 't' is named twice"),
            ({"tranche_ids": ("",)}, r"^tranche_ids\[0\]: must not be empty"),
            ({"tranche_ids": tuple(f"t{i}" for i in range(101))}, "^tranche_ids: at most 100"),
        ],
    )
    def test_a_malformed_request_is_refused_naming_the_field(self, kwargs, message):
        with pytest.raises(InvalidArgument, match=message):
            request(**kwargs)

    def test_the_reason_is_trimmed(self):
        assert request(reason="  虚报  ").reason == "虚报"


class TestParseRecoveryConfirmed:
    def value(self, **fields):
        values = dict(
            confirmation_id="C-1",
            recovery_id="A-1/recovery-x",
            credit_code=FIRM,
            amount_fen=5,
            recovered_on="2026-03-10",
        )
        values.update(fields)
        return payout_pb2.RecoveryConfirmed(**values).SerializeToString()

    def test_a_well_formed_confirmation(self):
        assert handlers.parse_recovery_confirmed(self.value()) == RecoveryConfirmation(
            "C-1", "A-1/recovery-x", FIRM, 5, "2026-03-10"
        )

    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"confirmation_id": ""}, "^confirmation_id: is required"),
            ({"recovery_id": ""}, "^recovery_id: is required"),
            ({"amount_fen": 0}, "^amount_fen: must be positive"),
            ({"recovered_on": "2026-02-30"}, "^recovered_on: not a date"),
        ],
    )
    def test_a_bad_confirmation_is_rejected_naming_the_field(self, fields, message):
        with pytest.raises(Rejected, match=message):
            handlers.parse_recovery_confirmed(self.value(**fields))

    def test_a_tombstone_or_garbage_is_rejected(self):
        for value in (None, b""):
            with pytest.raises(Rejected, match="^empty value"):
                handlers.parse_recovery_confirmed(value)
        with pytest.raises(Rejected, match="^not a subsidy.v1.RecoveryConfirmed protobuf"):
            handlers.parse_recovery_confirmed(b"\xff\xff\xff")

    def test_only_the_ce_type_makes_a_payments_record_a_recovery(self):
        assert handlers.is_recovery_confirmed([("ce_type", RECOVERY_CONFIRMED_TYPE.encode())])
        assert not handlers.is_recovery_confirmed([("ce_type", b"cn.gov.songjiang.finance.payment_confirmed.v1")])
        assert not handlers.is_recovery_confirmed(None)

    def test_a_recovery_read_as_a_payment_is_refused_not_applied(self):
        """Its field numbers start at 16: a consumer that ignored the header
        would find no payment_id and dead-letter it (ADR 0017)."""
        with pytest.raises(Rejected, match="payment_id: is required"):
            handlers.parse_payment(self.value())


class TestRandomRequests:
    """Random OpenRecovery requests over a grant with paid tranches: each is
    opened, or refused with one of the three errors naming a field, and a
    refusal leaves every table as it was; what is open never exceeds what
    was paid."""

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["A-1", "B-1", "", " A-1", "Z"]),
                st.lists(
                    st.sampled_from(["A-1/tranche-0", "A-1/tranche-1", "A-1/tranche-2", "B-1/tranche-0", "", "x"]),
                    max_size=3,
                ),
                st.integers(min_value=-5, max_value=200_000_000),
                st.sampled_from(["虚报", "", "a\x00b", "x" * 1001]),
                st.booleans(),
            ),
            max_size=6,
        )
    )
    def test_open_or_refused_naming_a_field_and_never_more_than_paid(self, requests):
        uow = FakeUnitOfWork()
        paid_grant(uow)
        paid_grant(uow, "B-1", paid=1)
        for application_id, tranche_ids, amount, reason, void in requests:
            before = tables(uow)
            try:
                checked = handlers.check_recovery_request(application_id, tranche_ids, amount, reason, void, "r")
                handlers.open_recovery(uow, checked, TODAY, AT)
            except (InvalidArgument, NotFound, FailedPrecondition) as exc:
                assert str(exc).split(":")[0].split("[")[0] in ("application_id", "tranche_ids", "amount_fen", "reason")
                assert tables(uow) == before
        for application_id in ("A-1", "B-1"):
            paid = {t.tranche_id: t.amount_fen for t in uow.tranches.rows.values() if t.status == PAID}
            claimed = uow.recoveries.claimed_fen(application_id)
            assert all(claimed[t] <= paid.get(t, 0) for t in claimed)
