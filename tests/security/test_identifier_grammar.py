"""Issue 17, item 1: identifiers have a grammar (subsidy.contracts.codec,
docs/contract.md "Identifiers"), checked at the edge. An application_id with
CR/LF would reach notify's e-mail headers, and a claim id the ledger scopes
and exports: intake refuses both with INVALID_ARGUMENT naming the field in
google.rpc.BadRequest, and stores nothing."""

from __future__ import annotations

import grpc
import pytest

from security.conftest import ENTERPRISE_CODE
from subsidy.platform.grpc import status as rich_status
from subsidy.v1 import application_pb2, intake_pb2, intake_pb2_grpc

CRLF_ID = "SJ-2025-7100\r\nBcc: x@evil"


def _application(app_id: str, certificate_id: str = "DCMM-T-1"):
    return application_pb2.Application(
        application_id=app_id,
        submitted_on="2025-03-01",
        firm=application_pb2.Firm(credit_code=ENTERPRISE_CODE),
        dcmm=application_pb2.DcmmClaim(certificate_id=certificate_id, level=3),
    )


def _submit(servers, signers, application):
    md = (("authorization", f"Bearer {signers['rsa'].token('PORTAL')}"),)
    with grpc.insecure_channel(servers.address("intake")) as channel:
        stub = intake_pb2_grpc.IntakeServiceStub(channel)
        return stub.SubmitApplication(
            intake_pb2.SubmitApplicationRequest(application=application), metadata=md, timeout=10
        )


@pytest.mark.parametrize(
    ("application", "field", "stored_id"),
    [
        (_application(CRLF_ID), "application.application_id", CRLF_ID),
        (_application('=HYPERLINK("http://x")'), "application.application_id", '=HYPERLINK("http://x")'),
        (_application("SJ-2025-7101", certificate_id="DCMM\r\nX"), "application.dcmm.certificate_id", "SJ-2025-7101"),
        (_application("SJ 2025 7102"), "application.application_id", "SJ 2025 7102"),
        (_application("SJ-2025-７１０３"), "application.application_id", "SJ-2025-７１０３"),
    ],
    ids=["crlf", "formula", "claim-id-crlf", "space", "fullwidth-digits"],
)
def test_an_identifier_outside_the_grammar_is_refused_with_the_field_named(
    jwt_servers, signers, application, field, stored_id
):
    with pytest.raises(grpc.RpcError) as refused:
        _submit(jwt_servers, signers, application)
    err = refused.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in err.details() and "not an identifier" in err.details()
    status, violations = rich_status.field_violations(err.trailing_metadata())
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert [name for name, _ in violations] == [field]
    assert jwt_servers.intake_deps.store.get(stored_id) is None


def test_every_character_of_the_grammar_is_accepted(jwt_servers, signers):
    response = _submit(jwt_servers, signers, _application("SJ-2025_7104.a:b/c", certificate_id="DCMM:2025/A_1.b-2"))
    assert response.receipt.application_id == "SJ-2025_7104.a:b/c"


def test_an_identifier_longer_than_64_characters_is_refused():
    from subsidy.contracts.codec import BadInput, parse_application

    app = {
        "application_id": "A" * 65,
        "submitted_on": "2025-03-01",
        "firm": {"credit_code": ENTERPRISE_CODE},
        "dcmm": {"level": 3},
    }
    with pytest.raises(BadInput) as refused:
        parse_application(app)
    assert refused.value.path == "application_id" and "longer than 64" in refused.value.problem
