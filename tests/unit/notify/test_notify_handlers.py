"""The pure notify use case with fake channels, log and registry."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from notify_fakes import (
    CONTACTS,
    FIRM,
    TITLES,
    FakeChannel,
    FakeFirms,
    FakeLog,
    cancelled,
    decision,
    due,
    firm_record,
    grant,
    paid,
    scheduled,
)

from subsidy.platform import logs
from subsidy.platform.registry import Contacts
from subsidy.services.notify import handlers, model
from subsidy.services.notify.model import DeliveryFailed, InvalidEvent


def make(*channels, contacts=CONTACTS, attempts=3):
    sleeps: list[float] = []
    deps = handlers.Deps(
        firms=FakeFirms(firm_record(contacts=contacts)),
        log=FakeLog(),
        channels=list(channels),
        titles=TITLES,
        attempts=attempts,
        backoff_s=0.1,
        max_backoff_s=0.25,
        sleep=sleeps.append,
    )
    return deps, sleeps


def email(**kw):
    return FakeChannel("email", "email", **kw)


def webhook(**kw):
    return FakeChannel("webhook", "webhook_url", **kw)


def sms(**kw):
    return FakeChannel("sms", "phone", **kw)


def event(message=None):
    message = message or decision()
    if hasattr(message, "decision_id"):
        return handlers.parse_decision(message.SerializeToString(), "ab" * 16)
    return handlers.parse_payout_event(message.SerializeToString(), "ab" * 16)


def test_a_decision_is_sent_once_on_every_channel_the_firm_can_be_reached_on():
    channels = email(), webhook(), sms()
    deps, _ = make(*channels)
    outcome = handlers.notify(deps, event())
    assert outcome.sent == ["email", "webhook", "sms"]
    assert [c.delivered[0][1] for c in channels] == [CONTACTS.email, CONTACTS.webhook_url, CONTACTS.phone]
    assert len(deps.log.sent) == 3


def test_a_replayed_event_sends_nothing_twice():
    channels = email(), webhook(), sms()
    deps, _ = make(*channels)
    handlers.notify(deps, event())
    again = handlers.notify(deps, event())
    assert again.sent == [] and again.replayed == ["email", "webhook", "sms"]
    assert [len(c.calls) for c in channels] == [1, 1, 1]


def test_the_notification_id_is_derived_from_event_and_channel():
    assert model.notification_id("grant:A", "email") == model.notification_id("grant:A", "email")
    assert model.notification_id("grant:A", "email") != model.notification_id("grant:A", "webhook")
    deps, _ = make(email())
    handlers.notify(deps, event(grant()))
    assert list(deps.log.sent) == [model.notification_id("grant:SJ-2025-0001", "email")]


def test_a_channel_the_firm_has_no_contact_for_is_skipped():
    deps, _ = make(email(), webhook(), sms(), contacts=Contacts(email="a@example.cn"))
    outcome = handlers.notify(deps, event())
    assert outcome.sent == ["email"] and outcome.no_contact == ["webhook", "sms"]


def test_a_firm_unknown_to_the_registry_gets_nothing_and_is_not_an_error():
    channel = email()
    deps, _ = make(channel)
    deps.firms = FakeFirms()
    assert handlers.notify(deps, event()).unknown_firm and channel.calls == []


def test_a_failing_channel_is_retried_with_exponential_backoff_then_succeeds():
    channel = webhook(failures=2)
    deps, sleeps = make(channel, attempts=3)
    assert handlers.notify(deps, event()).sent == ["webhook"]
    assert sleeps == [0.1, 0.2] and len(channel.calls) == 3


def test_backoff_is_bounded_by_the_maximum():
    deps, sleeps = make(webhook(failures=9), attempts=5)
    with pytest.raises(DeliveryFailed):
        handlers.notify(deps, event())
    assert sleeps == [0.1, 0.2, 0.25, 0.25]


def test_a_channel_that_keeps_failing_gives_up_after_its_attempts_but_the_others_are_still_sent():
    mail, hook = email(), webhook(failures=99)
    deps, _ = make(hook, mail, attempts=3)
    with pytest.raises(DeliveryFailed) as caught:
        handlers.notify(deps, event())
    assert len(hook.calls) == 3 and len(mail.delivered) == 1
    assert caught.value.failures == [("webhook", "HTTP 503 after 3 attempts")]
    # Retried later (the dead letter replayed), only the failed channel is tried again.
    hook.failures = 0
    assert handlers.notify(deps, event()).sent == ["webhook"] and len(mail.calls) == 1


def test_a_permanent_failure_is_not_retried():
    hook = webhook(failures=99, permanent=True, error="webhook: HTTP 400")
    deps, sleeps = make(hook)
    with pytest.raises(DeliveryFailed, match="permanent"):
        handlers.notify(deps, event())
    assert len(hook.calls) == 1 and sleeps == []


def test_an_error_that_quotes_a_contact_is_redacted():
    hook = webhook(failures=99, error=f"refused {CONTACTS.webhook_url}")
    deps, _ = make(hook, attempts=1)
    with pytest.raises(DeliveryFailed) as caught:
        handlers.notify(deps, event())
    assert CONTACTS.webhook_url not in str(caught.value) and "<redacted>" in str(caught.value)


def test_paid_and_cancelled_name_their_clause_with_no_schedule_seen_and_nothing_remembered():
    channel = email()
    deps, _ = make(channel)
    handlers.notify(deps, event(cancelled(number=2)))
    handlers.notify(deps, event(paid(number=2)))
    bodies = [n.body for n, _ in channel.delivered]
    assert len(bodies) == 2 and all("第2条“鼓励培育行业性工业互联网平台”" in b for b in bodies)
    assert list(vars(deps.log)) == ["sent"]  # the log holds sent notifications, no tranches


def test_a_tranche_event_from_before_application_and_clause_were_carried_is_still_told():
    channel = email()
    deps, _ = make(channel)
    old = event(cancelled(number=2, legacy=True))
    assert old.fact.application_id == "SJ-2025-0001" and old.fact.clause == ""
    assert handlers.notify(deps, old).sent == ["email"]
    [(sent, _)] = channel.delivered
    assert "条款：未知" in sent.body and "原因：企业已迁出松江区" in sent.body


def test_events_decode_into_notify_values_with_money_in_fen_and_real_dates():
    d = event().fact
    assert isinstance(d, model.DecisionMade) and d.max_award_fen == 296296296
    assert d.submitted_on == dt.date(2025, 2, 20) and d.reasons[0].code == "AWARD_BASIS"
    g = event(grant()).fact
    assert isinstance(g, model.GrantRecorded) and (g.granted_fen, g.tranche_count) == (296296296, 3)
    s = event(scheduled(number=1, amount=88888889)).fact
    assert (s.number, s.amount_fen, s.due_on, s.budget_year) == (1, 88888889, dt.date(2027, 1, 15), 2027)
    p = event(paid()).fact
    assert (p.application_id, p.clause, p.paid_on, p.payment_id) == (
        "SJ-2025-0001",
        "2",
        dt.date(2026, 1, 20),
        "PAY-0001",
    )
    c = event(cancelled()).fact
    assert (c.clause, c.cancelled_on, c.reason) == ("2", dt.date(2027, 3, 1), "企业已迁出松江区")
    assert event(due()).fact.due_on == dt.date(2026, 1, 15)


def test_the_webhook_data_is_the_event_in_its_json_mapping_with_fen_amounts_as_numbers():
    hook = webhook()
    deps, _ = make(hook)
    handlers.notify(deps, event(paid()))
    handlers.notify(deps, event())
    paid_data, decision_data = (n.data for n, _ in hook.delivered)
    assert paid_data == {
        "tranche_id": "SJ-2025-0001/tranche-0",
        "credit_code": FIRM,
        "amount_fen": 118518518,
        "paid_on": "2026-01-20",
        "payment_id": "PAY-0001",
        "application_id": "SJ-2025-0001",
        "clause": "2",
        "policy_version": "",  # every field of the event, an empty one too (this one carries no version)
    }
    assert decision_data["max_award_fen"] == 296296296 and decision_data["outcome"] == "ELIGIBLE"
    assert decision_data["entitlements"][0]["amount_fen"] == "296296296"  # nested: as it always was


@pytest.mark.parametrize(
    "mangle, match",
    [
        (lambda e: setattr(e.tranche_paid, "paid_on", "2026-02-30"), "tranche_paid.paid_on"),
        (lambda e: setattr(e.tranche_paid, "amount_fen", -1), "tranche_paid.amount_fen: must not be negative"),
        (lambda e: e.tranche_paid.ClearField("tranche_id"), "tranche_paid.tranche_id: is required"),
    ],
)
def test_a_payout_event_notify_cannot_tell_truthfully_is_invalid(mangle, match):
    bad = paid()
    mangle(bad)
    with pytest.raises(InvalidEvent, match=match):
        handlers.parse_payout_event(bad.SerializeToString())


def test_logs_carry_ids_and_trace_but_never_contact_details_or_peoples_names(caplog):
    caplog.set_level(logging.DEBUG)
    formatter = logs.JsonFormatter("notify")
    deps, _ = make(email(), webhook(failures=1), sms(failures=99, error=f"gateway said no to {CONTACTS.phone}"))
    with logs.trace("ab" * 16):
        with pytest.raises(DeliveryFailed):
            handlers.notify(deps, event())
        text = "\n".join(formatter.format(r) for r in caplog.records)
    assert "notification_id" in text and FIRM in text and "ab" * 16 in text
    for secret in (CONTACTS.email, CONTACTS.phone, CONTACTS.webhook_url, "zhang.san", "5555-9999", "zhangsan"):
        assert secret not in text
    assert repr(CONTACTS) == "Contacts(<redacted>)"


def test_an_undecodable_value_is_an_invalid_event():
    with pytest.raises(InvalidEvent, match="protobuf"):
        handlers.parse_decision(b"\xff\xff\xff")
    with pytest.raises(InvalidEvent, match="empty"):
        handlers.parse_payout_event(b"")
    with pytest.raises(InvalidEvent, match="tombstone"):
        handlers.parse_payout_event(None)


def test_a_payout_event_without_its_oneof_or_credit_code_is_invalid():
    from subsidy.v1 import payout_pb2

    with pytest.raises(InvalidEvent, match="none of"):
        handlers.parse_payout_event(payout_pb2.PayoutEvent(event_id="x").SerializeToString())
    bad = grant()
    bad.grant_recorded.credit_code = ""
    with pytest.raises(InvalidEvent, match="credit_code"):
        handlers.parse_payout_event(bad.SerializeToString())


def test_a_decision_with_an_unknown_outcome_is_invalid():
    with pytest.raises(InvalidEvent, match="outcome"):
        handlers.parse_decision(decision(outcome="MAYBE").SerializeToString())


def test_parsed_events_keep_their_ids_kind_and_trace():
    e = event(grant())
    assert (e.event_id, e.kind, e.credit_code, e.trace_id) == (
        "grant:SJ-2025-0001",
        model.GRANT_RECORDED,
        FIRM,
        "ab" * 16,
    )
    assert event().event_id == "decision:SJ-2025-0001@2024.1+abc"
