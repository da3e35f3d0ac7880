"""免申即享 proposals are bound to their firm (access.yaml; the servicer for
ConfirmProposal and DeclineProposal): an enterprise cannot list, confirm or
decline another firm's proposal, and another firm's proposal id is answered
exactly as a free one (NOT_FOUND), the refusal still counted (wrong_firm)."""

from __future__ import annotations

import grpc
import pytest

from security.conftest import ENTERPRISE_CODE, OTHER_CODE
from subsidy.core.proposals import proposal_id
from subsidy.platform.security import AUTH_DENIED
from subsidy.services.intake import proposals
from subsidy.v1 import firm_facts_pb2, proposal_pb2, proposal_pb2_grpc

SERVICE = "subsidy.v1.ProposalService"
REFERENCE = "NODE-BIND-1"  # a clause (11.node) no other security test applies for


def _md(token):
    return (("authorization", f"Bearer {token}"),)


def _facts(code: str):
    return firm_facts_pb2.FirmFacts(
        credit_code=code,
        name="绑定测试",
        registered_in_district=True,
        tax_registered_in_district=True,
        independent_legal_person=True,
        kinds=["SOFTWARE"],
        recognitions=[firm_facts_pb2.Recognition(kind="IDENTIFIER_NODE", level="二级节点", reference=REFERENCE)],
        feed_sequence=1,
    )


def _code(call):
    with pytest.raises(grpc.RpcError) as refused:
        call()
    return refused.value.code(), refused.value.details()


def test_an_enterprise_cannot_touch_another_firms_proposal(jwt_servers, signers):
    theirs = proposal_id(OTHER_CODE, "11.node", f"IDENTIFIER_NODE:{REFERENCE}")
    assert proposals.on_firm_facts(jwt_servers.proposal_deps, _facts(OTHER_CODE)) == [(theirs, "created")]
    mine = _md(signers["rsa"].token("ENTERPRISE", ENTERPRISE_CODE))
    portal = _md(signers["ec"].token("PORTAL"))
    with grpc.insecure_channel(jwt_servers.address("intake")) as channel:
        stub = proposal_pb2_grpc.ProposalServiceStub(channel)
        code, _ = _code(
            lambda: stub.ListProposals(proposal_pb2.ListProposalsRequest(credit_code=OTHER_CODE), metadata=mine)
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED
        metric = AUTH_DENIED.labels(SERVICE, "DeclineProposal", "wrong_firm")
        before = metric._value.get()
        taken = _code(
            lambda: stub.DeclineProposal(proposal_pb2.DeclineProposalRequest(proposal_id=theirs), metadata=mine)
        )
        free = _code(
            lambda: stub.DeclineProposal(proposal_pb2.DeclineProposalRequest(proposal_id=theirs + "0"), metadata=mine)
        )
        assert taken[0] == free[0] == grpc.StatusCode.NOT_FOUND
        assert taken[1] == free[1].replace(theirs + "0", theirs)
        assert metric._value.get() == before + 1
        confirm = proposal_pb2.ConfirmProposalRequest(
            proposal_id=theirs,
            consent=True,
            payee_account=proposal_pb2.PayeeAccount(bank_name="b", account_name="n", account_number="1"),
        )
        assert _code(lambda: stub.ConfirmProposal(confirm, metadata=mine))[0] == grpc.StatusCode.NOT_FOUND
        # untouched, and the portal sees it
        listed = stub.ListProposals(proposal_pb2.ListProposalsRequest(credit_code=OTHER_CODE), metadata=portal)
        [proposal] = [p for p in listed.proposals if p.proposal_id == theirs]
        assert proposal.state == proposal_pb2.PROPOSAL_STATE_PROPOSED
