"""The payout service's pure rules: due dates, event ids, the clock, parsing
what arrives on Kafka, payment checks, page tokens. (The CSV's yuan:
tests/unit/test_money.py.)"""

from __future__ import annotations

import datetime as dt

import pytest

from subsidy.core.ledger import InMemoryLedger
from subsidy.platform.clock import DevClockError, FixedClock, SystemClock
from subsidy.services.payout import handlers
from subsidy.services.payout.config import Settings
from subsidy.services.payout.model import (
    CANCELLED,
    DUE,
    PAID,
    SCHEDULED,
    InvalidArgument,
    Rejected,
    TrancheRow,
    due_on,
    grant_event_id,
    payable_due_on,
    payable_event_id,
    tranche_event_id,
    withdrawn_event_id,
)
from subsidy.v1 import decision_pb2, payout_pb2

from .support import FIRM, OTHER_FIRM, decision_bytes, rent_decision


def test_a_tranche_is_due_on_the_submission_day_of_its_budget_year():
    assert due_on(dt.date(2025, 2, 20), 2027) == dt.date(2027, 2, 20)


def test_the_29th_of_february_becomes_the_1st_of_march_in_a_common_year():
    assert due_on(dt.date(2024, 2, 29), 2025) == dt.date(2025, 3, 1)
    assert due_on(dt.date(2024, 2, 29), 2028) == dt.date(2028, 2, 29)


def test_event_ids_are_derived_from_application_and_tranche_ids():
    assert grant_event_id("SJ-1") == "grant:SJ-1"
    assert tranche_event_id("tranche_scheduled", "SJ-1/tranche-0") == "scheduled:SJ-1/tranche-0"
    assert tranche_event_id("tranche_due", "SJ-1/tranche-0") == "due:SJ-1/tranche-0"
    assert tranche_event_id("tranche_cancelled", "SJ-1/tranche-0") == "cancelled:SJ-1/tranche-0"
    assert tranche_event_id("tranche_paid", "SJ-1/tranche-0") == "paid:SJ-1/tranche-0"


def test_a_payable_grants_tranche_is_due_on_the_later_of_payable_on_and_its_day_in_its_budget_year():
    # The notice closes after the submission day of the decision year: tranche 0 waits for it.
    assert payable_due_on(dt.date(2025, 2, 20), 2025, dt.date(2025, 3, 10)) == dt.date(2025, 3, 10)
    # A later budget year's day is after the notice: unchanged.
    assert payable_due_on(dt.date(2025, 2, 20), 2026, dt.date(2025, 3, 10)) == dt.date(2026, 2, 20)
    # The same day either way.
    assert payable_due_on(dt.date(2025, 2, 20), 2025, dt.date(2025, 2, 20)) == dt.date(2025, 2, 20)
    assert payable_due_on(dt.date(2024, 2, 29), 2025, dt.date(2024, 6, 1)) == dt.date(2025, 3, 1)


def test_grant_state_event_ids_are_derived_from_the_decision_id():
    assert payable_event_id("SJ-1@v1") == "payable:SJ-1@v1"
    assert withdrawn_event_id("SJ-1@v1") == "withdrawn:SJ-1@v1"


def test_the_clock_is_the_platforms_fixed_by_the_setting_or_else_the_day_in_songjiang(tmp_path):
    assert Settings.from_env({"SUBSIDY_PAYOUT_TODAY": "2026-03-01"}).clock().today() == dt.date(2026, 3, 1)
    assert isinstance(Settings.from_env({}).clock(), SystemClock)
    with pytest.raises(ValueError, match="SUBSIDY_PAYOUT_TODAY"):
        Settings.from_env({"SUBSIDY_PAYOUT_TODAY": "tomorrow"}).clock()
    # The dev clock's file is refused outside dev mode, naming the variable.
    with pytest.raises(DevClockError, match="SUBSIDY_DEV_MODE"):
        Settings.from_env({"SUBSIDY_DEV_CLOCK_FILE": str(tmp_path / "clock.json")}).clock()
    clock = FixedClock(dt.date(2025, 1, 1))
    clock.set(dt.date(2026, 1, 1))
    assert clock.today() == dt.date(2026, 1, 1)


def test_a_valid_decision_parses_and_garbage_is_rejected_with_a_reason():
    decision = rent_decision("SJ-1")
    assert handlers.parse_decision(decision_bytes(decision)) == decision
    with pytest.raises(Rejected, match="not a subsidy.v1.Decision"):
        handlers.parse_decision(b"\xff\xff\xff")
    with pytest.raises(Rejected, match=r"^no value \(a tombstone\): expected a subsidy.v1.Decision$"):
        handlers.parse_decision(None)
    with pytest.raises(Rejected, match="^empty value: expected a subsidy.v1.Decision$"):
        handlers.parse_decision(b"")
    with pytest.raises(Rejected, match="^decision_id: is required$"):
        handlers.parse_decision(decision_pb2.Decision(application_id="SJ-1").SerializeToString())


def test_a_record_is_decoded_once(monkeypatch):
    """The contract's decoder (subsidy.contracts.events) reads the bytes; the
    domain value is made from its message, not from the bytes again."""
    decoded = []
    for message_type in (decision_pb2.Decision, payout_pb2.PaymentConfirmed):
        original = message_type.FromString
        monkeypatch.setattr(
            message_type,
            "FromString",
            staticmethod(lambda raw, original=original: (decoded.append(raw), original(raw))[1]),
        )
    handlers.parse_decision(decision_bytes(rent_decision("SJ-1")))
    handlers.parse_payment(_payment())
    assert decoded == [decision_bytes(rent_decision("SJ-1")), _payment()]


def test_a_decision_whose_shares_do_not_add_up_to_100_is_rejected():
    with pytest.raises(Rejected, match="tranche_shares_percent"):
        handlers.parse_decision(decision_bytes(rent_decision("SJ-1", shares=(40, 30))))


def _payment(**kw):
    base = dict(payment_id="PAY-1", tranche_id="SJ-1/tranche-0", credit_code=FIRM, amount_fen=100, paid_on="2025-03-01")
    base.update(kw)
    return payout_pb2.PaymentConfirmed(**base).SerializeToString()


def test_a_payment_needs_an_id_a_tranche_a_positive_amount_and_a_real_date():
    assert handlers.parse_payment(_payment()).payment_id == "PAY-1"
    for bad, match in (
        (dict(payment_id=""), "payment_id"),
        (dict(amount_fen=0), "amount_fen"),
        (dict(paid_on="2025-02-30"), "paid_on"),
        (dict(tranche_id=""), "tranche_id"),
        (dict(paid_on=""), "paid_on: is required"),
        (dict(credit_code=""), "credit_code"),
    ):
        with pytest.raises(Rejected, match=match):
            handlers.parse_payment(_payment(**bad))
    with pytest.raises(Rejected, match="not a subsidy.v1.PaymentConfirmed"):
        handlers.parse_payment(b"\xff\x00")
    with pytest.raises(Rejected, match="^empty value: expected a subsidy.v1.PaymentConfirmed$"):
        handlers.parse_payment(b"")
    with pytest.raises(Rejected, match=r"^no value \(a tombstone\): expected a subsidy.v1.PaymentConfirmed$"):
        handlers.parse_payment(None)


def _tranche(status=SCHEDULED, **kw):
    base = dict(
        tranche_id="SJ-1/tranche-0",
        application_id="SJ-1",
        credit_code=FIRM,
        clause="1.rent",
        number=0,
        amount_fen=100,
        due_on="2025-02-20",
        budget_year=2025,
        status=status,
    )
    base.update(kw)
    return TrancheRow(**base)


def test_a_payment_that_matches_an_open_tranche_may_be_applied():
    payment = handlers.parse_payment(_payment())
    handlers.check_payment(payment, _tranche(SCHEDULED))
    handlers.check_payment(payment, _tranche(DUE))


@pytest.mark.parametrize(
    "tranche, reason",
    [
        (None, "unknown tranche"),
        (_tranche(amount_fen=101), "amount mismatch"),
        (_tranche(credit_code=OTHER_FIRM), "credit code mismatch"),
        (_tranche(CANCELLED), "cancelled"),
        (_tranche(PAID, payment_id="PAY-0", paid_on="2025-02-01"), "already paid by payment PAY-0"),
    ],
)
def test_a_payment_that_does_not_match_its_tranche_is_rejected_with_the_reason(tranche, reason):
    with pytest.raises(Rejected, match=reason):
        handlers.check_payment(handlers.parse_payment(_payment()), tranche)


def test_a_plan_becomes_a_grant_and_tranches_due_in_successive_budget_years():
    decision = rent_decision("SJ-1", 100_000_001, submitted_on="2024-02-29", shares=(40, 30, 30))
    plan = InMemoryLedger().apply(decision)
    grant, tranches = handlers.plan_rows(decision, plan, "ab" * 16)
    assert grant.granted_fen == 100_000_001
    assert [(t.tranche_id, t.due_on, t.budget_year, t.status) for t in tranches] == [
        ("SJ-1/tranche-0", "2024-02-29", 2024, SCHEDULED),
        ("SJ-1/tranche-1", "2025-03-01", 2025, SCHEDULED),
        ("SJ-1/tranche-2", "2026-03-01", 2026, SCHEDULED),
    ]
    assert sum(t.amount_fen for t in tranches) == 100_000_001


def test_the_event_of_a_plan_is_one_reserved_grant_without_tranches():
    decision = rent_decision("SJ-1", 1000, shares=(40, 30, 30))
    plan = InMemoryLedger().apply(decision)
    assert len(plan.tranches) == 3  # what simulate prints; scheduled only once the grant is payable
    [message] = handlers.plan_events(decision, plan, "ab" * 16)
    assert message.event_id == "grant:SJ-1"
    first = payout_pb2.PayoutEvent.FromString(message.value)
    assert first.WhichOneof("event") == "grant_recorded"
    assert (first.grant_recorded.tranche_count, first.grant_recorded.state) == (0, payout_pb2.GRANT_STATE_RESERVED)
    headers = dict(message.headers)
    assert headers["ce_id"] == b"grant:SJ-1"
    assert headers["ce_type"] == b"cn.gov.songjiang.subsidy.payout.grant_recorded.v1"
    assert headers["ce_source"] == b"/songjiang/subsidy/payout"
    assert headers["ce_traceparent"].startswith(b"00-" + b"ab" * 16)
    assert message.key == FIRM.encode() and message.topic == "subsidy.payouts.v1"


def test_a_notice_event_parses_to_the_line_payout_applies_and_the_other_kinds_are_skipped():
    from subsidy.v1 import notice_pb2

    from .support import notice_event_bytes

    decision = rent_decision("SJ-1")
    payable = handlers.parse_notice_line(notice_event_bytes(decision, day="2025-03-14"))
    assert (payable.kind, payable.event_id, payable.decision_id, payable.day) == (
        "payable",
        "payable:SJ-1@v1+test",
        "SJ-1@v1+test",
        dt.date(2025, 3, 14),
    )
    withdrawn = handlers.parse_notice_line(notice_event_bytes(decision, "withdrawn", reason="异议成立"))
    assert (withdrawn.kind, withdrawn.reason) == ("withdrawn", "异议成立")
    published = notice_pb2.NoticeEvent(event_id="published:N-1", notice_published=notice_pb2.NoticePublished())
    assert handlers.parse_notice_line(published.SerializeToString()) is None


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda e: e.line_payable.ClearField("decision_id"), "^line_payable.decision_id: is required$"),
        (lambda e: e.line_payable.ClearField("credit_code"), "^line_payable.credit_code: is required$"),
        (lambda e: setattr(e.line_payable, "payable_on", "2025-02-30"), "^line_payable.payable_on: not a date"),
        (lambda e: setattr(e, "event_id", "payable:other"), "^event_id: expected 'payable:SJ-1@v1\\+test'"),
        (lambda e: e.ClearField("line_payable"), "^event: none of"),
        (lambda e: e.ClearField("event_id"), "^event_id: is required$"),
    ],
)
def test_a_bad_notice_line_is_rejected_naming_the_field(mutate, message):
    from subsidy.v1 import notice_pb2

    from .support import notice_event_bytes

    event = notice_pb2.NoticeEvent.FromString(notice_event_bytes(rent_decision("SJ-1")))
    mutate(event)
    with pytest.raises(Rejected, match=message):
        handlers.parse_notice_line(event.SerializeToString())


def test_garbage_on_the_notice_topic_is_rejected():
    with pytest.raises(Rejected, match="^empty value"):
        handlers.parse_notice_line(None)
    with pytest.raises(Rejected, match="not a subsidy.v1.NoticeEvent protobuf"):
        handlers.parse_notice_line(b"\xff\xff\xff")


def test_a_withdrawal_reason_with_control_characters_is_rejected():
    from .support import notice_event_bytes

    with pytest.raises(Rejected, match="^line_withdrawn.reason: must not contain control characters$"):
        handlers.parse_notice_line(notice_event_bytes(rent_decision("SJ-1"), "withdrawn", reason="a\x1bb"))


def test_a_second_decision_for_an_applied_application_records_a_duplicate_grant_of_0_under_its_own_id():
    ledger = InMemoryLedger()
    ledger.apply(rent_decision("SJ-1"))
    again = rent_decision("SJ-1", policy_version="v2+test")
    plan = ledger.apply(again)
    [message] = handlers.plan_events(again, plan, "ab" * 16)
    event = payout_pb2.PayoutEvent.FromString(message.value)
    assert message.event_id == "grant:SJ-1@v2+test"
    assert event.grant_recorded.granted_fen == 0
    assert [r.code for r in event.grant_recorded.reasons] == ["DUPLICATE_APPLICATION"]


def test_an_ineligible_decision_records_a_grant_of_0_without_tranches():
    decision = rent_decision("SJ-1", outcome="NEEDS_REVIEW")
    plan = InMemoryLedger().apply(decision)
    messages = handlers.plan_events(decision, plan, "ab" * 16)
    assert [m.event_id for m in messages] == ["grant:SJ-1"]
    assert handlers.scope_additions(decision, plan) == []


def test_page_size_defaults_to_100_is_capped_at_500_and_refuses_negatives():
    assert handlers.page_size(0) == 100
    assert handlers.page_size(7) == 7
    assert handlers.page_size(10_000) == 500
    with pytest.raises(InvalidArgument):
        handlers.page_size(-1)


def test_a_page_token_carries_the_position_and_belongs_to_its_filters():
    query = handlers.tranche_query("2025-01-01", "", [DUE], 10, "")
    token = handlers.next_token(query, _tranche(DUE))
    again = handlers.tranche_query("2025-01-01", "", [DUE], 10, token)
    assert again.after == ("2025-02-20", "SJ-1/tranche-0")
    with pytest.raises(InvalidArgument, match="other filters"):
        handlers.tranche_query("2025-01-02", "", [DUE], 10, token)
    with pytest.raises(InvalidArgument, match="page_token"):
        handlers.tranche_query("", "", [], 10, "garbage!")
    with pytest.raises(InvalidArgument, match="due_to"):
        handlers.tranche_query("", "2025-13-01", [], 10, "")


def test_the_notices_group_and_the_dev_clock_are_settings(tmp_path):
    from subsidy.platform.clock import DevClock, DevClockState, write_dev_clock

    assert Settings.from_env({}).notices_group == "subsidy-payout-notices"
    assert Settings.from_env({"SUBSIDY_PAYOUT_NOTICES_GROUP": " g-notices "}).notices_group == "g-notices"
    clock_file = tmp_path / "clock.json"
    start = dt.datetime(2026, 9, 25, 1, 0, tzinfo=dt.UTC)
    write_dev_clock(clock_file, DevClockState(start, real_start=0.0, speed=1.0, offset_s=0.0))
    env = {"SUBSIDY_DEV_CLOCK_FILE": str(clock_file), "SUBSIDY_DEV_MODE": "1", "SUBSIDY_PAYOUT_TODAY": "2020-01-01"}
    clock = Settings.from_env(env).clock()
    assert isinstance(clock, DevClock)  # the dev stack's clock wins over the fixed day
    assert clock.today() > dt.date(2026, 9, 24)
