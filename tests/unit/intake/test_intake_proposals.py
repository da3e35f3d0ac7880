"""免申即享 in intake (subsidy/services/intake/proposals.py) over its SQLite
store and the demo registry: one proposal per fact, none for a claim already
applied for, confirmation submits the application through intake's own path
(outbox → subsidy.applications.v1), decline, expiry by the injected clock,
and the refusals naming the field."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from subsidy.core.policy import load_policy
from subsidy.core.proposals import load_proposals, proposal_id
from subsidy.core.workflow.settings import load_workflow
from subsidy.platform.clock import FixedClock
from subsidy.platform.db import Database
from subsidy.platform.registry import FileRegistry
from subsidy.services.intake import handlers, proposals
from subsidy.services.intake.adapters.directory import FileDirectory
from subsidy.services.intake.adapters.store import SqlStore
from subsidy.services.intake.model import CONFIRMED, DECLINED, EXPIRED, InvalidApplication, ProposalClosed
from subsidy.v1 import application_pb2, firm_facts_pb2, proposal_pb2

REPO = Path(__file__).resolve().parents[3]
SOFTWARE = "91310117K13R4HB249"
TODAY = dt.date(2026, 3, 2)


def facts(code: str = SOFTWARE, *, level: str = "3", reference: str = "DCMM-2026-0042", registered: bool = True):
    return firm_facts_pb2.FirmFacts(
        credit_code=code,
        name="上海泖港软件有限公司",
        as_of="2026-03-01",
        registered_in_district=registered,
        tax_registered_in_district=True,
        independent_legal_person=True,
        kinds=["SOFTWARE"],
        recognitions=[
            firm_facts_pb2.Recognition(
                kind="DCMM_LEVEL",
                level=level,
                reference=reference,
                awarded_on="2026-03-01",
                issuer="中国电子信息行业联合会",
            )
        ],
        feed_sequence=17,
    )


def payee():
    return proposal_pb2.PayeeAccount(
        bank_name="上海银行松江支行", account_name="上海泖港软件有限公司", account_number="31600703000123456"
    )


@pytest.fixture
def deps():
    store = SqlStore(Database("sqlite:///:memory:", store="intake-test"))
    store.create_schema()
    clock = FixedClock(TODAY)
    intake = handlers.Deps(
        store=store,
        registry=FileRegistry(REPO / "demo" / "registry.json"),
        directory=FileDirectory(REPO / "policy" / "directory"),
        clock=clock.now,
    )
    d = proposals.ProposalDeps(
        intake=intake,
        store=store,
        policy=load_policy(),
        rules=load_proposals(),
        workflow=load_workflow(),
        clock=clock,
    )
    yield d
    store.db.close()


def outbox(deps, topic: str) -> list[bytes]:
    with deps.store.db.transaction() as tx:
        return [bytes(r[0]) for r in tx.all("SELECT value FROM intake_outbox WHERE topic = ? ORDER BY id", (topic,))]


def events(deps) -> list[proposal_pb2.ProposalEvent]:
    return [proposal_pb2.ProposalEvent.FromString(v) for v in outbox(deps, "subsidy.proposals.v1")]


PID = proposal_id(SOFTWARE, "9", "DCMM_LEVEL:DCMM-2026-0042")


def test_a_dcmm_level_3_certification_makes_one_proposal_announced_once(deps):
    assert proposals.on_firm_facts(deps, facts()) == [(PID, "created")]
    stored = deps.store.get_proposal(PID)
    p = proposals.proposal_message(stored)
    assert (p.clause, p.expected_award_fen, p.proposed_on, p.expires_on) == (
        "9",
        20_000_000,
        "2026-03-02",
        "2026-04-01",
    )
    assert p.application.application_id == PID and p.application.dcmm.level == 3
    assert p.application.dcmm.certificate_id == "DCMM-2026-0042"
    [event] = events(deps)
    assert event.WhichOneof("event") == "created" and event.event_id == f"proposal:{PID}:created"
    assert event.credit_code == SOFTWARE
    # the same fact again (a redelivery, a resync): nothing new
    assert proposals.on_firm_facts(deps, facts()) == [(PID, "known")]
    assert len(events(deps)) == 1
    assert outbox(deps, "subsidy.applications.v1") == [], "nothing is submitted before the firm confirms"


def test_no_proposal_for_a_firm_out_of_scope_or_a_level_that_pays_nothing(deps):
    assert proposals.on_firm_facts(deps, facts(registered=False)) == []
    assert proposals.on_firm_facts(deps, facts(level="1")) == []
    assert events(deps) == []


def test_no_proposal_for_a_claim_the_firm_already_applied_for(deps):
    app = application_pb2.Application(
        application_id="SJ-DCMM-OWN-1",
        submitted_on="2026-02-20",
        firm=application_pb2.Firm(credit_code=SOFTWARE),
        dcmm=application_pb2.DcmmClaim(certificate_id="OWN-CERT", level=3),
    )
    handlers.submit(deps.intake, app)
    assert proposals.on_firm_facts(deps, facts()) == [(PID, "applied")]
    assert events(deps) == [] and deps.store.get_proposal(PID) is None


def test_confirming_submits_the_application_through_intake_once(deps):
    proposals.on_firm_facts(deps, facts())
    stored, submitted = proposals.confirm(deps, PID, True, payee(), "ab" * 16)
    assert stored.state == CONFIRMED and not submitted.duplicate
    assert submitted.receipt.application_id == PID
    [payload] = outbox(deps, "subsidy.applications.v1")
    app = application_pb2.Application.FromString(payload)
    assert app.application_id == PID and app.submitted_on == "2026-03-02" and app.dcmm.level == 3
    assert [e.WhichOneof("event") for e in events(deps)] == ["created", "confirmed"]
    # again: the same receipt, nothing new
    again, repeat = proposals.confirm(deps, PID, True, payee())
    assert again.state == CONFIRMED and repeat.duplicate and repeat.receipt == submitted.receipt
    assert len(outbox(deps, "subsidy.applications.v1")) == 1 and len(events(deps)) == 2
    with deps.store.db.transaction() as tx:
        assert "31600703000123456" in tx.one("SELECT payee FROM intake_proposals")[0]


def test_a_crash_between_the_submission_and_the_mark_is_finished_by_the_next_call(deps):
    proposals.on_firm_facts(deps, facts())
    real = deps.store.decide_proposal

    def crash(*args, **kwargs):
        raise RuntimeError("killed")

    deps.store.decide_proposal = crash
    with pytest.raises(RuntimeError):
        proposals.confirm(deps, PID, True, payee())
    deps.store.decide_proposal = real
    deps.clock.set(TODAY + dt.timedelta(days=1))  # retried the next day: another submitted_on
    stored, submitted = proposals.confirm(deps, PID, True, payee())
    assert stored.state == CONFIRMED and submitted.duplicate
    assert len(outbox(deps, "subsidy.applications.v1")) == 1


@pytest.mark.parametrize(
    ("consent", "account", "field"),
    [
        (False, payee(), "consent"),
        (True, proposal_pb2.PayeeAccount(bank_name="b", account_name="n"), "payee_account.account_number"),
        (True, proposal_pb2.PayeeAccount(account_name="n", account_number="1"), "payee_account.bank_name"),
        (
            True,
            proposal_pb2.PayeeAccount(bank_name="b", account_name="n", account_number="12a"),
            "payee_account.account_number",
        ),
    ],
)
def test_a_confirmation_without_consent_or_a_payee_account_is_refused_naming_the_field(deps, consent, account, field):
    proposals.on_firm_facts(deps, facts())
    with pytest.raises(InvalidApplication) as info:
        proposals.confirm(deps, PID, consent, account)
    assert info.value.field == field
    assert deps.store.get_proposal(PID).state == "PROPOSED"
    assert outbox(deps, "subsidy.applications.v1") == []


def test_declined_is_final(deps):
    proposals.on_firm_facts(deps, facts())
    stored = proposals.decline(deps, PID, "已通过其他渠道申报")
    assert stored.state == DECLINED
    assert proposals.proposal_message(stored).decline_reason == "已通过其他渠道申报"
    with pytest.raises(ProposalClosed, match="DECLINED"):
        proposals.confirm(deps, PID, True, payee())
    assert [e.WhichOneof("event") for e in events(deps)] == ["created", "declined"]


def test_silence_expires_the_proposal_after_its_window(deps):
    proposals.on_firm_facts(deps, facts())
    deps.clock.set(dt.date(2026, 4, 1))  # the last day: still open
    assert proposals.expire_due(deps) == 0
    deps.clock.set(dt.date(2026, 4, 2))
    with pytest.raises(ProposalClosed, match="expired after 2026-04-01"):
        proposals.confirm(deps, PID, True, payee())
    assert proposals.expire_due(deps) == 1 and proposals.expire_due(deps) == 0
    assert deps.store.get_proposal(PID).state == EXPIRED
    assert [e.WhichOneof("event") for e in events(deps)] == ["created", "expired"]
    assert events(deps)[1].expired.expired_on == "2026-04-02"


def test_listing_is_per_firm_and_paged(deps):
    proposals.on_firm_facts(deps, facts())
    proposals.on_firm_facts(deps, facts(level="2", reference="DCMM-2025-0007"))
    rows, token = proposals.list_for_firm(deps, SOFTWARE, 1)
    assert len(rows) == 1 and token
    more, end = proposals.list_for_firm(deps, SOFTWARE, 1, token)
    assert len(more) == 1 and end == "" and more[0].proposal_id != rows[0].proposal_id
    with pytest.raises(InvalidApplication, match="page_token"):
        proposals.list_for_firm(deps, "91310117313Q6C3D6G", 1, token)


def test_a_reissued_certificate_for_the_same_claim_makes_no_second_proposal(deps):
    assert proposals.on_firm_facts(deps, facts()) == [(PID, "created")]
    reissued = proposal_id(SOFTWARE, "9", "DCMM_LEVEL:DCMM-2026-0042-R1")
    assert proposals.on_firm_facts(deps, facts(reference="DCMM-2026-0042-R1")) == [(reissued, "proposed")]
    assert len(events(deps)) == 1
