"""Release gates and recovery (issue 13) in notify: a held tranche tells the
firm why, what to do and the grace's last day; a release and a recovery are
told; money recovered is finance's record and skipped; a record no message
can come from is dead-lettered naming the field; a replay sends nothing twice.
The texts themselves: test_notify_golden.py."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from subsidy.contracts import topics
from subsidy.platform.consumer import RecordRejected
from subsidy.services.notify import handlers
from subsidy.services.notify.adapters.kafka import NotifyHandler
from subsidy.services.notify.model import RecoveryOpened, TrancheHeld

sys.path.insert(0, str(Path(__file__).parent))
from notify_fakes import (
    TITLES,
    FakeChannel,
    FakeFirms,
    FakeLog,
    firm_record,
    recovery_opened,
    recovery_recorded,
    tranche_held,
    tranche_released,
)


def record(message, offset=0):
    return SimpleNamespace(
        topic=topics.PAYOUTS.name, value=message.SerializeToString(), key=b"", partition=0, offset=offset, headers=[]
    )


def setup():
    email, sms = FakeChannel("email", "email"), FakeChannel("sms", "phone")
    deps = handlers.Deps(
        firms=FakeFirms(firm_record()), log=FakeLog(), channels=[email, sms], titles=TITLES, attempts=1
    )
    return NotifyHandler(deps), email, sms


def test_a_held_tranche_says_why_what_to_do_and_until_when_on_every_channel():
    handle, email, sms = setup()
    assert handle(record(tranche_held())) == "handled"
    [(mail, _)] = email.delivered
    [(text, _)] = sms.delivered
    assert mail.kind == "tranche_held"
    assert "暂停原因：工商登记已不在松江区" in mail.body
    assert "宽限期截止：2026年5月21日" in mail.body and "请于2026年5月21日前" in mail.body
    assert "截至2026年1月12日" in mail.body
    assert "工商登记已不在松江区" in text.sms and "2026年5月21日" in text.sms
    assert mail.data["reason_codes"] == ["REGISTERED_OUTSIDE_DISTRICT"]
    # A replay sends nothing again.
    handle(record(tranche_held(), offset=1))
    assert (len(email.delivered), len(sms.delivered)) == (1, 1)


def test_a_release_and_a_recovery_are_told_and_money_recovered_is_not():
    handle, email, _ = setup()
    assert handle(record(tranche_released())) == "handled"
    assert handle(record(recovery_opened(void=True))) == "handled"
    assert handle(record(recovery_recorded())) == "skipped"
    released, opened = (n for n, _ in email.delivered)
    assert "已于2026年3月15日解除暂停" in released.body
    assert "追回金额：500,000元" in opened.body and "追回原因：经核查，申报的研发投入存在虚报" in opened.body
    assert "该项资助已被认定无效" in opened.body


def test_the_events_decode_into_notifys_values():
    held = handlers.parse_payout_event(tranche_held().SerializeToString()).fact
    assert isinstance(held, TrancheHeld)
    assert (held.reason, str(held.hold_until), str(held.facts_as_of)) == (
        "工商登记已不在松江区",
        "2026-05-21",
        "2026-01-12",
    )
    assert handlers.parse_payout_event(tranche_held(facts_as_of="").SerializeToString()).fact.facts_as_of is None
    opened = handlers.parse_payout_event(recovery_opened().SerializeToString()).fact
    assert isinstance(opened, RecoveryOpened) and opened.amount_fen == 50000000 and not opened.void_award


@pytest.mark.parametrize(
    ("event", "mutate", "message"),
    [
        (tranche_held, lambda b: setattr(b, "reason", ""), "^tranche_held.reason: is required"),
        (tranche_held, lambda b: setattr(b, "hold_until", "2026-02-30"), "^tranche_held.hold_until: not a real date"),
        (tranche_held, lambda b: b.ClearField("tranche_id"), "^tranche_held.tranche_id: is required"),
        (tranche_held, lambda b: setattr(b, "amount_fen", -1), "^tranche_held.amount_fen: must not be negative"),
        (tranche_released, lambda b: setattr(b, "released_on", "x"), "^tranche_released.released_on: not a real"),
        (recovery_opened, lambda b: setattr(b, "reason", ""), "^recovery_opened.reason: is required"),
        (recovery_opened, lambda b: setattr(b, "amount_fen", 0), "^recovery_opened.amount_fen: must be positive"),
        (recovery_opened, lambda b: b.ClearField("application_id"), "^recovery_opened.application_id: is required"),
    ],
)
def test_an_event_no_message_can_come_from_is_dead_lettered_naming_the_field(event, mutate, message):
    handle, email, _ = setup()
    e = event()
    mutate(getattr(e, e.WhichOneof("event")))
    with pytest.raises(RecordRejected, match=message.replace("^", "")):
        handle(record(e))
    assert email.calls == []


def test_a_firm_without_a_phone_still_gets_the_email():
    email, sms = FakeChannel("email", "email"), FakeChannel("sms", "phone")
    firm = firm_record()
    no_phone = dataclasses.replace(firm, contacts=dataclasses.replace(firm.contacts, phone=""))
    deps = handlers.Deps(firms=FakeFirms(no_phone), log=FakeLog(), channels=[email, sms], titles=TITLES, attempts=1)
    NotifyHandler(deps)(record(tranche_held()))
    assert (len(email.delivered), len(sms.delivered)) == (1, 0)
