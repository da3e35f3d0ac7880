"""The searches across firms (issue 15) on the real intake and payout servers
with JWT authentication: staff list every firm's applications and search
them by part of the firm name; an ENTERPRISE caller must name its own credit
code (none, or another firm's, is PERMISSION_DENIED and counted), so its
firm-name search of another firm's name finds nothing and tells it nothing;
bad filters are INVALID_ARGUMENT naming the field; ListRecoveries is staff's."""

from __future__ import annotations

import grpc
import pytest

from security.conftest import ENTERPRISE_CODE, OTHER_CODE
from subsidy.platform.security import AUTH_DENIED
from subsidy.v1 import application_pb2, intake_pb2, intake_pb2_grpc, payout_pb2, payout_pb2_grpc

OTHER_NAME = "上海泖源食品有限公司"  # OTHER_CODE's name in demo/registry.json


def _md(token):
    return (("authorization", f"Bearer {token}"),)


def _refused(call):
    with pytest.raises(grpc.RpcError) as refused:
        call()
    return refused.value.code(), refused.value.details()


def _application(code: str, app_id: str):
    return application_pb2.Application(
        application_id=app_id,
        submitted_on="2025-03-01",
        firm=application_pb2.Firm(credit_code=code),
        dcmm=application_pb2.DcmmClaim(certificate_id="DCMM-S-1", level=3),
    )


def test_staff_search_every_firm_by_name_and_an_enterprise_never_reaches_another(jwt_servers, signers):
    portal = _md(signers["ec"].token("PORTAL"))
    reviewer = _md(signers["rsa"].token("REVIEWER"))
    mine = _md(signers["rsa"].token("ENTERPRISE", ENTERPRISE_CODE))
    with grpc.insecure_channel(jwt_servers.address("intake")) as channel:
        stub = intake_pb2_grpc.IntakeServiceStub(channel)
        for code, app_id in ((OTHER_CODE, "SJ-SEARCH-0001"), (ENTERPRISE_CODE, "SJ-SEARCH-0002")):
            stub.SubmitApplication(
                intake_pb2.SubmitApplicationRequest(application=_application(code, app_id)), metadata=portal, timeout=10
            )

        def listed(request, metadata):
            return [
                a.application.application_id for a in stub.ListApplications(request, metadata=metadata).applications
            ]

        by_name = intake_pb2.ListApplicationsRequest(firm_name="泖源", clause="9")
        assert "SJ-SEARCH-0001" in listed(by_name, reviewer)
        assert "SJ-SEARCH-0002" not in listed(by_name, reviewer)
        assert {"SJ-SEARCH-0001", "SJ-SEARCH-0002"} <= set(listed(intake_pb2.ListApplicationsRequest(), reviewer))

        # the enterprise searching the other firm's name inside its own firm: nothing
        own = intake_pb2.ListApplicationsRequest(credit_code=ENTERPRISE_CODE, firm_name=OTHER_NAME)
        assert listed(own, mine) == []
        metric = AUTH_DENIED.labels("subsidy.v1.IntakeService", "ListApplications", "wrong_firm")
        before = metric._value.get()
        for request in (
            intake_pb2.ListApplicationsRequest(firm_name=OTHER_NAME),
            intake_pb2.ListApplicationsRequest(credit_code=OTHER_CODE, firm_name=OTHER_NAME),
        ):
            code, _ = _refused(lambda r=request: stub.ListApplications(r, metadata=mine))
            assert code == grpc.StatusCode.PERMISSION_DENIED
        assert metric._value.get() == before + 2


@pytest.mark.parametrize(
    "request_, field",
    [
        (intake_pb2.ListApplicationsRequest(firm_name="名" * 101), "firm_name"),
        (intake_pb2.ListApplicationsRequest(firm_name="a\x00b"), "firm_name"),
        (intake_pb2.ListApplicationsRequest(clause="99"), "clause"),
        (intake_pb2.ListApplicationsRequest(state=42), "state"),  # type: ignore[arg-type]
        (intake_pb2.ListApplicationsRequest(credit_code="91310117313Q6C3D6X"), "credit_code"),
        (intake_pb2.ListApplicationsRequest(page_token="!!"), "page_token"),
    ],
)
def test_a_bad_filter_is_invalid_argument_naming_the_field(jwt_servers, signers, request_, field):
    reviewer = _md(signers["rsa"].token("REVIEWER"))
    with grpc.insecure_channel(jwt_servers.address("intake")) as channel:
        stub = intake_pb2_grpc.IntakeServiceStub(channel)
        code, details = _refused(lambda: stub.ListApplications(request_, metadata=reviewer))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith(f"invalid {field}:"), details


def test_list_recoveries_is_for_staff_and_checks_its_filter(jwt_servers, signers):
    with grpc.insecure_channel(jwt_servers.address("payout")) as channel:
        stub = payout_pb2_grpc.PayoutServiceStub(channel)
        finance = _md(signers["rsa"].token("FINANCE"))
        reply = stub.ListRecoveries(
            payout_pb2.ListRecoveriesRequest(filter=payout_pb2.RECOVERY_FILTER_OPEN), metadata=finance
        )
        assert reply.next_page_token == ""
        code, details = _refused(
            lambda: stub.ListRecoveries(payout_pb2.ListRecoveriesRequest(filter=7), metadata=finance)  # type: ignore[arg-type]
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("filter")
        for role in ("ENTERPRISE", "PORTAL"):
            token = signers["rsa"].token(role, ENTERPRISE_CODE if role == "ENTERPRISE" else "")
            code, _ = _refused(lambda t=token: stub.ListRecoveries(payout_pb2.ListRecoveriesRequest(), metadata=_md(t)))
            assert code == grpc.StatusCode.PERMISSION_DENIED
