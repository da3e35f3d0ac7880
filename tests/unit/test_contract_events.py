"""subsidy.contracts.events: one decoder per event type consumed from Kafka,
one error (MalformedEvent) whose message says what is wrong, and the one
reading of a legacy tranche event's application."""

from __future__ import annotations

import pytest

from subsidy.contracts import events
from subsidy.contracts.events import MalformedEvent
from subsidy.v1 import application_pb2, decision_pb2, payout_pb2

#: A unified social credit code with valid check characters (the decoders check them).
FIRM = "91310117MA1K7D3C8A"

DECODERS = [
    (events.application, "subsidy.v1.Application"),
    (events.decision, "subsidy.v1.Decision"),
    (events.payout_event, "subsidy.v1.PayoutEvent"),
    (events.payment_confirmed, "subsidy.v1.PaymentConfirmed"),
]


@pytest.mark.parametrize("decode, name", DECODERS, ids=lambda x: getattr(x, "__name__", x))
def test_every_decoder_refuses_a_tombstone_an_empty_value_and_garbage_naming_its_type(decode, name):
    with pytest.raises(MalformedEvent, match=rf"^no value \(a tombstone\): expected a {name}$"):
        decode(None)
    with pytest.raises(MalformedEvent, match=rf"^empty value: expected a {name}$"):
        decode(b"")
    with pytest.raises(MalformedEvent, match=rf"^not a {name} protobuf: "):
        decode(b"\xff\xff\xff")
    with pytest.raises(MalformedEvent, match=rf"^not bytes \(str\): expected a {name}$"):
        decode("text")


def _decision(**kw):
    fields = dict(decision_id="A-1@v", application_id="A-1", credit_code=FIRM, clause="2", outcome="ELIGIBLE")
    fields.update(kw)
    return decision_pb2.Decision(**fields)


def test_a_decision_decodes_with_what_it_is_and_what_it_is_about():
    assert events.decision(bytearray(_decision().SerializeToString())) == _decision()
    for name in ("decision_id", "application_id", "credit_code", "clause"):
        with pytest.raises(MalformedEvent, match=f"^{name}: is required$"):
            events.decision(_decision(**{name: ""}).SerializeToString())


def test_an_application_decodes_and_its_content_is_left_to_the_codec():
    message = application_pb2.Application(application_id="A-1")
    assert events.application(memoryview(message.SerializeToString())) == message


def test_a_payment_names_the_payment_its_tranche_and_the_payee():
    ok = payout_pb2.PaymentConfirmed(payment_id="P-1", tranche_id="A-1/tranche-0", credit_code=FIRM, amount_fen=5)
    assert events.payment_confirmed(ok.SerializeToString()) == ok
    for name in ("payment_id", "tranche_id", "credit_code"):
        bad = payout_pb2.PaymentConfirmed()
        bad.CopyFrom(ok)
        bad.ClearField(name)
        with pytest.raises(MalformedEvent, match=f"^{name}: is required$"):
            events.payment_confirmed(bad.SerializeToString())


def _paid(**kw):
    fields = dict(tranche_id="A-1/tranche-0", credit_code=FIRM, application_id="A-1", clause="2")
    fields.update(kw)
    return payout_pb2.PayoutEvent(event_id="paid:A-1/tranche-0", tranche_paid=payout_pb2.TranchePaid(**fields))


def test_a_payout_event_needs_its_id_one_event_a_payee_and_for_a_tranche_its_id():
    assert events.payout_event(_paid().SerializeToString()) == _paid()
    with pytest.raises(MalformedEvent, match="^event_id: is required$"):
        events.payout_event(payout_pb2.PayoutEvent(tranche_paid=_paid().tranche_paid).SerializeToString())
    with pytest.raises(
        MalformedEvent,
        match="^event: none of grant_recorded, grant_payable, grant_withdrawn, tranche_scheduled, .*, recovery_recorded, grant_adjusted is set$",
    ):
        events.payout_event(payout_pb2.PayoutEvent(event_id="x").SerializeToString())
    with pytest.raises(MalformedEvent, match=r"^tranche_paid\.credit_code: is required$"):
        events.payout_event(_paid(credit_code="").SerializeToString())
    with pytest.raises(MalformedEvent, match=r"^tranche_paid\.tranche_id: is required$"):
        events.payout_event(_paid(tranche_id="").SerializeToString())


def test_a_tranche_event_is_about_the_application_it_names_not_its_tranche_ids_prefix():
    event = _paid(tranche_id="A-1/tranche-0", application_id="B-2")
    assert events.application_id_of(event) == "B-2" and not events.is_legacy(event)


@pytest.mark.parametrize(
    "kind, message",
    [
        ("tranche_due", payout_pb2.TrancheDue),
        ("tranche_cancelled", payout_pb2.TrancheCancelled),
        ("tranche_paid", payout_pb2.TranchePaid),
    ],
)
def test_a_legacy_tranche_event_is_about_the_application_its_tranche_id_derives_from(kind, message):
    event = payout_pb2.PayoutEvent(
        event_id="e", **{kind: message(tranche_id="SJ-2025-0001/tranche-12", credit_code=FIRM)}
    )
    assert events.is_legacy(event)
    assert events.application_id_of(events.payout_event(event.SerializeToString())) == "SJ-2025-0001"
    getattr(event, kind).tranche_id = "T-9"  # not the form payout gives: nothing to go by
    with pytest.raises(MalformedEvent, match=rf"^{kind}\.application_id: is required$"):
        events.payout_event(event.SerializeToString())


@pytest.mark.parametrize(
    "event",
    [
        payout_pb2.PayoutEvent(event_id="grant:A-1", grant_recorded=payout_pb2.GrantRecorded(credit_code=FIRM)),
        payout_pb2.PayoutEvent(
            event_id="scheduled:A-1/tranche-0",
            tranche_scheduled=payout_pb2.TrancheScheduled(tranche_id="A-1/tranche-0", credit_code=FIRM),
        ),
    ],
    ids=["grant_recorded", "tranche_scheduled"],
)
def test_events_that_always_named_their_application_are_malformed_without_it(event):
    assert not events.is_legacy(event)
    with pytest.raises(MalformedEvent, match=r"\.application_id: is required$"):
        events.payout_event(event.SerializeToString())


BAD_CHECK = "91310117MA1K7D3C8B"  # FIRM with its last check character changed


def test_a_decision_for_a_code_whose_check_character_fails_is_refused():
    fields = dict(decision_id="A-1@v", application_id="A-1", credit_code=BAD_CHECK, clause="2", outcome="ELIGIBLE")
    with pytest.raises(MalformedEvent, match="credit_code: not a valid unified social credit code"):
        events.decision(decision_pb2.Decision(**fields).SerializeToString())


def test_a_payout_event_or_payment_for_a_code_whose_check_character_fails_is_refused():
    event = payout_pb2.PayoutEvent(
        event_id="grant:A-1",
        grant_recorded=payout_pb2.GrantRecorded(credit_code=BAD_CHECK, application_id="A-1", clause="2"),
    )
    with pytest.raises(MalformedEvent, match="grant_recorded.credit_code: not a valid unified social credit code"):
        events.payout_event(event.SerializeToString())
    payment = payout_pb2.PaymentConfirmed(payment_id="P-1", tranche_id="A-1/tranche-0", credit_code=BAD_CHECK)
    with pytest.raises(MalformedEvent, match="credit_code: not a valid unified social credit code"):
        events.payment_confirmed(payment.SerializeToString())
