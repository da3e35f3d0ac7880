"""The consumed topics' decoders refuse an application id outside the
identifier grammar (issue 17; subsidy/contracts/events.py): a valid Decision
or PayoutEvent whose application id carries a line break, a formula prefix,
markup or 5,000 characters is dead-lettered by every consumer that decodes
it, before it reaches payout's ledger, notify's e-mails or intake's status."""

from __future__ import annotations

import json

import pytest

from subsidy.contracts import events
from subsidy.v1 import payout_pb2
from tests.faults.hostile import DEMO_FILE, HOSTILE_IDS, _application, _decision, intruder

CODE = intruder(1)


@pytest.mark.parametrize("name", sorted(HOSTILE_IDS))
def test_a_decision_with_a_hostile_application_id_is_malformed(name):
    value = _decision(CODE, HOSTILE_IDS[name]).SerializeToString()
    with pytest.raises(events.MalformedEvent, match=r"^application_id: "):
        events.decision(value)


def test_a_decision_with_a_grammatical_id_is_decoded():
    message = events.decision(_decision(CODE, "SJ-2025.7100:a/b_c").SerializeToString())
    assert message.application_id == "SJ-2025.7100:a/b_c"


def _due(application_id: str, tranche_id: str) -> bytes:
    return payout_pb2.PayoutEvent(
        event_id="due:x",
        tranche_due=payout_pb2.TrancheDue(
            tranche_id=tranche_id, credit_code=CODE, amount_fen=1, application_id=application_id
        ),
    ).SerializeToString()


@pytest.mark.parametrize("name", sorted(HOSTILE_IDS))
def test_a_payout_event_with_a_hostile_application_id_is_malformed(name):
    hid = HOSTILE_IDS[name]
    with pytest.raises(events.MalformedEvent, match=r"^tranche_due\.application_id: "):
        events.payout_event(_due(hid, f"{hid}/tranche-1"))
    # a legacy event (no application_id): the tranche id's prefix is checked the same way
    with pytest.raises(events.MalformedEvent, match=r"^tranche_due\.application_id: "):
        events.payout_event(_due("", f"{hid}/tranche-1"))


def test_payout_events_with_grammatical_ids_are_decoded():
    assert events.application_id_of(events.payout_event(_due("SJ-1", "SJ-1/tranche-2"))) == "SJ-1"
    assert events.application_id_of(events.payout_event(_due("", "SJ-1/tranche-2"))) == "SJ-1"


@pytest.mark.parametrize("name", sorted(HOSTILE_IDS))
def test_review_refuses_hostile_ids_before_they_reach_its_queue_or_a_public_notice(name):
    from subsidy.services.review import handlers
    from subsidy.services.review.model import Rejected

    hid = HOSTILE_IDS[name]
    with pytest.raises(Rejected, match="application_id"):
        handlers.parse_decision(_decision(CODE, hid).SerializeToString())
    grant = payout_pb2.PayoutEvent(
        event_id=f"grant:{hid}",
        grant_recorded=payout_pb2.GrantRecorded(
            application_id=hid, decision_id=f"{hid}@v", credit_code=CODE, clause="6", granted_fen=1
        ),
    ).SerializeToString()
    with pytest.raises(Rejected, match="application_id"):  # before any store is touched
        handlers.record_payout_event(None, grant, None)
    demo = json.loads(DEMO_FILE.read_text(encoding="utf-8").splitlines()[0])
    with pytest.raises(Rejected, match="application_id"):
        handlers.record_application(None, _application(CODE, hid, demo).SerializeToString(), None)


@pytest.mark.parametrize("name", sorted(HOSTILE_IDS))
def test_notify_refuses_hostile_proposal_and_review_ids(name):
    from subsidy.services.notify import handlers
    from subsidy.services.notify.model import InvalidEvent
    from subsidy.v1 import proposal_pb2, review_pb2

    hid = HOSTILE_IDS[name]
    proposal = proposal_pb2.ProposalEvent(
        event_id="created:x",
        proposal_id=hid,
        credit_code=CODE,
        created=proposal_pb2.ProposalCreated(proposal=proposal_pb2.Proposal(proposal_id=hid, credit_code=CODE)),
    )
    with pytest.raises(InvalidEvent, match="proposal_id"):
        handlers.parse_proposal_event(proposal.SerializeToString())
    request = review_pb2.ReviewEvent(
        event_id="info:x",
        information_requested=review_pb2.InformationRequested(
            item_id="I-1", application_id=hid, credit_code=CODE, request_number=1, missing="营业执照副本"
        ),
    )
    with pytest.raises(InvalidEvent, match="information_requested.application_id"):
        handlers.parse_review_event(request.SerializeToString())
