"""The pure notify use case with fake channels, log and registry."""

from __future__ import annotations

import logging

import pytest

from subsidy.platform.registry import Contacts
from subsidy.services.notify import handlers, model
from subsidy.services.notify.model import DeliveryFailed, InvalidEvent
from subsidy.platform import logs

from notify_fakes import (
    CONTACTS, FIRM, TITLES, FakeChannel, FakeFirms, FakeLog, cancelled, decision, firm_record, grant, paid, scheduled,
)


def make(*channels, contacts=CONTACTS, attempts=3):
    sleeps: list[float] = []
    deps = handlers.Deps(firms=FakeFirms(firm_record(contacts=contacts)), log=FakeLog(), channels=list(channels),
                         titles=TITLES, attempts=attempts, backoff_s=0.1, max_backoff_s=0.25, sleep=sleeps.append)
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


def test_a_scheduled_tranche_is_remembered_so_paid_and_cancelled_can_name_the_clause():
    channel = email()
    deps, _ = make(channel)
    handlers.notify(deps, event(scheduled(number=2)))
    handlers.notify(deps, event(cancelled(number=2)))
    handlers.notify(deps, event(paid(number=2)))
    bodies = [n.body for n, _ in channel.delivered]
    assert all("第2条“鼓励培育行业性工业互联网平台”" in b for b in bodies)


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
    assert "Contacts(<redacted>)" == repr(CONTACTS)


def test_an_undecodable_value_is_an_invalid_event():
    with pytest.raises(InvalidEvent, match="protobuf"):
        handlers.parse_decision(b"\xff\xff\xff")
    with pytest.raises(InvalidEvent, match="empty"):
        handlers.parse_payout_event(b"")


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
    assert (e.event_id, e.kind, e.credit_code, e.trace_id) == ("grant:SJ-2025-0001", model.GRANT_RECORDED, FIRM, "ab" * 16)
    assert event().event_id == "decision:SJ-2025-0001@2024.1+abc"
