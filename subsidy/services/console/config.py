"""The console's settings, every one from the environment, read once at
start (docs/console.md, "Settings")."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from subsidy.platform.config import Env

#: A session lasts at most this long, and never beyond its token's ``exp``.
DEFAULT_SESSION_SECONDS = 8 * 3600


class SettingsError(ValueError):
    """A setting that cannot work; the message names the variable."""


@dataclasses.dataclass(frozen=True)
class Settings:
    http_address: str = "127.0.0.1:8080"
    grpc_address: str = "127.0.0.1:50056"  # grpc.health.v1 only (probes, the dev stack)
    metrics_address: str = "127.0.0.1:9469"
    intake_address: str = "127.0.0.1:50051"
    review_address: str = "127.0.0.1:50055"
    payout_address: str = "127.0.0.1:50053"
    operations_address: str = "127.0.0.1:50058"
    eligibility_address: str = "127.0.0.1:50052"
    #: Extra grpc.health.v1 targets shown on the operations page: name=host:port,...
    health_targets: tuple[tuple[str, str], ...] = ()
    #: How each channel spreads its calls: round_robin over every address its
    #: name resolves to (intake's headless Service: every ready pod), or
    #: gRPC's default pick_first (one connection, one pod).
    grpc_balancing: str = "round_robin"
    #: CA bundle to verify the services' TLS certificates; empty: plaintext channels.
    tls_ca_file: str = ""
    session_secret: str = ""
    session_seconds: int = DEFAULT_SESSION_SECONDS
    #: The public origin (https://console.example) behind a proxy; cookies are Secure unless it is loopback http.
    public_url: str = ""
    # Token verification (the same keys, audience and issuer as the services).
    jwks_file: str = ""
    audience: str = ""
    issuer: str = ""
    # OpenID Connect (production).
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    oidc_scope: str = "openid profile"
    # Development sign-in (SUBSIDY_DEV_MODE=1 only).
    dev_mode: bool = False
    dev_signing_key_file: str = ""
    dev_key_id: str = ""
    dev_identities: str = ""  # JSON list of {subject, role, name, credit_code}
    grafana_url: str = ""

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer)

    @property
    def dev_signin_enabled(self) -> bool:
        return self.dev_mode and bool(self.dev_signing_key_file)

    @property
    def secure_cookies(self) -> bool:
        """Secure cookies everywhere but plain http on loopback in dev mode."""
        host = self.http_address.rsplit(":", 1)[0].strip("[]")
        loopback_http = host in ("127.0.0.1", "localhost", "::1") and not self.public_url.startswith("https:")
        return not (self.dev_mode and loopback_http)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = Env(environ)
        targets = []
        for entry in env.raw("SUBSIDY_CONSOLE_HEALTH_TARGETS").split(","):
            name, sep, address = entry.strip().partition("=")
            if not entry.strip():
                continue
            if not sep or not name.strip() or not address.strip():
                raise SettingsError("SUBSIDY_CONSOLE_HEALTH_TARGETS: entries are name=host:port")
            targets.append((name.strip(), address.strip()))
        settings = cls(
            http_address=env.text("SUBSIDY_CONSOLE_HTTP_ADDRESS", cls.http_address),
            grpc_address=env.text("SUBSIDY_CONSOLE_GRPC_ADDRESS", cls.grpc_address),
            metrics_address=env.raw("SUBSIDY_CONSOLE_METRICS_ADDRESS", cls.metrics_address),
            intake_address=env.text("SUBSIDY_CONSOLE_INTAKE_ADDRESS", cls.intake_address),
            review_address=env.text("SUBSIDY_CONSOLE_REVIEW_ADDRESS", cls.review_address),
            payout_address=env.text("SUBSIDY_CONSOLE_PAYOUT_ADDRESS", cls.payout_address),
            operations_address=env.text("SUBSIDY_CONSOLE_OPERATIONS_ADDRESS", cls.operations_address),
            eligibility_address=env.text("SUBSIDY_CONSOLE_ELIGIBILITY_ADDRESS", cls.eligibility_address),
            health_targets=tuple(targets),
            grpc_balancing=env.text("SUBSIDY_CONSOLE_GRPC_BALANCING", cls.grpc_balancing),
            tls_ca_file=env.text("SUBSIDY_CONSOLE_TLS_CA_FILE", ""),
            session_secret=env.secret("SUBSIDY_CONSOLE_SESSION_SECRET"),
            session_seconds=env.whole("SUBSIDY_CONSOLE_SESSION_SECONDS", DEFAULT_SESSION_SECONDS),
            public_url=env.text("SUBSIDY_CONSOLE_PUBLIC_URL", "").rstrip("/"),
            jwks_file=env.text("SUBSIDY_CONSOLE_AUTH_JWKS_FILE", ""),
            audience=env.text("SUBSIDY_CONSOLE_AUTH_AUDIENCE", ""),
            issuer=env.text("SUBSIDY_CONSOLE_AUTH_ISSUER", ""),
            oidc_issuer=env.text("SUBSIDY_CONSOLE_OIDC_ISSUER", "").rstrip("/"),
            oidc_client_id=env.text("SUBSIDY_CONSOLE_OIDC_CLIENT_ID", ""),
            oidc_client_secret=env.secret("SUBSIDY_CONSOLE_OIDC_CLIENT_SECRET"),
            oidc_scope=env.text("SUBSIDY_CONSOLE_OIDC_SCOPE", cls.oidc_scope),
            dev_mode=env.raw("SUBSIDY_DEV_MODE") == "1",
            dev_signing_key_file=env.text("SUBSIDY_CONSOLE_DEV_SIGNING_KEY_FILE", ""),
            dev_key_id=env.text("SUBSIDY_CONSOLE_DEV_KEY_ID", ""),
            dev_identities=env.raw("SUBSIDY_CONSOLE_DEV_IDENTITIES"),
            grafana_url=env.text("SUBSIDY_CONSOLE_GRAFANA_URL", ""),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        if len(self.session_secret) < 32:
            raise SettingsError(
                "SUBSIDY_CONSOLE_SESSION_SECRET (or _FILE): at least 32 characters of random secret to sign sessions"
            )
        if not (self.jwks_file and self.audience and self.issuer):
            raise SettingsError(
                "SUBSIDY_CONSOLE_AUTH_JWKS_FILE, SUBSIDY_CONSOLE_AUTH_AUDIENCE and SUBSIDY_CONSOLE_AUTH_ISSUER: "
                "the console verifies every token it forwards, as the services do"
            )
        if self.dev_signing_key_file and not self.dev_mode:
            raise SettingsError("SUBSIDY_CONSOLE_DEV_SIGNING_KEY_FILE is refused unless SUBSIDY_DEV_MODE=1")
        if self.dev_signing_key_file and not self.dev_key_id:
            raise SettingsError("SUBSIDY_CONSOLE_DEV_KEY_ID: the kid of the dev signing key")
        if self.oidc_enabled and not (self.oidc_client_id and self.oidc_client_secret):
            raise SettingsError(
                "SUBSIDY_CONSOLE_OIDC_CLIENT_ID and SUBSIDY_CONSOLE_OIDC_CLIENT_SECRET(_FILE) with SUBSIDY_CONSOLE_OIDC_ISSUER"
            )
        if not (self.oidc_enabled or self.dev_signin_enabled):
            raise SettingsError(
                "no way to sign in: set SUBSIDY_CONSOLE_OIDC_ISSUER (production), or SUBSIDY_DEV_MODE=1 with "
                "SUBSIDY_CONSOLE_DEV_SIGNING_KEY_FILE (development)"
            )
        if self.grpc_balancing not in ("round_robin", "pick_first"):
            raise SettingsError("SUBSIDY_CONSOLE_GRPC_BALANCING: round_robin or pick_first")
        if self.session_seconds < 60:
            raise SettingsError("SUBSIDY_CONSOLE_SESSION_SECONDS: at least 60")
