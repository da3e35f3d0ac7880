"""Who the person is: a bearer token, verified as the services verify it.

- production: OpenID Connect, authorization code with PKCE (S256), against
  the district's identity provider (Authlib's Starlette client). The
  access token it issues is what the services accept (``aud``, ``iss``,
  ``role``, for a firm ``credit_code``, as docs/security.md); the console
  verifies it with the same keys before it starts a session.
- development (``SUBSIDY_DEV_MODE=1`` only): the console signs a token for
  a demo identity itself, with the dev stack's key file named by
  ``SUBSIDY_CONSOLE_DEV_SIGNING_KEY_FILE``; the services verify it with the
  stack's JWKS like any other. The runtime package never imports the dev
  tooling (import-linter), so the key and the identities come by
  environment.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from subsidy.platform.security.tokens import InvalidToken, TokenVerifier, load_jwks
from subsidy.services.console.model import ROLES, Person, SignedOut


@dataclasses.dataclass(frozen=True)
class DevIdentity:
    subject: str
    role: str
    name: str
    credit_code: str = ""


class Tokens:
    """Verifies a token and makes the ``Person`` of it."""

    def __init__(self, jwks_file: str, audience: str, issuer: str):
        self.verifier = TokenVerifier(load_jwks(jwks_file), audience=audience, issuer=issuer)

    def person(self, token: str, name: str = "") -> Person:
        try:
            principal = self.verifier.verify(token)
        except InvalidToken as exc:
            raise SignedOut(f"身份令牌无效（{exc}），请重新登录。") from None
        claims = jwt.decode(token, options={"verify_signature": False})
        return Person(
            subject=principal.subject,
            role=principal.role,
            name=str(claims.get("name") or name or principal.subject)[:100],
            token=token,
            expires_at=float(claims["exp"]),
            credit_code=principal.credit_code,
        )


class DevSigner:
    """The dev sign-in: tokens for demo identities, signed with the dev stack's key."""

    def __init__(self, key_file: str, key_id: str, audience: str, issuer: str, identities_json: str):
        self.key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
        self.key_id = key_id
        self.audience = audience
        self.issuer = issuer
        self.identities = parse_identities(identities_json)

    def token(self, who: DevIdentity, lifetime_s: int) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": who.subject,
            "role": who.role,
            "name": who.name,
            "iat": now,
            "exp": now + lifetime_s,
            "aud": self.audience,
            "iss": self.issuer,
        }
        if who.credit_code:
            claims["credit_code"] = who.credit_code
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": self.key_id})  # type: ignore[arg-type]

    def find(self, subject: str) -> DevIdentity | None:
        return next((i for i in self.identities if i.subject == subject), None)


def parse_identities(text: str) -> tuple[DevIdentity, ...]:
    if not text.strip():
        return ()
    out = []
    for entry in json.loads(text):
        who = DevIdentity(
            str(entry["subject"]), str(entry["role"]), str(entry.get("name", "")), str(entry.get("credit_code", ""))
        )
        if who.role not in ROLES or not who.subject:
            raise ValueError(f"SUBSIDY_CONSOLE_DEV_IDENTITIES: {entry!r} needs a subject and a role")
        out.append(who)
    return tuple(out)


def oidc_client(issuer: str, client_id: str, client_secret: str, scope: str) -> Any:
    """Authlib's OpenID Connect client: discovery, authorization code with PKCE."""
    from authlib.integrations.starlette_client import OAuth

    oauth = OAuth()
    oauth.register(
        name="district",
        server_metadata_url=f"{issuer}/.well-known/openid-configuration",
        client_id=client_id,
        client_secret=client_secret,
        client_kwargs={"scope": scope, "code_challenge_method": "S256"},
    )
    return oauth.district
