"""Security settings of one service, from the environment (docs/security.md).

Every variable may be overridden per service by inserting the service name:
``SUBSIDY_INTAKE_TLS_CERT_FILE`` wins over ``SUBSIDY_TLS_CERT_FILE``.

    SUBSIDY_TLS_CERT_FILE / SUBSIDY_TLS_KEY_FILE   gRPC server certificate chain and key (PEM): TLS on
    SUBSIDY_TLS_CLIENT_CA_FILE                     CA bundle for client certificates: mutual TLS, required
    SUBSIDY_AUTH_MODE                              off (default) | jwt | mtls | jwt+mtls
    SUBSIDY_AUTH_JWKS_FILE                         public keys as a JWKS
    SUBSIDY_AUTH_PUBLIC_KEYS                       kid=/path.pem,kid2=/path2.pem
    SUBSIDY_AUTH_PUBLIC_KEYS_DIR                   a directory of <kid>.pem
    SUBSIDY_AUTH_AUDIENCE / SUBSIDY_AUTH_ISSUER    required aud / iss
    SUBSIDY_AUTH_LEEWAY_SECONDS                    clock skew allowed (default 30, 0 to MAX_LEEWAY_SECONDS = 300)
    SUBSIDY_AUTH_MTLS_IDENTITIES_FILE              client certificate -> role
    SUBSIDY_AUTH_POLICY_FILE                       the access policy (default: subsidy/platform/security/access.yaml)
    SUBSIDY_GRPC_REFLECTION                        auto (default: on in plaintext only) | on | off
    SUBSIDY_HEALTH_ADDRESS                         host:port of a PLAINTEXT port serving only
                                                   grpc.health.v1 (kubelet probes while TLS is on); unset: none
    SUBSIDY_DEV_MODE                               1: local development (not per service)

Secure by default: a server that listens beyond loopback (0.0.0.0, a pod IP)
refuses to start without TLS or with authentication off, unless
``SUBSIDY_DEV_MODE=1`` says this is a development environment (``check_exposure``).
On loopback (``make run``, the tests) nobody else can connect, so the local
defaults still work without the flag.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
from collections.abc import Mapping

MODES = ("off", "jwt", "mtls", "jwt+mtls")

#: The most clock skew SUBSIDY_AUTH_LEEWAY_SECONDS may allow, in seconds. Leeway
#: extends every token's lifetime (``exp``) and advances its ``nbf``: beyond a few
#: minutes it stops being skew and keeps expired or stolen tokens valid.
MAX_LEEWAY_SECONDS = 300.0


class SecurityConfigError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class SecurityConfig:
    service: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    auth_mode: str = "off"
    jwks_file: str = ""
    public_keys: str = ""
    public_keys_dir: str = ""
    audience: str = ""
    issuer: str = ""
    leeway_s: float = 30.0
    mtls_identities_file: str = ""
    policy_file: str = ""
    reflection: str = "auto"
    health_address: str = ""
    dev_mode: bool = False

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert_file)

    @property
    def mutual_tls(self) -> bool:
        return bool(self.tls_client_ca_file)

    @property
    def reflection_enabled(self) -> bool:
        if self.reflection == "auto":
            return not self.tls
        return self.reflection == "on"

    @classmethod
    def from_env(cls, service: str, env: Mapping[str, str] | None = None) -> SecurityConfig:
        env = os.environ if env is None else env
        upper = service.upper()

        def get(suffix: str, default: str = "") -> str:
            # SUBSIDY_TLS_CERT_FILE -> SUBSIDY_INTAKE_TLS_CERT_FILE overrides it
            specific = (env.get(f"SUBSIDY_{upper}_{suffix}") or "").strip() if upper else ""
            return specific or (env.get(f"SUBSIDY_{suffix}") or "").strip() or default

        def seconds(suffix: str, default: float) -> float:
            specific = f"SUBSIDY_{upper}_{suffix}"
            name = specific if upper and (env.get(specific) or "").strip() else f"SUBSIDY_{suffix}"
            raw = get(suffix)
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise SecurityConfigError(f"{name}: a number of seconds, got {raw!r}") from None
            check_leeway(name, value)
            return value

        config = cls(
            service=service,
            tls_cert_file=get("TLS_CERT_FILE"),
            tls_key_file=get("TLS_KEY_FILE"),
            tls_client_ca_file=get("TLS_CLIENT_CA_FILE"),
            auth_mode=get("AUTH_MODE", "off").lower(),
            jwks_file=get("AUTH_JWKS_FILE"),
            public_keys=get("AUTH_PUBLIC_KEYS"),
            public_keys_dir=get("AUTH_PUBLIC_KEYS_DIR"),
            audience=get("AUTH_AUDIENCE"),
            issuer=get("AUTH_ISSUER"),
            leeway_s=seconds("AUTH_LEEWAY_SECONDS", 30.0),
            mtls_identities_file=get("AUTH_MTLS_IDENTITIES_FILE"),
            policy_file=get("AUTH_POLICY_FILE"),
            reflection=get("GRPC_REFLECTION", "auto").lower(),
            health_address=get("HEALTH_ADDRESS"),
            dev_mode=(env.get("SUBSIDY_DEV_MODE") or "").strip() == "1",
        )
        config.validate()
        return config

    def validate(self) -> None:
        check_leeway("SUBSIDY_AUTH_LEEWAY_SECONDS", self.leeway_s)
        if self.auth_mode not in MODES:
            raise SecurityConfigError(f"SUBSIDY_AUTH_MODE: one of {', '.join(MODES)}, got {self.auth_mode!r}")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise SecurityConfigError("TLS needs both SUBSIDY_TLS_CERT_FILE and SUBSIDY_TLS_KEY_FILE")
        if self.tls_client_ca_file and not self.tls:
            raise SecurityConfigError(
                "SUBSIDY_TLS_CLIENT_CA_FILE (mutual TLS) needs TLS: set SUBSIDY_TLS_CERT_FILE/KEY_FILE"
            )
        if "mtls" in self.auth_mode and not self.mutual_tls:
            raise SecurityConfigError(
                f"SUBSIDY_AUTH_MODE={self.auth_mode} needs mutual TLS: set SUBSIDY_TLS_CLIENT_CA_FILE"
            )
        if "mtls" in self.auth_mode and not self.mtls_identities_file:
            raise SecurityConfigError(f"SUBSIDY_AUTH_MODE={self.auth_mode} needs SUBSIDY_AUTH_MTLS_IDENTITIES_FILE")
        if self.reflection not in ("auto", "on", "off"):
            raise SecurityConfigError(f"SUBSIDY_GRPC_REFLECTION: auto, on or off, got {self.reflection!r}")


def is_loopback_address(address: str) -> bool:
    """Whether a gRPC listening ``address`` (host:port, [v6]:port, unix:...)
    is reachable from this host only."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    host = address.rsplit(":", 1)[0] if ":" in address else address
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name, "0.0.0.0", "[::]", "": assume reachable


def check_exposure(config: SecurityConfig, address: str) -> None:
    """Refuse to serve ``address`` beyond loopback without TLS or without
    authentication, unless SUBSIDY_DEV_MODE=1 (raises SecurityConfigError)."""
    if config.dev_mode or is_loopback_address(address):
        return
    missing = [
        what
        for what, absent in (
            ("TLS (SUBSIDY_TLS_CERT_FILE/KEY_FILE)", not config.tls),
            ("authentication (SUBSIDY_AUTH_MODE=jwt|mtls|jwt+mtls)", config.auth_mode == "off"),
        )
        if absent
    ]
    if missing:
        raise SecurityConfigError(
            f"refusing to listen on {address} without {' and '.join(missing)}: outside loopback both are "
            "required; set SUBSIDY_DEV_MODE=1 only in a development environment"
        )


def check_leeway(name: str, value: float) -> None:
    if not (math.isfinite(value) and 0 <= value <= MAX_LEEWAY_SECONDS):
        raise SecurityConfigError(f"{name}: from 0 to {MAX_LEEWAY_SECONDS:g} seconds, got {value:g}")
