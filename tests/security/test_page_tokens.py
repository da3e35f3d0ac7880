"""Hostile page tokens on the real listings (issue 17): a deeply nested or
oversized token is INVALID_ARGUMENT naming ``page_token``, never INTERNAL."""

from __future__ import annotations

import base64

import grpc
import pytest

from security.servers import Servers, security_for
from subsidy.v1 import intake_pb2, intake_pb2_grpc, payout_pb2, payout_pb2_grpc

FIRM = "91310117313Q6C3D6G"  # a demo firm (demo/registry.json)
HOSTILE = {
    "deep": base64.urlsafe_b64encode(b"[" * 100_000).decode().rstrip("="),
    "long": "e" * 200_000,
}


@pytest.fixture(scope="module")
def plain_servers(loop, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("page-tokens")
    servers = Servers(loop, tmp, {"intake": security_for("intake", tmp), "payout": security_for("payout", tmp)}).start()
    yield servers
    servers.stop()


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_intake_list_applications_refuses_a_hostile_page_token(plain_servers, kind):
    with grpc.insecure_channel(plain_servers.address("intake")) as channel:
        stub = intake_pb2_grpc.IntakeServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ListApplications(
                intake_pb2.ListApplicationsRequest(credit_code=FIRM, page_size=2, page_token=HOSTILE[kind]), timeout=10
            )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in refused.value.details()


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_payout_list_tranches_refuses_a_hostile_page_token(plain_servers, kind):
    with grpc.insecure_channel(plain_servers.address("payout")) as channel:
        stub = payout_pb2_grpc.PayoutServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ListTranches(payout_pb2.ListTranchesRequest(page_token=HOSTILE[kind]), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in refused.value.details()
