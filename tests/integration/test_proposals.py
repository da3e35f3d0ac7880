"""免申即享 end to end on the real broker: the FakeDataPlatform test double
certifies a software firm DCMM level 3; registry-sync publishes its facts to
subsidy.firms.v1; intake makes exactly one proposal (the same fact sent
again makes none), announces it on subsidy.proposals.v1, and the firm's
confirmation over gRPC puts the application on subsidy.applications.v1."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from subsidy.core.credit_code import complete
from subsidy.core.proposals import proposal_id
from subsidy.platform.clock import SystemClock
from subsidy.services.registry_sync.bootstrap import RegistrySyncApp
from subsidy.services.registry_sync.config import Settings as SyncSettings
from subsidy.v1 import application_pb2, proposal_pb2, proposal_pb2_grpc
from subsidy_dev import free_port
from subsidy_dev.platform_fake import FakeDataPlatform

from .running import RunningApp, wait_for
from .test_intake_support import ROOT, RunningIntake, settings
from .test_registry_sync import migrate as migrate_sync
from .test_registry_sync import read_topic

pytestmark = pytest.mark.integration

DEMO_SOFTWARE = "91310117K13R4HB249"  # 上海…软件, kinds SOFTWARE, in demo/registry.json
TOKEN = "it-proposals-token"


def firm_of_its_own(tmp_path: Path) -> tuple[str, Path]:
    """The demo's software firm under a credit code of this test's own: the
    broker is shared by the session, and intake reads subsidy.firms.v1 from
    the start, where other tests' platforms certified the demo firm (one
    proposal per claim: this test's fact would make none)."""
    doc = json.loads((ROOT / "demo" / "registry.json").read_text(encoding="utf-8"))
    firm = dict(next(f for f in doc["firms"] if f["credit_code"] == DEMO_SOFTWARE))
    firm["credit_code"] = complete("91310117" + uuid.uuid4().hex[:8].upper())
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"firms": [firm]}, ensure_ascii=False), encoding="utf-8")
    return firm["credit_code"], path


def test_a_certification_makes_one_proposal_that_the_firm_confirms(kafka_bootstrap, tmp_path):
    SOFTWARE, registry = firm_of_its_own(tmp_path)
    reference = f"DCMM-IT-{uuid.uuid4().hex[:10]}"
    pid = proposal_id(SOFTWARE, "9", f"DCMM_LEVEL:{reference}")
    platform = FakeDataPlatform.from_file(registry, token=TOKEN)
    platform.start()
    sync_db = f"sqlite:///{tmp_path / 'registry_sync.db'}"
    migrate_sync(sync_db)
    sync = SyncSettings(
        kafka_bootstrap=kafka_bootstrap,
        grpc_address=f"127.0.0.1:{free_port()}",
        database_url=sync_db,
        feed_url=platform.url,
        feed_token=TOKEN,
        poll_interval_s=0.2,
        metrics_address="",
    )
    intake = settings(
        kafka_bootstrap,
        f"sqlite:///{tmp_path / 'intake.db'}",
        firms_group=f"it-intake-firms-{uuid.uuid4().hex[:8]}",
        registry_file=str(registry),
        proposal_expiry_interval_s=1.0,
    )
    try:
        with RunningIntake(intake) as svc, RunningApp(lambda: RegistrySyncApp(sync, clock=SystemClock())):
            stub = proposal_pb2_grpc.ProposalServiceStub(svc.channel)

            def proposed():
                listed = stub.ListProposals(proposal_pb2.ListProposalsRequest(credit_code=SOFTWARE, page_size=100))
                return [p for p in listed.proposals if p.proposal_id == pid]

            platform.certify(SOFTWARE, "DCMM_LEVEL", "3", reference)
            [proposal] = wait_for(proposed, timeout=90, interval=0.3)
            assert proposal.state == proposal_pb2.PROPOSAL_STATE_PROPOSED
            assert proposal.expected_award_fen == 20_000_000
            assert proposal.application.dcmm.certificate_id == reference

            # the same fact reported again (the platform sends it twice): still one proposal
            platform.certify(SOFTWARE, "DCMM_LEVEL", "3", reference)
            platform.change("CONTACTS", SOFTWARE, {"email": "new@example.cn", "phone": "", "webhook_url": ""})
            wait_for(lambda: platform.high_water <= _synced(tmp_path), timeout=60, interval=0.3)

            answer = stub.ConfirmProposal(
                proposal_pb2.ConfirmProposalRequest(
                    proposal_id=pid,
                    consent=True,
                    payee_account=proposal_pb2.PayeeAccount(
                        bank_name="上海银行松江支行", account_name="上海软件", account_number="31600703000123456"
                    ),
                )
            )
            assert answer.receipt.application_id == pid
            assert answer.proposal.state == proposal_pb2.PROPOSAL_STATE_CONFIRMED

            def submitted():
                records = read_topic(kafka_bootstrap, "subsidy.applications.v1", {SOFTWARE})
                return [r for r in records if application_pb2.Application.FromString(r.value).application_id == pid]

            [record] = wait_for(submitted, timeout=60, interval=0.5)
            assert application_pb2.Application.FromString(record.value).dcmm.level == 3

            def announced():
                records = read_topic(kafka_bootstrap, "subsidy.proposals.v1", {SOFTWARE})
                kinds = [
                    proposal_pb2.ProposalEvent.FromString(r.value).WhichOneof("event")
                    for r in records
                    if proposal_pb2.ProposalEvent.FromString(r.value).proposal_id == pid
                ]
                return kinds if "confirmed" in kinds else None

            assert wait_for(announced, timeout=60, interval=0.5) == ["created", "confirmed"]
    finally:
        platform.stop()


def _synced(tmp_path) -> int:
    import sqlite3

    with sqlite3.connect(tmp_path / "registry_sync.db") as conn:
        row = conn.execute("SELECT last_sequence FROM registry_sync_state").fetchone()
    return int(row[0]) if row else 0
