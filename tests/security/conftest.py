from __future__ import annotations

import pytest

from security.pki import AUDIENCE, ISSUER, Signer, make_pki, write_jwks
from security.servers import Loop, Servers, security_for

ENTERPRISE_CODE = "91310117313Q6C3D6G"  # a demo firm (demo/registry.json)
OTHER_CODE = "913101171K0HG2QW66"


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def signers():
    """Three issuer keys at once (rotation): RS256 in a JWKS, ES256 and EdDSA as PEM files."""
    return {"rsa": Signer("rsa", "rsa-2025"), "ec": Signer("ec", "ec-2026"), "ed": Signer("ed", "ed-2026")}


@pytest.fixture(scope="session")
def jwt_env(tmp_path_factory, signers):
    d = tmp_path_factory.mktemp("jwks")
    jwks = write_jwks(d / "jwks.json", signers["rsa"])
    keys = d / "keys"
    keys.mkdir()
    (keys / f"{signers['ec'].kid}.pem").write_bytes(signers["ec"].public_pem)
    ed = d / "ed.pem"
    ed.write_bytes(signers["ed"].public_pem)
    return {
        "SUBSIDY_AUTH_MODE": "jwt",
        "SUBSIDY_AUTH_JWKS_FILE": jwks,
        "SUBSIDY_AUTH_PUBLIC_KEYS_DIR": str(keys),
        "SUBSIDY_AUTH_PUBLIC_KEYS": f"{signers['ed'].kid}={ed}",
        "SUBSIDY_AUTH_AUDIENCE": AUDIENCE,
        "SUBSIDY_AUTH_ISSUER": ISSUER,
        "SUBSIDY_AUTH_LEEWAY_SECONDS": "5",
        "SUBSIDY_GRPC_REFLECTION": "on",
    }


@pytest.fixture(scope="session")
def loop():
    running = Loop()
    yield running
    running.close()


@pytest.fixture(scope="session")
def jwt_servers(loop, tmp_path_factory, jwt_env):
    """intake, eligibility, payout, review and operations in plaintext with JWT authentication."""
    tmp = tmp_path_factory.mktemp("jwt-servers")
    names = ("intake", "eligibility", "payout", "review", "operations")
    securities = {name: security_for(name, tmp, **jwt_env) for name in names}
    servers = Servers(loop, tmp, securities).start()
    yield servers
    servers.stop()
