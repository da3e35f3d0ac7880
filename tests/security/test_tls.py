"""gRPC over TLS and mutual TLS on the real servers, with certificates
generated for the test (tests/security/pki.py)."""

from __future__ import annotations

import logging
import os
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from security.servers import Servers, security_for
from subsidy.v1 import payout_pb2, payout_pb2_grpc


def _check(address: str, credentials, metadata=(), server_name: str | None = None) -> grpc.StatusCode:
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    with grpc.secure_channel(address, credentials, options=options) as channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), metadata=metadata, timeout=5)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def _creds(pki, client=None, root=None):
    return grpc.ssl_channel_credentials(
        root_certificates=root if root is not None else pki.ca.pem,
        private_key=client.key if client else None,
        certificate_chain=client.cert if client else None,
    )


@pytest.fixture(scope="module")
def tls_servers(loop, tmp_path_factory, pki):
    tmp = tmp_path_factory.mktemp("tls")
    env = {
        "SUBSIDY_TLS_CERT_FILE": pki.write("server.crt", pki.server.cert),
        "SUBSIDY_TLS_KEY_FILE": pki.write("server.key", pki.server.key),
    }
    servers = Servers(
        loop, tmp, {"intake": security_for("intake", tmp, **env), "payout": security_for("payout", tmp, **env)}
    ).start()
    yield servers
    servers.stop()


@pytest.fixture(scope="module")
def mtls_servers(loop, tmp_path_factory, pki):
    tmp = tmp_path_factory.mktemp("mtls")
    identities = tmp / "identities.yaml"
    identities.write_text(
        "identities:\n"
        "  - {common_name: finance-gateway, role: FINANCE}\n"
        "  - {san: 'spiffe://songjiang/portal', role: PORTAL}\n",
        encoding="utf-8",
    )
    env = {
        "SUBSIDY_TLS_CERT_FILE": pki.write("m-server.crt", pki.server.cert),
        "SUBSIDY_TLS_KEY_FILE": pki.write("m-server.key", pki.server.key),
        "SUBSIDY_TLS_CLIENT_CA_FILE": pki.write("client-ca.crt", pki.ca.pem),
        "SUBSIDY_AUTH_MODE": "mtls",
        "SUBSIDY_AUTH_MTLS_IDENTITIES_FILE": str(identities),
    }
    servers = Servers(loop, tmp, {"payout": security_for("payout", tmp, **env)}).start()
    yield servers
    servers.stop()


def test_tls_works_for_a_client_trusting_the_ca(tls_servers, pki):
    for name in ("intake", "payout"):
        assert _check(tls_servers.address(name), _creds(pki)) == grpc.StatusCode.OK
        assert _check(tls_servers.address(name, "localhost"), _creds(pki)) == grpc.StatusCode.OK


def test_a_client_without_the_ca_fails(tls_servers, pki):
    assert _check(tls_servers.address("intake"), _creds(pki, root=pki.other_ca.pem)) == grpc.StatusCode.UNAVAILABLE
    # system roots only
    assert _check(tls_servers.address("intake"), grpc.ssl_channel_credentials()) == grpc.StatusCode.UNAVAILABLE


def test_a_plaintext_client_fails_against_tls(tls_servers):
    with grpc.insecure_channel(tls_servers.address("intake")) as channel, pytest.raises(grpc.RpcError) as failed:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE


def test_reflection_is_off_under_tls_by_default(tls_servers, pki):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.secure_channel(tls_servers.address("intake"), _creds(pki)) as channel:
        stream = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        with pytest.raises(grpc.RpcError) as failed:
            next(iter(stream))
    assert failed.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_mtls_accepts_a_client_certificate_from_the_ca(mtls_servers, pki):
    assert _check(mtls_servers.address("payout"), _creds(pki, pki.client)) == grpc.StatusCode.OK


@pytest.mark.parametrize(
    "client", [None, "client_other_ca", "client_expired"], ids=["no-certificate", "other-ca", "expired"]
)
def test_mtls_refuses(mtls_servers, pki, client):
    cert = getattr(pki, client) if client else None
    assert _check(mtls_servers.address("payout"), _creds(pki, cert)) == grpc.StatusCode.UNAVAILABLE


def test_mtls_identity_maps_to_a_role(mtls_servers, pki):
    with grpc.secure_channel(mtls_servers.address("payout"), _creds(pki, pki.client)) as channel:
        stub = payout_pb2_grpc.PayoutServiceStub(channel)
        stub.ListTranches(payout_pb2.ListTranchesRequest(), timeout=5)  # FINANCE
    with grpc.secure_channel(mtls_servers.address("payout"), _creds(pki, pki.client_unmapped)) as channel:
        stub = payout_pb2_grpc.PayoutServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ListTranches(payout_pb2.ListTranchesRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_renewed_server_certificate_is_served_without_restart(loop, tmp_path, pki):
    from security.pki import CA

    cert, key = tmp_path / "s.crt", tmp_path / "s.key"
    cert.write_bytes(pki.server.cert)
    key.write_bytes(pki.server.key)
    servers = Servers(
        loop,
        tmp_path,
        {"payout": security_for("payout", tmp_path, SUBSIDY_TLS_CERT_FILE=str(cert), SUBSIDY_TLS_KEY_FILE=str(key))},
    ).start()
    try:
        assert _check(servers.address("payout"), _creds(pki)) == grpc.StatusCode.OK
        renewed_ca = CA("Renewed CA")
        renewed = renewed_ca.issue("localhost", server=True, sans=("localhost", "127.0.0.1"))
        key.write_bytes(renewed.key)
        cert.write_bytes(renewed.cert)
        later = time.time() + 5
        os.utime(cert, (later, later))
        os.utime(key, (later, later))
        assert _check(servers.address("payout"), _creds(pki, root=renewed_ca.pem)) == grpc.StatusCode.OK
    finally:
        servers.stop()


def test_plaintext_and_disabled_auth_are_logged_as_warnings(loop, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="subsidy.platform.security"):
        servers = Servers(loop, tmp_path, {"payout": security_for("payout", tmp_path)}).start()
        servers.stop()
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("PLAINTEXT" in m for m in messages), messages
    assert any("authentication is DISABLED" in m for m in messages), messages


def test_jwt_plus_mtls_token_wins_certificate_otherwise(loop, tmp_path, pki, signers, jwt_env):
    identities = tmp_path / "identities.yaml"
    identities.write_text("identities:\n  - {common_name: finance-gateway, role: FINANCE}\n", encoding="utf-8")
    env = {
        **jwt_env,
        "SUBSIDY_AUTH_MODE": "jwt+mtls",
        "SUBSIDY_AUTH_MTLS_IDENTITIES_FILE": str(identities),
        "SUBSIDY_TLS_CERT_FILE": pki.write("j-server.crt", pki.server.cert),
        "SUBSIDY_TLS_KEY_FILE": pki.write("j-server.key", pki.server.key),
        "SUBSIDY_TLS_CLIENT_CA_FILE": pki.write("j-ca.crt", pki.ca.pem),
    }
    servers = Servers(loop, tmp_path, {"payout": security_for("payout", tmp_path, **env)}).start()
    try:
        with grpc.secure_channel(servers.address("payout"), _creds(pki, pki.client)) as channel:
            stub = payout_pb2_grpc.PayoutServiceStub(channel)
            stub.ListTranches(payout_pb2.ListTranchesRequest(), timeout=5)  # the certificate: FINANCE
            reviewer = (("authorization", f"Bearer {signers['rsa'].token('REVIEWER')}"),)
            with pytest.raises(grpc.RpcError) as refused:  # the token: REVIEWER, not FINANCE
                stub.ListTranches(payout_pb2.ListTranchesRequest(), metadata=reviewer, timeout=5)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # a token without a client certificate: the TLS handshake is refused first
        assert _check(servers.address("payout"), _creds(pki), metadata=reviewer) == grpc.StatusCode.UNAVAILABLE
    finally:
        servers.stop()


def _fingerprint(ca) -> str:
    from cryptography.hazmat.primitives import hashes

    return ca.cert.fingerprint(hashes.SHA256()).hex()


def _two_ca_servers(loop, tmp_path, pki, identities_yaml: str) -> Servers:
    identities = tmp_path / "identities.yaml"
    identities.write_text(identities_yaml, encoding="utf-8")
    env = {
        "SUBSIDY_TLS_CERT_FILE": pki.write("b-server.crt", pki.server.cert),
        "SUBSIDY_TLS_KEY_FILE": pki.write("b-server.key", pki.server.key),
        "SUBSIDY_TLS_CLIENT_CA_FILE": pki.write("b-bundle.crt", pki.ca.pem + pki.other_ca.pem),
        "SUBSIDY_AUTH_MODE": "mtls",
        "SUBSIDY_AUTH_MTLS_IDENTITIES_FILE": str(identities),
    }
    return Servers(loop, tmp_path, {"payout": security_for("payout", tmp_path, **env)}).start()


def _list_tranches(servers: Servers, pki, client) -> grpc.StatusCode:
    with grpc.secure_channel(servers.address("payout"), _creds(pki, client)) as channel:
        try:
            payout_pb2_grpc.PayoutServiceStub(channel).ListTranches(payout_pb2.ListTranchesRequest(), timeout=5)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("binding", ["issuer_sha256", "issuer"])
def test_an_mtls_identity_is_bound_to_its_ca_not_any_ca_of_the_bundle(loop, tmp_path, pki, binding):
    """Issue 17: both CAs are trusted and both issued a 'finance-gateway'
    certificate; only the CA the mapping names makes it FINANCE."""
    bound = _fingerprint(pki.ca) if binding == "issuer_sha256" else pki.ca.name.rfc4514_string()
    servers = _two_ca_servers(
        loop,
        tmp_path,
        pki,
        f"identities:\n  - {{common_name: finance-gateway, role: FINANCE, {binding}: '{bound}'}}\n",
    )
    try:
        assert _list_tranches(servers, pki, pki.client) == grpc.StatusCode.OK
        assert _list_tranches(servers, pki, pki.client_other_ca) == grpc.StatusCode.UNAUTHENTICATED
    finally:
        servers.stop()


def test_the_same_name_from_two_cas_maps_to_what_each_binding_says(loop, tmp_path, pki):
    servers = _two_ca_servers(
        loop,
        tmp_path,
        pki,
        "identities:\n"
        f"  - {{common_name: finance-gateway, role: FINANCE, issuer_sha256: '{_fingerprint(pki.ca)}'}}\n"
        f"  - {{common_name: finance-gateway, role: REVIEWER, issuer_sha256: '{_fingerprint(pki.other_ca)}'}}\n",
    )
    try:
        assert _list_tranches(servers, pki, pki.client) == grpc.StatusCode.OK  # FINANCE
        assert _list_tranches(servers, pki, pki.client_other_ca) == grpc.StatusCode.PERMISSION_DENIED  # REVIEWER
    finally:
        servers.stop()


def test_an_unbound_identity_with_a_bundle_of_several_cas_is_refused_at_start(tmp_path, pki):
    from subsidy.platform.security import SecurityConfigError

    identities = tmp_path / "identities.yaml"
    identities.write_text("identities:\n  - {common_name: finance-gateway, role: FINANCE}\n", encoding="utf-8")
    env = {
        "SUBSIDY_TLS_CERT_FILE": pki.write("u-server.crt", pki.server.cert),
        "SUBSIDY_TLS_KEY_FILE": pki.write("u-server.key", pki.server.key),
        "SUBSIDY_TLS_CLIENT_CA_FILE": pki.write("u-bundle.crt", pki.ca.pem + pki.other_ca.pem),
        "SUBSIDY_AUTH_MODE": "mtls",
        "SUBSIDY_AUTH_MTLS_IDENTITIES_FILE": str(identities),
    }
    with pytest.raises(SecurityConfigError, match="issuer"):
        security_for("payout", tmp_path, **env)


def test_an_identity_bound_to_a_ca_outside_the_bundle_is_refused_at_start(tmp_path, pki):
    from subsidy.platform.security import SecurityConfigError

    identities = tmp_path / "identities.yaml"
    identities.write_text(
        f"identities:\n  - {{common_name: finance-gateway, role: FINANCE, issuer_sha256: '{_fingerprint(pki.other_ca)}'}}\n",
        encoding="utf-8",
    )
    env = {
        "SUBSIDY_TLS_CERT_FILE": pki.write("o-server.crt", pki.server.cert),
        "SUBSIDY_TLS_KEY_FILE": pki.write("o-server.key", pki.server.key),
        "SUBSIDY_TLS_CLIENT_CA_FILE": pki.write("o-ca.crt", pki.ca.pem),
        "SUBSIDY_AUTH_MODE": "mtls",
        "SUBSIDY_AUTH_MTLS_IDENTITIES_FILE": str(identities),
    }
    with pytest.raises(SecurityConfigError, match="issuer_sha256"):
        security_for("payout", tmp_path, **env)


def test_a_bundle_that_gains_a_ca_at_run_time_unbinds_the_unbound_identities(tmp_path, pki):
    """Rotation without binding first: the second CA must not inherit the names."""
    from subsidy.platform.security.identity import CertificateMap

    identities = tmp_path / "identities.yaml"
    identities.write_text("identities:\n  - {common_name: finance-gateway, role: FINANCE}\n", encoding="utf-8")
    bundle = tmp_path / "bundle.crt"
    bundle.write_bytes(pki.ca.pem)
    certificates = CertificateMap.load(str(identities), str(bundle))

    def context(issued) -> dict:
        return {"x509_common_name": [b"finance-gateway"], "x509_pem_cert": [issued.cert]}

    assert certificates.principal(context(pki.client)).role == "FINANCE"
    bundle.write_bytes(pki.ca.pem + pki.other_ca.pem)
    later = time.time() + 5
    os.utime(bundle, (later, later))
    assert certificates.principal(context(pki.client_other_ca)) is None
    assert certificates.principal(context(pki.client)) is None
