"""The dev stack with the data platform (subsidy_dev/stack.py): the
FakeDataPlatform test double, registry-sync, intake and eligibility as real
processes on the real broker, with payout. A software firm certified DCMM
level 3 gets one proposal; the firm confirms it; eligibility decides the
submitted application and the ledger reserves the grant, both with the amount
`subsidy simulate` gives for the same claim."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import grpc
import pytest

from subsidy.core.proposals import proposal_id
from subsidy.v1 import intake_pb2, intake_pb2_grpc, proposal_pb2, proposal_pb2_grpc
from subsidy_dev.stack import LocalStack

pytestmark = pytest.mark.integration

SOFTWARE = "91310117K13R4HB249"  # kinds SOFTWARE, in demo/registry.json


def wait_for(predicate, timeout: float, interval: float = 0.5):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"not within {timeout}s")


def test_a_firm_certified_dcmm_level_3_gets_a_proposal_it_confirms_and_is_decided(kafka_bootstrap, tmp_path):
    reference = f"DCMM-E2E-{uuid.uuid4().hex[:10]}"
    pid = proposal_id(SOFTWARE, "9", f"DCMM_LEVEL:{reference}")
    extra = {"intake": {"SUBSIDY_INTAKE_FIRMS_GROUP": f"e2e-intake-firms-{uuid.uuid4().hex[:8]}"}}
    with LocalStack(
        tmp_path / "stack",
        kafka_bootstrap=kafka_bootstrap,
        services=("intake", "eligibility", "payout", "registry_sync"),
        extra_env=extra,
    ) as stack:
        assert stack.platform is not None
        today = stack.today()
        stack.platform.certify(SOFTWARE, "DCMM_LEVEL", "3", reference, awarded_on=today)
        with grpc.insecure_channel(stack.intake_address) as channel:
            proposals = proposal_pb2_grpc.ProposalServiceStub(channel)
            intake = intake_pb2_grpc.IntakeServiceStub(channel)

            def proposed():
                listed = proposals.ListProposals(proposal_pb2.ListProposalsRequest(credit_code=SOFTWARE, page_size=100))
                return [p for p in listed.proposals if p.proposal_id == pid]

            [proposal] = wait_for(proposed, timeout=120)
            assert proposal.proposed_on == today.isoformat(), "the proposal's day is the stack's clock"
            answer = proposals.ConfirmProposal(
                proposal_pb2.ConfirmProposalRequest(
                    proposal_id=pid,
                    consent=True,
                    payee_account=proposal_pb2.PayeeAccount(
                        bank_name="上海银行松江支行", account_name="演示软件", account_number="31600703000123456"
                    ),
                )
            )
            assert answer.receipt.application_id == pid

            def in_the_ledger():
                status = intake.GetApplication(intake_pb2.GetApplicationRequest(application_id=pid)).application
                return status if status.HasField("decision") and status.HasField("grant") else None

            status = wait_for(in_the_ledger, timeout=180)
            listed = proposals.ListProposals(proposal_pb2.ListProposalsRequest(credit_code=SOFTWARE, page_size=100))
            assert [p.proposal_id for p in listed.proposals].count(pid) == 1
    # The same claim through the calculator's own command, as a district officer would run it.
    line = {
        "application_id": pid,
        "submitted_on": status.application.submitted_on,
        "firm": {
            "credit_code": SOFTWARE,
            "name": "",
            "kinds": ["SOFTWARE"],
            "registered_in_district": True,
            "tax_registered_in_district": True,
            "independent_legal_person": True,
        },
        "dcmm": {"certificate_id": reference, "level": 3},
    }
    simulated = subprocess.run(
        [sys.executable, "-m", "subsidy.cli", "simulate", "-"],
        input=json.dumps(line, ensure_ascii=False) + "\n",
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    [expected] = [json.loads(x) for x in simulated.stdout.splitlines()]
    assert status.decision.outcome == expected["outcome"] == "ELIGIBLE"
    assert status.decision.max_award_fen == expected["max_award_fen"] == proposal.expected_award_fen == 20_000_000
    assert status.grant.granted_fen == expected["granted_fen"] == 20_000_000
