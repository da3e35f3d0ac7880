"""The dev stack's identity provider: a signing key made on first use under
the stack's directory, its JWKS for the services, and tokens for the demo
identities. Four-eyes needs two people, and people are their token's
subject, so the review service runs with JWT verification even in `make
run`; the other services keep authentication off there, as before.

Never used outside the dev stack and the tests: the key sits unencrypted in
var/, and anyone who can read it can be anyone. Production's tokens come from
the district's identity provider (docs/security.md).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

AUDIENCE = "subsidy-api"
ISSUER = "https://sso.dev.subsidy.invalid"
KID = "dev-stack-1"


@dataclass(frozen=True)
class DemoIdentity:
    subject: str
    role: str
    name: str  # what the console shows (issue 15)
    credit_code: str = ""


#: The people of the demo story. Two reviewers, because one never approves
#: their own work.
REVIEWER_1 = DemoIdentity("reviewer-zhang", "REVIEWER", "张敏（区科委 审核）")
REVIEWER_2 = DemoIdentity("reviewer-li", "REVIEWER", "李强（区科委 复核）")
FINANCE = DemoIdentity("finance-wang", "FINANCE", "王芳（区财政）")
OPERATOR = DemoIdentity("operator-zhao", "OPERATOR", "赵磊（运维）")
PORTAL = DemoIdentity("portal-songjiang", "PORTAL", "松江区企业服务门户")
PEOPLE = (REVIEWER_1, REVIEWER_2, FINANCE, OPERATOR, PORTAL)


def enterprise(credit_code: str) -> DemoIdentity:
    return DemoIdentity(f"enterprise-{credit_code}", "ENTERPRISE", f"企业 {credit_code}", credit_code)


class DevIdentityProvider:
    """Signs tokens with an EC P-256 key kept in ``directory`` (made on first use)."""

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)
        self.key_path = self.directory / "signing-key.pem"
        self.jwks_path = self.directory / "jwks.json"
        self._key = self._load_or_make()

    def _load_or_make(self):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        if self.key_path.exists():
            key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        else:
            self.directory.mkdir(parents=True, exist_ok=True)
            key = ec.generate_private_key(ec.SECP256R1())
            self.key_path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
            self.key_path.chmod(0o600)
        self._write_jwks(key)
        return key

    def _write_jwks(self, key) -> None:
        import jwt

        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
        jwk.update(kid=KID, use="sig", alg="ES256")
        self.jwks_path.write_text(json.dumps({"keys": [jwk]}), encoding="utf-8")

    def service_env(self, service: str) -> dict[str, str]:
        """What a service needs to verify these tokens."""
        upper = service.upper()
        return {
            f"SUBSIDY_{upper}_AUTH_MODE": "jwt",
            f"SUBSIDY_{upper}_AUTH_JWKS_FILE": str(self.jwks_path),
            f"SUBSIDY_{upper}_AUTH_AUDIENCE": AUDIENCE,
            f"SUBSIDY_{upper}_AUTH_ISSUER": ISSUER,
        }

    def token(self, who: DemoIdentity, lifetime_s: int = 3600) -> str:
        import jwt

        now = int(time.time())
        claims = {
            "sub": who.subject,
            "role": who.role,
            "name": who.name,
            "iat": now,
            "exp": now + lifetime_s,
            "aud": AUDIENCE,
            "iss": ISSUER,
        }
        if who.credit_code:
            claims["credit_code"] = who.credit_code
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": KID})

    def metadata(self, who: DemoIdentity) -> tuple[tuple[str, str], ...]:
        """gRPC call metadata carrying ``who``'s token."""
        return (("authorization", f"Bearer {self.token(who)}"),)
