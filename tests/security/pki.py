"""Test PKI generated on the fly (nothing is committed): a CA, a server
certificate for 127.0.0.1/localhost, client certificates (valid, expired,
from another CA) and JWT signing keys."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.UTC)


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Issued:
    cert: bytes
    key: bytes


class CA:
    def __init__(self, name: str):
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.name = subject
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> bytes:
        return _pem_cert(self.cert)

    def issue(
        self, common_name: str, *, server: bool = False, sans: tuple[str, ...] = (), expired: bool = False
    ) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        if expired:
            before, after = NOW - dt.timedelta(days=10), NOW - dt.timedelta(days=1)
        else:
            before, after = NOW - dt.timedelta(hours=1), NOW + dt.timedelta(days=7)
        names: list[x509.GeneralName] = []
        for san in sans:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                names.append(x509.UniformResourceIdentifier(san) if ":" in san else x509.DNSName(san))
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(before)
            .not_valid_after(after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return Issued(_pem_cert(cert), _pem_key(key))


@dataclass
class Pki:
    ca: CA
    other_ca: CA
    server: Issued
    client: Issued
    client_expired: Issued
    client_other_ca: Issued
    client_unmapped: Issued
    directory: Path

    def write(self, name: str, data: bytes) -> str:
        path = self.directory / name
        path.write_bytes(data)
        return str(path)


def make_pki(directory: Path) -> Pki:
    ca, other = CA("Subsidy Test CA"), CA("Some Other CA")
    return Pki(
        ca=ca,
        other_ca=other,
        server=ca.issue("localhost", server=True, sans=("localhost", "127.0.0.1")),
        client=ca.issue("finance-gateway", sans=("spiffe://songjiang/finance",)),
        client_expired=ca.issue("finance-gateway", expired=True),
        client_other_ca=other.issue("finance-gateway"),
        client_unmapped=ca.issue("stranger"),
        directory=directory,
    )


# ------------------------------------------------------------------------------------------ JWT

AUDIENCE = "subsidy-api"
ISSUER = "https://sso.songjiang.example.cn"


class Signer:
    """One issuer key: RSA (RS256), EC P-256 (ES256) or Ed25519 (EdDSA)."""

    def __init__(self, kind: str = "rsa", kid: str | None = None):
        self.kid = kid or f"{kind}-{uuid.uuid4().hex[:8]}"
        if kind == "rsa":
            self.key, self.alg = rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"
        elif kind == "ec":
            self.key, self.alg = ec.generate_private_key(ec.SECP256R1()), "ES256"
        else:
            self.key, self.alg = ed25519.Ed25519PrivateKey.generate(), "EdDSA"

    @property
    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwk(self) -> dict:
        algo = {
            "RS256": jwt.algorithms.RSAAlgorithm,
            "ES256": jwt.algorithms.ECAlgorithm,
            "EdDSA": jwt.algorithms.OKPAlgorithm,
        }[self.alg]
        data = json.loads(algo.to_jwk(self.key.public_key()))
        data.update(kid=self.kid, use="sig")
        return data

    def token(
        self,
        role: str,
        credit_code: str = "",
        *,
        lifetime: int = 300,
        not_before: int | None = None,
        audience: str = AUDIENCE,
        issuer: str = ISSUER,
        kid: str | None = None,
        **extra,
    ) -> str:
        now = int(time.time())
        claims = {
            "sub": f"test-{role.lower()}",
            "role": role,
            "iat": now,
            "exp": now + lifetime,
            "aud": audience,
            "iss": issuer,
            **extra,
        }
        if credit_code:
            claims["credit_code"] = credit_code
        if not_before is not None:
            claims["nbf"] = not_before
        return jwt.encode(claims, self.key, algorithm=self.alg, headers={"kid": kid or self.kid})


def write_jwks(path: Path, *signers: Signer) -> str:
    path.write_text(json.dumps({"keys": [s.jwk() for s in signers]}), encoding="utf-8")
    return str(path)
