"""Who is calling: the ``Principal`` of an RPC, in a context variable the
servicers consult (``current()``, ``check_firm``), and the mapping from an
mTLS client certificate to a principal."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes

from subsidy.platform.security.config import SecurityConfigError

log = logging.getLogger("subsidy.platform.security")


@dataclasses.dataclass(frozen=True)
class Principal:
    role: str
    credit_code: str = ""  # ENTERPRISE only
    subject: str = ""  # token sub, or the certificate name it was mapped from
    via: str = ""  # jwt or mtls
    key_id: str = ""


_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("subsidy_principal", default=None)
_enforcing: contextvars.ContextVar[bool] = contextvars.ContextVar("subsidy_auth_enforcing", default=False)


@contextlib.contextmanager
def acting_as(principal: Principal | None, enforcing: bool = True) -> Iterator[None]:
    token = _current.set(principal)
    token2 = _enforcing.set(enforcing)
    try:
        yield
    finally:
        _current.reset(token)
        _enforcing.reset(token2)


def current() -> Principal | None:
    """The authenticated caller of the RPC being handled (None when authentication is off)."""
    return _current.get()


def firm_allowed(credit_code: str) -> bool:
    """May the current caller see or act on ``credit_code``'s records?
    Everyone but an ENTERPRISE (whose access the policy limits by role);
    an ENTERPRISE only for its own credit code. True when auth is off."""
    principal = _current.get()
    if principal is None:
        return not _enforcing.get()
    return principal.role != "ENTERPRISE" or principal.credit_code == credit_code


@dataclasses.dataclass(frozen=True)
class CertificateIdentity:
    role: str
    common_name: str = ""
    san: str = ""
    credit_code: str = ""
    issuer_sha256: str = ""  # SHA-256 fingerprint (hex) of the CA certificate that must have issued it
    issuer: str = ""  # or that CA's subject, RFC 4514 ("CN=Songjiang Clients CA,O=...")

    @property
    def bound(self) -> bool:
        return bool(self.issuer_sha256 or self.issuer)


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def _normal_fingerprint(text: str) -> str:
    return text.replace(":", "").strip().lower()


@functools.lru_cache(maxsize=256)
def _leaf(pem: bytes) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        return None


def _issued_by(leaf: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


class CertificateMap:
    """mTLS identities (SUBSIDY_AUTH_MTLS_IDENTITIES_FILE), YAML:

    identities:
      - {common_name: finance-gateway, role: FINANCE, issuer_sha256: "3f2a…"}
      - {san: spiffe://songjiang/portal, role: PORTAL, issuer: "CN=Songjiang Clients CA"}
      - {common_name: firm-91310117313Q6C3D6G, role: ENTERPRISE, credit_code: 91310117313Q6C3D6G}

    Each identity is bound to the CA that must have issued the certificate
    (directly: the leaf's issuer, its signature checked with that CA's key),
    named by the CA certificate's SHA-256 fingerprint (``issuer_sha256``) or
    its subject (``issuer``); the CA must be in the client CA bundle
    (SUBSIDY_TLS_CLIENT_CA_FILE). Without either, an identity is bound to the
    bundle's CA when it holds exactly one (the configurations written before
    the binding); with several CAs an unbound identity is refused at start,
    since any of them could issue a certificate with the same name.
    """

    def __init__(self, identities: list[CertificateIdentity], ca_file: str = ""):
        self.identities = identities
        self.ca_file = ca_file
        self._stamp: int | None = None
        self._cas: dict[CertificateIdentity, tuple[x509.Certificate, ...] | None] = {}
        if ca_file:
            self._stamp = self._mtime()
            self._cas = self._resolve(self._read_bundle(), strict=True)

    # -- the CA bundle ---------------------------------------------------------------------
    def _mtime(self) -> int:
        try:
            return os.stat(self.ca_file).st_mtime_ns
        except OSError:
            return 0

    def _read_bundle(self) -> list[x509.Certificate]:
        try:
            return x509.load_pem_x509_certificates(Path(self.ca_file).read_bytes())
        except (OSError, ValueError) as exc:
            raise SecurityConfigError(f"SUBSIDY_TLS_CLIENT_CA_FILE: cannot read the CA bundle: {exc}") from None

    def _resolve(
        self, bundle: list[x509.Certificate], strict: bool
    ) -> dict[CertificateIdentity, tuple[x509.Certificate, ...] | None]:
        """For each identity, the CAs that may issue it (None: any verified certificate,
        the one-CA bundle without a binding)."""
        out: dict[CertificateIdentity, tuple[x509.Certificate, ...] | None] = {}
        for ident in self.identities:
            name = ident.common_name or ident.san
            if ident.issuer_sha256:
                cas = tuple(c for c in bundle if _fingerprint(c) == _normal_fingerprint(ident.issuer_sha256))
                problem = (
                    f"identity {name!r}: issuer_sha256 {ident.issuer_sha256} is no CA of SUBSIDY_TLS_CLIENT_CA_FILE"
                )
            elif ident.issuer:
                cas = tuple(c for c in bundle if c.subject.rfc4514_string() == ident.issuer)
                problem = f"identity {name!r}: issuer {ident.issuer!r} is no CA of SUBSIDY_TLS_CLIENT_CA_FILE"
            elif len(bundle) == 1:
                out[ident] = None
                continue
            else:
                cas = ()
                problem = (
                    f"identity {name!r} names no issuer_sha256 or issuer, and SUBSIDY_TLS_CLIENT_CA_FILE holds "
                    f"{len(bundle)} CAs: bind it to the CA that issues its certificate"
                )
            if not cas:
                if strict:
                    raise SecurityConfigError(f"SUBSIDY_AUTH_MTLS_IDENTITIES_FILE: {problem}")
                log.error("mTLS identity refused until fixed: %s", problem)
            out[ident] = cas
        return out

    def _refresh(self) -> None:
        """The bundle is reloaded by the TLS layer when it changes; the bindings follow.
        After a change, an identity that no longer resolves matches nothing (logged)."""
        if not self.ca_file:
            return
        stamp = self._mtime()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            bundle = self._read_bundle()
        except SecurityConfigError as exc:
            log.error("mTLS identities keep their CAs: %s", exc)
            return
        self._cas = self._resolve(bundle, strict=False)

    # -- loading and matching --------------------------------------------------------------
    @classmethod
    def load(cls, path: str, ca_file: str = "") -> CertificateMap:
        from subsidy.platform.security.policy import ROLES

        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        out = []
        for item in data.get("identities", []):
            ident = CertificateIdentity(
                role=str(item.get("role", "")),
                common_name=str(item.get("common_name", "")),
                san=str(item.get("san", "")),
                credit_code=str(item.get("credit_code", "")),
                issuer_sha256=str(item.get("issuer_sha256", "")),
                issuer=str(item.get("issuer", "")),
            )
            if ident.role not in ROLES or not (ident.common_name or ident.san):
                raise ValueError(f"{path}: each identity needs a role and a common_name or san")
            if ident.role == "ENTERPRISE" and not ident.credit_code:
                raise ValueError(f"{path}: an ENTERPRISE identity needs a credit_code")
            if ident.issuer_sha256 and not re.fullmatch(r"[0-9a-f]{64}", _normal_fingerprint(ident.issuer_sha256)):
                raise ValueError(f"{path}: issuer_sha256 is the 64 hex digits of a SHA-256 fingerprint")
            out.append(ident)
        return cls(out, ca_file)

    def _issued_as_bound(self, ident: CertificateIdentity, leaf: x509.Certificate | None) -> bool:
        if not self.ca_file:
            return True  # no bundle known (not built by GrpcSecurity): names only
        cas = self._cas.get(ident, ())
        if cas is None:
            return True  # the bundle's one CA verified it
        return leaf is not None and any(_issued_by(leaf, ca) for ca in cas)

    def principal(self, auth_context: dict[str, list[Any]]) -> Principal | None:
        def values(key: str) -> set[str]:
            return {v.decode() if isinstance(v, bytes) else str(v) for v in auth_context.get(key, ())}

        self._refresh()
        names = values("x509_common_name")
        sans = values("x509_subject_alternative_name")
        pem = next(iter(auth_context.get("x509_pem_cert", ())), b"")
        leaf = _leaf(pem.encode() if isinstance(pem, str) else pem) if pem else None
        for ident in self.identities:
            if not ((ident.common_name and ident.common_name in names) or (ident.san and ident.san in sans)):
                continue
            if not self._issued_as_bound(ident, leaf):
                continue  # the same name from another CA of the bundle
            return Principal(
                role=ident.role, credit_code=ident.credit_code, subject=ident.common_name or ident.san, via="mtls"
            )
        return None
