"""subsidy.contracts.events: one decoder per event type consumed from Kafka,
one error (MalformedEvent) whose message says what is wrong, and the one
reading of a legacy tranche event's application."""

from __future__ import annotations

import pytest

from subsidy.contracts import events
from subsidy.contracts.events import MalformedEvent
from subsidy.v1 import application_pb2, decision_pb2, firm_facts_pb2, notice_pb2, payout_pb2, proposal_pb2, review_pb2

#: A unified social credit code with valid check characters (the decoders check them).
FIRM = "91310117MA1K7D3C8A"

DECODERS = [
    (events.application, "subsidy.v1.Application"),
    (events.decision, "subsidy.v1.Decision"),
    (events.payout_event, "subsidy.v1.PayoutEvent"),
    (events.payment_confirmed, "subsidy.v1.PaymentConfirmed"),
    (events.notice_event, "subsidy.v1.NoticeEvent"),
    (events.review_event, "subsidy.v1.ReviewEvent"),
    (events.proposal_event, "subsidy.v1.ProposalEvent"),
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


@pytest.mark.parametrize(
    "message, kinds",
    [
        (notice_pb2.NoticeEvent, events.NOTICE_KINDS),
        (review_pb2.ReviewEvent, events.REVIEW_KINDS),
        (proposal_pb2.ProposalEvent, events.PROPOSAL_KINDS),
    ],
    ids=lambda x: getattr(x, "__name__", ""),
)
def test_the_kinds_a_refusal_lists_are_the_oneof_of_the_proto_in_its_order(message, kinds):
    assert kinds == tuple(f.name for f in message.DESCRIPTOR.oneofs_by_name["event"].fields)


def test_every_payout_kind_of_the_proto_is_listed():
    oneof = payout_pb2.PayoutEvent.DESCRIPTOR.oneofs_by_name["event"].fields
    assert sorted(events.PAYOUT_KINDS) == sorted(f.name for f in oneof)


def _line_payable(**kw):
    fields = dict(decision_id="A-1@v", application_id="A-1", credit_code=FIRM, notice_id="N-1", payable_on="2025-01-02")
    fields.update(kw)
    return notice_pb2.NoticeEvent(event_id="payable:A-1@v", line_payable=notice_pb2.LinePayable(**fields))


def test_a_notice_event_needs_its_id_and_one_event_and_leaves_the_content_to_its_readers():
    assert events.notice_event(memoryview(_line_payable().SerializeToString())) == _line_payable()
    # What a line or an objection must hold is each reader's (payout reads lines, notify the rest).
    content = _line_payable(credit_code="", payable_on="")
    assert events.notice_event(content.SerializeToString()) == content
    with pytest.raises(MalformedEvent, match="^event_id: is required$"):
        events.notice_event(notice_pb2.NoticeEvent(line_payable=_line_payable().line_payable).SerializeToString())
    with pytest.raises(
        MalformedEvent,
        match="^event: none of notice_published, objection_lodged, objection_resolved, line_payable, line_withdrawn is set$",
    ):
        events.notice_event(notice_pb2.NoticeEvent(event_id="x").SerializeToString())


def _information_requested(**kw):
    fields = dict(item_id="I-1", application_id="A-1", credit_code=FIRM, request_number=1, missing="营业执照副本")
    fields.update(kw)
    return review_pb2.ReviewEvent(
        event_id="info-requested:I-1:1", information_requested=review_pb2.InformationRequested(**fields)
    )


def test_a_review_event_needs_its_id_and_one_event_and_leaves_the_content_to_its_readers():
    assert events.review_event(bytearray(_information_requested().SerializeToString())) == _information_requested()
    content = _information_requested(missing="", request_number=0)
    assert events.review_event(content.SerializeToString()) == content
    with pytest.raises(MalformedEvent, match="^event_id: is required$"):
        events.review_event(
            review_pb2.ReviewEvent(
                information_requested=_information_requested().information_requested
            ).SerializeToString()
        )
    with pytest.raises(MalformedEvent, match="^event: none of review_requested, .*, information_answered is set$"):
        events.review_event(review_pb2.ReviewEvent(event_id="x").SerializeToString())


def _expired(**kw):
    fields = dict(event_id="expired:P-1", proposal_id="P-1", credit_code=FIRM)
    fields.update(kw)
    return proposal_pb2.ProposalEvent(**fields, expired=proposal_pb2.ProposalExpired(expired_on="2025-03-01"))


def test_a_proposal_event_names_itself_its_proposal_and_the_firm_with_one_event():
    assert events.proposal_event(_expired().SerializeToString()) == _expired()
    for name in ("event_id", "proposal_id", "credit_code"):
        with pytest.raises(MalformedEvent, match=f"^{name}: is required$"):
            events.proposal_event(_expired(**{name: ""}).SerializeToString())
    bare = proposal_pb2.ProposalEvent(event_id="e", proposal_id="P-1", credit_code=FIRM)
    with pytest.raises(MalformedEvent, match="^event: none of created, confirmed, declined, expired is set$"):
        events.proposal_event(bare.SerializeToString())


@pytest.mark.parametrize("proposal_id", ["P-1\r\nBcc: x@evil.example", "=HYPERLINK(1)", "<b>x</b>", "P" * 5000])
def test_a_proposal_id_outside_the_identifier_grammar_is_refused(proposal_id):
    # A proposal id becomes an application id: the grammar intake enforces.
    with pytest.raises(MalformedEvent, match="proposal_id"):
        events.proposal_event(_expired(proposal_id=proposal_id).SerializeToString())


def test_firm_facts_decode_and_a_tombstone_says_the_platform_no_longer_knows_the_firm():
    facts = firm_facts_pb2.FirmFacts(credit_code=FIRM, name="某某科技", as_of="2025-01-02", feed_sequence=7)
    assert events.firm_facts(facts.SerializeToString()) == facts
    for tombstone in (None, b"", bytearray(), memoryview(b"")):
        assert events.firm_facts(tombstone) is None
    with pytest.raises(MalformedEvent, match=r"^not a subsidy.v1.FirmFacts protobuf: "):
        events.firm_facts(b"\xff\xff\xff")
    with pytest.raises(MalformedEvent, match=r"^not bytes \(str\): expected a subsidy.v1.FirmFacts$"):
        events.firm_facts("text")


def test_firm_facts_are_not_checked_against_a_key_the_decoder_does_not_see():
    # The key is the firm (each reader checks it and the facts' credit code against it).
    facts = firm_facts_pb2.FirmFacts(name="无代码")
    assert events.firm_facts(facts.SerializeToString()) == facts


def _due(application_id):
    return payout_pb2.PayoutEvent(
        event_id=f"due:{application_id}",
        tranche_due=payout_pb2.TrancheDue(
            tranche_id=f"{application_id}/tranche-1", credit_code=FIRM, application_id=application_id
        ),
    )


def test_a_consumer_checks_only_the_payout_kinds_it_uses_and_passes_over_the_others():
    only = ("grant_recorded",)
    hostile = _due("HX-1\r\nBcc: x@evil.example")
    with pytest.raises(MalformedEvent, match=r"^tranche_due\.application_id"):
        events.payout_event(hostile.SerializeToString())
    assert events.payout_event(hostile.SerializeToString(), checked_kinds=only) == hostile
    nothing = payout_pb2.PayoutEvent()
    nothing.tranche_due.amount_fen = 1  # no event id, no ids: not this consumer's to judge
    assert events.payout_event(nothing.SerializeToString(), checked_kinds=only) == nothing
    grant = payout_pb2.PayoutEvent(
        event_id="grant:A-1", grant_recorded=payout_pb2.GrantRecorded(credit_code=FIRM, clause="2")
    )
    with pytest.raises(MalformedEvent, match=r"^grant_recorded\.application_id: is required$"):
        events.payout_event(grant.SerializeToString(), checked_kinds=only)
    with pytest.raises(MalformedEvent, match="^not a subsidy.v1.PayoutEvent protobuf: "):
        events.payout_event(b"\xff\xff\xff", checked_kinds=only)
    with pytest.raises(MalformedEvent, match=r"^no value \(a tombstone\)"):
        events.payout_event(None, checked_kinds=only)
