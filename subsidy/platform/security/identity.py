"""Who is calling: the ``Principal`` of an RPC, in a context variable the
servicers consult (``current()``, ``check_firm``), and the mapping from an
mTLS client certificate to a principal."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml


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


class CertificateMap:
    """mTLS identities (SUBSIDY_AUTH_MTLS_IDENTITIES_FILE), YAML:

    identities:
      - {common_name: finance-gateway, role: FINANCE}
      - {san: spiffe://songjiang/portal, role: PORTAL}
      - {common_name: firm-91310117313Q6C3D6G, role: ENTERPRISE, credit_code: 91310117313Q6C3D6G}
    """

    def __init__(self, identities: list[CertificateIdentity]):
        self.identities = identities

    @classmethod
    def load(cls, path: str) -> CertificateMap:
        from subsidy.platform.security.policy import ROLES

        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        out = []
        for item in data.get("identities", []):
            ident = CertificateIdentity(
                role=str(item.get("role", "")),
                common_name=str(item.get("common_name", "")),
                san=str(item.get("san", "")),
                credit_code=str(item.get("credit_code", "")),
            )
            if ident.role not in ROLES or not (ident.common_name or ident.san):
                raise ValueError(f"{path}: each identity needs a role and a common_name or san")
            if ident.role == "ENTERPRISE" and not ident.credit_code:
                raise ValueError(f"{path}: an ENTERPRISE identity needs a credit_code")
            out.append(ident)
        return cls(out)

    def principal(self, auth_context: dict[str, list[Any]]) -> Principal | None:
        def values(key: str) -> set[str]:
            return {v.decode() if isinstance(v, bytes) else str(v) for v in auth_context.get(key, ())}

        names = values("x509_common_name")
        sans = values("x509_subject_alternative_name")
        for ident in self.identities:
            if (ident.common_name and ident.common_name in names) or (ident.san and ident.san in sans):
                return Principal(
                    role=ident.role, credit_code=ident.credit_code, subject=ident.common_name or ident.san, via="mtls"
                )
        return None
