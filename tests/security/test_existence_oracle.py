"""Issue 17, item 3: an enterprise must not learn which application ids
another firm holds, nor anything of another firm's payload. GetApplication
answers another firm's id exactly as a free one (NOT_FOUND, the same
details); the refusal is still counted (wrong_firm). An enterprise's own ids
are scoped to its firm (ADR 0020): an id another firm holds, or took first
to block it, neither refuses its submission nor tells it anything, and
ALREADY_EXISTS only ever names its own firm's application, with no part of
the stored payload's hash."""

from __future__ import annotations

import grpc
import pytest

from security.conftest import ENTERPRISE_CODE, OTHER_CODE
from subsidy.platform.security import AUTH_DENIED
from subsidy.v1 import application_pb2, intake_pb2, intake_pb2_grpc

SERVICE = "subsidy.v1.IntakeService"


def _application(code: str, app_id: str, level: int = 3):
    return application_pb2.Application(
        application_id=app_id,
        submitted_on="2025-03-01",
        firm=application_pb2.Firm(credit_code=code),
        dcmm=application_pb2.DcmmClaim(certificate_id="DCMM-T-1", level=level),
    )


def _md(token):
    return (("authorization", f"Bearer {token}"),)


def _refusal(call):
    with pytest.raises(grpc.RpcError) as refused:
        call()
    return refused.value.code(), refused.value.details()


def test_another_firms_application_is_not_found_exactly_as_a_free_id(jwt_servers, signers):
    mine = _md(signers["rsa"].token("ENTERPRISE", ENTERPRISE_CODE))
    portal = _md(signers["ec"].token("PORTAL"))
    with grpc.insecure_channel(jwt_servers.address("intake")) as channel:
        stub = intake_pb2_grpc.IntakeServiceStub(channel)
        stub.SubmitApplication(
            intake_pb2.SubmitApplicationRequest(application=_application(OTHER_CODE, "SJ-2025-7201")),
            metadata=portal,
            timeout=10,
        )
        metric = AUTH_DENIED.labels(SERVICE, "GetApplication", "wrong_firm")
        before = metric._value.get()

        def get(app_id):
            return lambda: stub.GetApplication(
                intake_pb2.GetApplicationRequest(application_id=app_id), metadata=mine, timeout=10
            )

        taken = _refusal(get("SJ-2025-7201"))
        free = _refusal(get("SJ-2025-7299"))
        assert taken[0] == free[0] == grpc.StatusCode.NOT_FOUND
        assert taken[1] == free[1].replace("7299", "7201")
        assert metric._value.get() == before + 1  # still counted and logged as a refusal
        # the portal (and the firm itself) still reads it
        got = stub.GetApplication(
            intake_pb2.GetApplicationRequest(application_id="SJ-2025-7201"), metadata=portal, timeout=10
        )
        assert got.application.application.firm.credit_code == OTHER_CODE


def _submit(stub, code, app_id, metadata, level=3):
    return stub.SubmitApplication(
        intake_pb2.SubmitApplicationRequest(application=_application(code, app_id, level)),
        metadata=metadata,
        timeout=10,
    )


def test_an_id_another_firm_holds_neither_blocks_an_enterprise_nor_tells_it_so(jwt_servers, signers):
    """The reproduction of issue 17, item 3: firm B pre-claims the id firm A
    is expected to use (and the portal holds another); A's submission under
    either id is accepted, scoped to A, and each firm reads its own."""
    portal = _md(signers["ec"].token("PORTAL"))
    mine = _md(signers["rsa"].token("ENTERPRISE", ENTERPRISE_CODE))
    squatter = _md(signers["rsa"].token("ENTERPRISE", OTHER_CODE))
    with grpc.insecure_channel(jwt_servers.address("intake")) as channel:
        stub = intake_pb2_grpc.IntakeServiceStub(channel)
        _submit(stub, OTHER_CODE, "SJ-2025-7202", portal)
        squatted = _submit(stub, OTHER_CODE, "SJ-2025-7203", squatter)
        assert squatted.receipt.application_id == f"{OTHER_CODE}:SJ-2025-7203"
        for app_id in ("SJ-2025-7202", "SJ-2025-7203"):
            answer = _submit(stub, ENTERPRISE_CODE, app_id, mine, level=4)
            assert not answer.duplicate
            assert answer.receipt.application_id == f"{ENTERPRISE_CODE}:{app_id}"
            got = stub.GetApplication(
                intake_pb2.GetApplicationRequest(application_id=app_id), metadata=mine, timeout=10
            )
            assert got.application.application.firm.credit_code == ENTERPRISE_CODE
            assert got.application.application.application_id == f"{ENTERPRISE_CODE}:{app_id}"
        # the squatter reads its own, never the firm's
        got = stub.GetApplication(
            intake_pb2.GetApplicationRequest(application_id="SJ-2025-7203"), metadata=squatter, timeout=10
        )
        assert got.application.application.firm.credit_code == OTHER_CODE
        # the portal holds both firms' applications under their own ids
        for app_id, code in (
            ("SJ-2025-7202", OTHER_CODE),
            (f"{OTHER_CODE}:SJ-2025-7203", OTHER_CODE),
            (f"{ENTERPRISE_CODE}:SJ-2025-7203", ENTERPRISE_CODE),
        ):
            got = stub.GetApplication(
                intake_pb2.GetApplicationRequest(application_id=app_id), metadata=portal, timeout=10
            )
            assert got.application.application.firm.credit_code == code


def test_already_exists_names_only_the_callers_own_application_and_no_part_of_its_hash(jwt_servers, signers):
    mine = _md(signers["rsa"].token("ENTERPRISE", ENTERPRISE_CODE))
    with grpc.insecure_channel(jwt_servers.address("intake")) as channel:
        stub = intake_pb2_grpc.IntakeServiceStub(channel)
        first = _submit(stub, ENTERPRISE_CODE, "SJ-2025-7204", mine)
        stored_sha = first.receipt.payload_sha256
        code, details = _refusal(lambda: _submit(stub, ENTERPRISE_CODE, "SJ-2025-7204", mine, level=4))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert f"{ENTERPRISE_CODE}:SJ-2025-7204" in details
    for size in range(6, len(stored_sha) + 1):
        for start in range(len(stored_sha) - size + 1):
            assert stored_sha[start : start + size] not in details
