"""免申即享 proposals (issue 13, item 4) in notify: a proposal made tells the
firm what it may receive, on what fact and until when to confirm; an
expired one is told; a confirmation or a decline (the firm's own act) is
skipped; the webhook's data is the proposal's own fields, never the
application it carries; a record no message can come from is dead-lettered
naming the field. The texts themselves: test_notify_golden.py."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from subsidy.contracts import topics
from subsidy.platform.consumer import RecordRejected
from subsidy.services.notify import handlers
from subsidy.services.notify.adapters.kafka import NotifyHandler, notify_consumer

sys.path.insert(0, str(Path(__file__).parent))
from notify_fakes import (
    TITLES,
    FakeChannel,
    FakeFirms,
    FakeLog,
    firm_record,
    proposal_created,
    proposal_expired,
    proposal_step,
)


def record(message, offset=0, value=None):
    return SimpleNamespace(
        topic=topics.PROPOSALS.name,
        value=message.SerializeToString() if value is None else value,
        key=b"",
        partition=0,
        offset=offset,
        headers=[],
    )


def setup():
    email, hook = FakeChannel("email", "email"), FakeChannel("webhook", "webhook_url")
    deps = handlers.Deps(
        firms=FakeFirms(firm_record()), log=FakeLog(), channels=[email, hook], titles=TITLES, attempts=1
    )
    return NotifyHandler(deps), email, hook


def test_notify_reads_the_proposals_topic():
    loop = notify_consumer(
        handlers.Deps(firms=FakeFirms(), log=FakeLog(), channels=[], titles={}), "unused", producer_factory=lambda: None
    )
    assert topics.PROPOSALS.name in loop.topics


def test_a_proposal_made_says_what_on_what_fact_and_until_when_and_the_webhook_carries_no_application():
    handle, email, hook = setup()
    assert handle(record(proposal_created())) == "handled"
    [(mail, _)] = email.delivered
    [(posted, _)] = hook.delivered
    assert mail.kind == "proposal_created"
    assert "预计支持金额：300,000元" in mail.body and "确认截止：2026年4月1日" in mail.body
    assert "依据：DCMM_LEVEL:DCMM-2026-0042" in mail.body and "确认收款账户" in mail.body
    assert set(posted.data) == {
        "proposal_id",
        "clause",
        "fact_reference",
        "expected_award_fen",
        "policy_version",
        "proposed_on",
        "expires_on",
    }
    assert posted.data["expected_award_fen"] == 30000000
    handle(record(proposal_created(), offset=1))  # a replay: nothing sent again
    assert len(email.delivered) == 1


def test_an_expired_proposal_is_told_and_the_firms_own_acts_are_skipped():
    handle, email, _ = setup()
    assert handle(record(proposal_expired())) == "handled"
    assert "已于2026年4月2日失效" in email.delivered[0][0].body
    assert handle(record(proposal_step("confirmed"))) == "skipped"
    assert handle(record(proposal_step("declined"))) == "skipped"
    assert len(email.delivered) == 1


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e.ClearField("event_id"), "event_id: is required"),
        (lambda e: e.ClearField("credit_code"), "credit_code: is required"),
        (lambda e: e.ClearField("created"), "event: none of created, confirmed, declined, expired is set"),
        (lambda e: setattr(e.created.proposal, "proposal_id", "P-other"), "created.proposal.proposal_id: 'P-other'"),
        (lambda e: setattr(e.created.proposal, "clause", ""), "created.proposal.clause: is required"),
        (lambda e: setattr(e.created.proposal, "expires_on", ""), "created.proposal.expires_on: is required"),
        (lambda e: setattr(e.created.proposal, "expires_on", "2026-02-30"), "created.proposal.expires_on: not a real"),
        (lambda e: setattr(e.created.proposal, "expected_award_fen", -1), "expected_award_fen: must not be negative"),
    ],
)
def test_a_proposal_event_no_message_can_come_from_is_dead_lettered_naming_the_field(mutate, message):
    handle, email, _ = setup()
    event = proposal_created()
    mutate(event)
    with pytest.raises(RecordRejected, match=message.replace("(", r"\(")):
        handle(record(event))
    assert email.calls == []


def test_garbage_and_a_tombstone_are_dead_lettered():
    handle, _, _ = setup()
    with pytest.raises(RecordRejected, match="not a subsidy.v1.ProposalEvent protobuf"):
        handle(record(None, value=b"\xff\xff"))
    with pytest.raises(RecordRejected, match="empty value"):
        handle(record(None, value=b""))
