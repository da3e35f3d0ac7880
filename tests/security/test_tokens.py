"""Bearer tokens against the real intake server: every way a token can be
wrong is UNAUTHENTICATED; an enterprise asking for another firm's data is
PERMISSION_DENIED (GetApplication of another firm's id: NOT_FOUND, as for a
free id); refusals are counted and logged without the token."""

from __future__ import annotations

import base64
import json
import logging
import time

import grpc
import jwt
import pytest

from security.conftest import ENTERPRISE_CODE, OTHER_CODE
from security.pki import AUDIENCE, ISSUER, Signer
from subsidy.platform.security import AUTH_DENIED
from subsidy.platform.security.tokens import InvalidToken, TokenVerifier, load_pem_keys
from subsidy.v1 import intake_pb2, intake_pb2_grpc, payout_pb2, payout_pb2_grpc

LIST = "/subsidy.v1.IntakeService/ListDirectory"


def _list_directory(servers, token: str | None, raw: str | None = None):
    metadata = ()
    if raw is not None:
        metadata = (("authorization", raw),)
    elif token is not None:
        metadata = (("authorization", f"Bearer {token}"),)
    with grpc.insecure_channel(servers.address("intake")) as channel:
        return intake_pb2_grpc.IntakeServiceStub(channel).ListDirectory(
            intake_pb2.ListDirectoryRequest(), metadata=metadata, timeout=10
        )


def _code(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("kind", ["rsa", "ec", "ed"])
def test_every_configured_key_is_accepted_rs256_es256_eddsa(jwt_servers, signers, kind):
    assert _code(_list_directory, jwt_servers, signers[kind].token("REVIEWER")) == grpc.StatusCode.OK


def _tampered(signers):
    token = signers["rsa"].token("REVIEWER")
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "FINANCE"
    return f"{header}.{_b64(claims)}.{signature}"


def _alg_none(signers):
    now = int(time.time())
    claims = {"sub": "x", "role": "FINANCE", "aud": AUDIENCE, "iss": ISSUER, "iat": now, "exp": now + 300}
    return f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': signers['rsa'].kid})}.{_b64(claims)}."


def _hs256_with_public_key(signers):
    """The classic confusion: HMAC 'signed' with the server's public key as the secret."""
    now = int(time.time())
    claims = {"sub": "x", "role": "FINANCE", "aud": AUDIENCE, "iss": ISSUER, "iat": now, "exp": now + 300}
    import hashlib
    import hmac

    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': signers['rsa'].kid})}.{_b64(claims)}"
    mac = hmac.new(signers["rsa"].public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


BAD_TOKENS = {
    "tampered": _tampered,
    "expired": lambda s: s["rsa"].token("REVIEWER", lifetime=-120),
    "not_yet_valid": lambda s: s["rsa"].token("REVIEWER", not_before=int(time.time()) + 600),
    "wrong_audience": lambda s: s["rsa"].token("REVIEWER", audience="someone-else"),
    "wrong_issuer": lambda s: s["rsa"].token("REVIEWER", issuer="https://evil.example"),
    "unknown_kid": lambda s: Signer("rsa", "not-configured").token("REVIEWER"),
    "known_kid_other_key": lambda s: Signer("rsa").token("REVIEWER", kid=s["rsa"].kid),
    "alg_none": _alg_none,
    "hs256_with_public_key": _hs256_with_public_key,
    "alg_swapped_es_on_rsa_kid": lambda s: s["ec"].token("REVIEWER", kid=s["rsa"].kid),
    "no_role": lambda s: s["rsa"].token("NOBODY"),
    "enterprise_without_credit_code": lambda s: s["rsa"].token("ENTERPRISE"),
    "garbage": lambda s: "not.a.jwt",
}


@pytest.mark.parametrize("name", sorted(BAD_TOKENS))
def test_bad_tokens_are_unauthenticated_counted_and_not_logged(jwt_servers, signers, caplog, name):
    token = BAD_TOKENS[name](signers)
    before = AUTH_DENIED.labels("subsidy.v1.IntakeService", "ListDirectory", "invalid_token")._value.get()
    with caplog.at_level(logging.INFO):
        assert _code(_list_directory, jwt_servers, token) == grpc.StatusCode.UNAUTHENTICATED
    after = AUTH_DENIED.labels("subsidy.v1.IntakeService", "ListDirectory", "invalid_token")._value.get()
    assert after == before + 1
    assert token not in caplog.text
    signature = token.split(".")[-1]
    assert not signature or signature not in caplog.text


@pytest.mark.parametrize("raw", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "token-without-scheme"])
def test_malformed_authorization_headers(jwt_servers, raw):
    assert _code(_list_directory, jwt_servers, None, raw=raw) == grpc.StatusCode.UNAUTHENTICATED


def test_no_credentials_is_unauthenticated_and_counted(jwt_servers):
    metric = AUTH_DENIED.labels("subsidy.v1.IntakeService", "ListDirectory", "missing_credentials")
    before = metric._value.get()
    assert _code(_list_directory, jwt_servers, None) == grpc.StatusCode.UNAUTHENTICATED
    assert metric._value.get() == before + 1


def test_a_small_clock_skew_is_tolerated(jwt_servers, signers):
    assert _code(_list_directory, jwt_servers, signers["rsa"].token("REVIEWER", lifetime=-2)) == grpc.StatusCode.OK


# ----------------------------------------------------------------------------- enterprises


def _intake(servers, token):
    channel = grpc.insecure_channel(servers.address("intake"))
    return channel, intake_pb2_grpc.IntakeServiceStub(channel), (("authorization", f"Bearer {token}"),)


def _application(code: str, app_id: str):
    from subsidy.v1 import application_pb2

    return application_pb2.Application(
        application_id=app_id,
        submitted_on="2025-03-01",
        firm=application_pb2.Firm(credit_code=code),
        dcmm=application_pb2.DcmmClaim(certificate_id="DCMM-T-1", level=3),
    )


def test_an_enterprise_submits_and_sees_only_its_own_applications(jwt_servers, signers):
    mine = signers["rsa"].token("ENTERPRISE", ENTERPRISE_CODE)
    portal = signers["ec"].token("PORTAL")
    channel, stub, md = _intake(jwt_servers, mine)
    with channel:
        # its own: accepted
        stub.SubmitApplication(
            intake_pb2.SubmitApplicationRequest(application=_application(ENTERPRISE_CODE, "SJ-2025-9001")),
            metadata=md,
            timeout=10,
        )
        # another firm's: refused before anything is stored
        with pytest.raises(grpc.RpcError) as refused:
            stub.SubmitApplication(
                intake_pb2.SubmitApplicationRequest(application=_application(OTHER_CODE, "SJ-2025-9002")),
                metadata=md,
                timeout=10,
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # the portal submits for the other firm
        stub.SubmitApplication(
            intake_pb2.SubmitApplicationRequest(application=_application(OTHER_CODE, "SJ-2025-9003")),
            metadata=(("authorization", f"Bearer {portal}"),),
            timeout=10,
        )

        got = stub.GetApplication(
            intake_pb2.GetApplicationRequest(application_id="SJ-2025-9001"), metadata=md, timeout=10
        )
        assert got.application.application.firm.credit_code == ENTERPRISE_CODE
        metric = AUTH_DENIED.labels("subsidy.v1.IntakeService", "GetApplication", "wrong_firm")
        before = metric._value.get()
        with pytest.raises(grpc.RpcError) as other:
            stub.GetApplication(
                intake_pb2.GetApplicationRequest(application_id="SJ-2025-9003"), metadata=md, timeout=10
            )
        # answered as a free id would be (no existence oracle, test_existence_oracle.py)
        assert other.value.code() == grpc.StatusCode.NOT_FOUND
        assert metric._value.get() == before + 1

        listed = stub.ListApplications(
            intake_pb2.ListApplicationsRequest(credit_code=ENTERPRISE_CODE), metadata=md, timeout=10
        )
        # Other tests on these session-wide servers submit for this firm too:
        # what matters is that its own are listed and no other firm's.
        listed_ids = [a.application.application_id for a in listed.applications]
        # its own submission under its firm-scoped id (ADR 0020)
        assert f"{ENTERPRISE_CODE}:SJ-2025-9001" in listed_ids and "SJ-2025-9003" not in listed_ids
        assert {a.application.firm.credit_code for a in listed.applications} == {ENTERPRISE_CODE}
        with pytest.raises(grpc.RpcError) as other_list:
            stub.ListApplications(intake_pb2.ListApplicationsRequest(credit_code=OTHER_CODE), metadata=md, timeout=10)
        assert other_list.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_an_enterprise_reads_only_its_own_ledger_and_no_tranche_list(jwt_servers, signers):
    mine = signers["ed"].token("ENTERPRISE", ENTERPRISE_CODE)
    md = (("authorization", f"Bearer {mine}"),)
    with grpc.insecure_channel(jwt_servers.address("payout")) as channel:
        stub = payout_pb2_grpc.PayoutServiceStub(channel)
        assert (
            stub.GetLedger(
                payout_pb2.GetLedgerRequest(credit_code=ENTERPRISE_CODE), metadata=md, timeout=10
            ).credit_code
            == ENTERPRISE_CODE
        )
        for call, request in (
            (stub.GetLedger, payout_pb2.GetLedgerRequest(credit_code=OTHER_CODE)),
            (stub.ListTranches, payout_pb2.ListTranchesRequest()),
            (stub.CancelTranche, payout_pb2.CancelTrancheRequest(tranche_id="x/tranche-0")),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                call(request, metadata=md, timeout=10)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        finance = (("authorization", f"Bearer {signers['rsa'].token('FINANCE')}"),)
        stub.ListTranches(payout_pb2.ListTranchesRequest(), metadata=finance, timeout=10)


# ----------------------------------------------------------------------------- verifier unit


def test_verifier_refuses_weak_or_symmetric_keys(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    path = tmp_path / "weak.pem"
    path.write_bytes(weak.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(ValueError):
        load_pem_keys(f"weak={path}")
    from subsidy.platform.security.tokens import load_jwks

    (tmp_path / "oct.json").write_text(json.dumps({"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}))
    with pytest.raises(ValueError):
        load_jwks(str(tmp_path / "oct.json"))
    with pytest.raises(ValueError):
        TokenVerifier([], audience=AUDIENCE, issuer=ISSUER)


def test_verifier_requires_exp(signers):
    from subsidy.platform.security.tokens import VerificationKey, algorithm_for

    key = signers["rsa"].key.public_key()
    verifier = TokenVerifier(
        [VerificationKey(signers["rsa"].kid, key, algorithm_for(key))], audience=AUDIENCE, issuer=ISSUER
    )
    token = jwt.encode(
        {"sub": "x", "role": "FINANCE", "aud": AUDIENCE, "iss": ISSUER},
        signers["rsa"].key,
        algorithm="RS256",
        headers={"kid": signers["rsa"].kid},
    )
    with pytest.raises(InvalidToken):
        verifier.verify(token)
