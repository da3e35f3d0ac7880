"""Bearer tokens: signed JWTs verified against configured public keys.

- keys: a JWKS file (SUBSIDY_AUTH_JWKS_FILE) and/or PEM public keys
  (SUBSIDY_AUTH_PUBLIC_KEYS = "kid=/path/key.pem,kid2=/path/other.pem", or
  SUBSIDY_AUTH_PUBLIC_KEYS_DIR with one <kid>.pem per key). Several keys at
  once: that is how keys rotate (publish the new key, switch the issuer,
  drop the old key after the longest token lifetime).
- the token's ``kid`` picks the key; the key's type fixes the one algorithm
  accepted (RSA: RS256, EC P-256: ES256, Ed25519: EdDSA). ``none`` and every
  HMAC algorithm are never accepted, so a public key can't be used as an HMAC
  secret.
- ``exp`` is required, ``nbf``/``iat`` checked, with a small leeway; ``aud``
  and ``iss`` must match the configuration.

Claims: ``role`` (ENTERPRISE, PORTAL, REVIEWER, FINANCE, OPERATOR), for
ENTERPRISE ``credit_code``, and ``sub``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from subsidy.platform.security.identity import Principal
from subsidy.platform.security.policy import ROLES

ALGORITHMS = ("RS256", "ES256", "EdDSA")


class InvalidToken(Exception):
    """The token can't be trusted; the message says why, never the token."""


def algorithm_for(key: Any) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise ValueError("RSA keys must have at least 2048 bits")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("EC keys must be on P-256 (ES256)")
        return "ES256"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    raise ValueError(f"unsupported public key type {type(key).__name__}: use RSA, EC P-256 or Ed25519")


@dataclasses.dataclass(frozen=True)
class VerificationKey:
    kid: str
    key: Any
    algorithm: str


def load_pem_keys(spec: str = "", directory: str = "") -> list[VerificationKey]:
    out: list[VerificationKey] = []
    items: list[tuple[str, Path]] = []
    for entry in (e.strip() for e in spec.split(",") if e.strip()):
        kid, sep, path = entry.partition("=")
        if not sep or not kid.strip() or not path.strip():
            raise ValueError("SUBSIDY_AUTH_PUBLIC_KEYS: entries are kid=/path/to/key.pem")
        items.append((kid.strip(), Path(path.strip())))
    if directory:
        items.extend((p.stem, p) for p in sorted(Path(directory).glob("*.pem")))
    for kid, path in items:
        key = serialization.load_pem_public_key(path.read_bytes())
        out.append(VerificationKey(kid, key, algorithm_for(key)))
    return out


def load_jwks(path: str) -> list[VerificationKey]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    out = []
    for jwk in data.get("keys", []):
        if not jwk.get("kid"):
            raise ValueError(f"{path}: every key needs a kid")
        if jwk.get("kty") == "oct" or "d" in jwk:
            raise ValueError(f"{path}: kid {jwk['kid']}: only public keys belong in the JWKS")
        key = jwt.PyJWK(jwk).key
        algorithm = algorithm_for(key)
        if jwk.get("alg") and jwk["alg"] != algorithm:
            raise ValueError(f"{path}: kid {jwk['kid']}: alg {jwk['alg']} does not fit the key ({algorithm})")
        out.append(VerificationKey(jwk["kid"], key, algorithm))
    return out


class TokenVerifier:
    def __init__(self, keys: list[VerificationKey], *, audience: str, issuer: str, leeway_s: float = 30.0):
        if not keys:
            raise ValueError(
                "JWT authentication needs at least one public key "
                "(SUBSIDY_AUTH_JWKS_FILE, SUBSIDY_AUTH_PUBLIC_KEYS or SUBSIDY_AUTH_PUBLIC_KEYS_DIR)"
            )
        if not audience or not issuer:
            raise ValueError("JWT authentication needs SUBSIDY_AUTH_AUDIENCE and SUBSIDY_AUTH_ISSUER")
        self.keys = {k.kid: k for k in keys}
        if len(self.keys) != len(keys):
            raise ValueError("two public keys share a kid")
        self.audience = audience
        self.issuer = issuer
        self.leeway_s = leeway_s

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed token") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise InvalidToken(f"algorithm {str(alg)[:16]!r} not accepted")
        kid = header.get("kid")
        key = self.keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("unknown key id")
        if alg != key.algorithm:
            raise InvalidToken("algorithm does not fit the key")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("not yet valid") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("wrong issuer") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from None
        role = claims.get("role")
        if role not in ROLES:
            raise InvalidToken("no valid role claim")
        credit_code = claims.get("credit_code") or ""
        if role == "ENTERPRISE" and not (isinstance(credit_code, str) and credit_code):
            raise InvalidToken("an ENTERPRISE token needs a credit_code claim")
        return Principal(
            role=role,
            credit_code=credit_code if role == "ENTERPRISE" else "",
            subject=str(claims.get("sub")),
            via="jwt",
            key_id=kid,
        )
