"""Security shared by every service (docs/security.md): gRPC over TLS and
mutual TLS, callers identified by signed JWTs or client certificates, an
access policy as data (access.yaml) enforced by a server interceptor, and
secrets from the environment or mounted files.

A service builds its gRPC server with::

    security = GrpcSecurity.from_env("intake")
    server = grpc.aio.server(interceptors=[GrpcMetricsInterceptor(), *security.interceptors()], options=...)
    ...add servicers...
    security.enable_reflection(server, names)
    port = security.add_port(server, address)   # TLS or plaintext (with a WARNING)

Local defaults (``make run``): plaintext and authentication off, each stated
by a WARNING in the service's log at start.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import grpc

from subsidy.platform.security.config import SecurityConfig, SecurityConfigError
from subsidy.platform.security.identity import CertificateMap, Principal, current, firm_allowed
from subsidy.platform.security.interceptor import AUTH_DENIED, AuthInterceptor, check_firm
from subsidy.platform.security.policy import AccessPolicy
from subsidy.platform.security.secrets import redact_url, secret
from subsidy.platform.security.tokens import TokenVerifier, load_jwks, load_pem_keys

__all__ = [
    "AUTH_DENIED",
    "AccessPolicy",
    "AuthInterceptor",
    "GrpcSecurity",
    "Principal",
    "SecurityConfig",
    "SecurityConfigError",
    "check_firm",
    "current",
    "firm_allowed",
    "redact_url",
    "secret",
]

log = logging.getLogger("subsidy.platform.security")


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


class _ReloadingCertificates:
    """Serves the certificate files as they are now: a renewed certificate
    (cert-manager rewriting the mounted Secret) is picked up on the next
    handshake, without a restart."""

    def __init__(self, config: SecurityConfig):
        self.config = config
        self._stamp = self._mtimes()

    def _mtimes(self) -> tuple:
        files = [self.config.tls_cert_file, self.config.tls_key_file, self.config.tls_client_ca_file]
        return tuple(os.stat(f).st_mtime_ns if f and os.path.exists(f) else 0 for f in files)

    def configuration(self) -> Any:
        c = self.config
        return grpc.ssl_server_certificate_configuration(
            [(_read(c.tls_key_file), _read(c.tls_cert_file))],
            root_certificates=_read(c.tls_client_ca_file) if c.tls_client_ca_file else None,
        )

    def fetch(self) -> Any:
        stamp = self._mtimes()
        if stamp == self._stamp:
            return None
        try:
            configuration = self.configuration()
        except Exception as exc:  # noqa: BLE001 - keep serving the old certificate
            log.error(
                "TLS certificate files changed but cannot be loaded; keeping the old ones",
                extra={"fields": {"error": type(exc).__name__}},
            )
            return None
        self._stamp = stamp
        log.info("TLS certificate files reloaded", extra={"fields": {"service": self.config.service}})
        return configuration


class GrpcSecurity:
    def __init__(self, config: SecurityConfig):
        self.config = config
        self.policy = AccessPolicy.load(config.policy_file or None)
        self._interceptor: AuthInterceptor | None = None
        if config.auth_mode != "off":
            verifier = None
            if "jwt" in config.auth_mode:
                keys = load_pem_keys(config.public_keys, config.public_keys_dir)
                if config.jwks_file:
                    keys += load_jwks(config.jwks_file)
                verifier = TokenVerifier(keys, audience=config.audience, issuer=config.issuer, leeway_s=config.leeway_s)
            certificates = (
                CertificateMap.load(config.mtls_identities_file, config.tls_client_ca_file)
                if "mtls" in config.auth_mode
                else None
            )
            self._interceptor = AuthInterceptor(self.policy, config.auth_mode, verifier, certificates)

    @classmethod
    def from_env(cls, service: str, env: Mapping[str, str] | None = None) -> GrpcSecurity:
        return cls(SecurityConfig.from_env(service, env))

    def interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        return [self._interceptor] if self._interceptor is not None else []

    def credentials(self) -> grpc.ServerCredentials | None:
        if not self.config.tls:
            return None
        certificates = _ReloadingCertificates(self.config)
        return grpc.dynamic_ssl_server_credentials(
            certificates.configuration(), certificates.fetch, require_client_authentication=self.config.mutual_tls
        )

    def enable_reflection(self, server: Any, service_names: Iterable[str]) -> bool:
        if not self.config.reflection_enabled:
            return False
        from grpc_reflection.v1alpha import reflection

        reflection.enable_server_reflection(tuple(service_names), server)
        return True

    def add_port(self, server: Any, address: str) -> int:
        """Bind ``address`` with TLS when configured, else plaintext; log the posture."""
        credentials = self.credentials()
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
        self.log_posture(address)
        return port

    def log_posture(self, address: str) -> None:
        c = self.config
        fields = {
            "service": c.service,
            "address": address,
            "tls": c.tls,
            "mutual_tls": c.mutual_tls,
            "auth_mode": c.auth_mode,
            "reflection": c.reflection_enabled,
        }
        if not c.tls:
            log.warning(
                "gRPC is PLAINTEXT (no TLS): traffic and credentials are readable on the network; "
                "set SUBSIDY_TLS_CERT_FILE and SUBSIDY_TLS_KEY_FILE outside local development",
                extra={"fields": fields},
            )
        if c.auth_mode == "off":
            log.warning(
                "gRPC authentication is DISABLED: every caller may call every RPC; "
                "set SUBSIDY_AUTH_MODE=jwt|mtls|jwt+mtls outside local development",
                extra={"fields": fields},
            )
        if c.tls and c.auth_mode != "off":
            log.info("gRPC security", extra={"fields": fields})
