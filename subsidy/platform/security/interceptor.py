"""``AuthInterceptor``: a grpc.aio server interceptor enforcing the access
policy (access.yaml) for every RPC, the same pattern as
``subsidy.platform.metrics.GrpcMetricsInterceptor``.

- credentials: ``authorization: Bearer <JWT>`` metadata and/or the mTLS
  client certificate, per SUBSIDY_AUTH_MODE;
- missing or invalid credentials: UNAUTHENTICATED; a role the rule does not
  allow, an ENTERPRISE request for another credit code, or a method without
  a rule: PERMISSION_DENIED;
- every refusal counts in ``subsidy_auth_denied_total{grpc_service,
  grpc_method,reason}`` and is logged (method, reason, role, key id), never
  with the token;
- the caller's ``Principal`` is set in a context variable for the servicer
  (``subsidy.platform.security.identity.current`` / ``firm_allowed``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import grpc
from prometheus_client import Counter

from subsidy.platform import logs
from subsidy.platform.grpc.wrap import wrap_handler
from subsidy.platform.metrics import metric, split_method
from subsidy.platform.security.identity import CertificateMap, Principal, acting_as
from subsidy.platform.security.policy import AccessPolicy, Rule, field_value
from subsidy.platform.security.tokens import InvalidToken, TokenVerifier

log = logging.getLogger("subsidy.platform.security")

AUTH_DENIED = metric(
    Counter,
    "subsidy_auth_denied",
    "RPCs refused by authentication (UNAUTHENTICATED) or authorization (PERMISSION_DENIED), by gRPC service, "
    "method and reason: missing_credentials, invalid_token, unknown_certificate, wrong_role, wrong_firm, no_policy.",
    ("grpc_service", "grpc_method", "reason"),
)


class Denied(Exception):
    def __init__(self, code: grpc.StatusCode, reason: str, detail: str):
        super().__init__(detail)
        self.code = code
        self.reason = reason
        self.detail = detail


def deny(service: str, method: str, reason: str, principal: Principal | None = None, detail: str = "") -> None:
    """Count and log one refusal (no token, no personal data)."""
    AUTH_DENIED.labels(service, method, reason).inc()
    log.warning(
        "access denied",
        extra=logs.fields(
            grpc_service=service,
            grpc_method=method,
            reason=reason,
            detail=detail[:200],
            role=principal.role if principal else None,
            via=principal.via if principal else None,
            key_id=principal.key_id if principal else None,
            credit_code=principal.credit_code if principal and principal.credit_code else None,
        ),
    )


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        policy: AccessPolicy,
        mode: str,
        verifier: TokenVerifier | None = None,
        certificates: CertificateMap | None = None,
    ):
        self.policy = policy
        self.mode = mode
        self.verifier = verifier
        self.certificates = certificates
        if "jwt" in mode and verifier is None:
            raise ValueError("JWT mode needs a TokenVerifier")
        if "mtls" in mode and certificates is None:
            raise ValueError("mTLS mode needs a CertificateMap")

    # -- who -----------------------------------------------------------------------------------
    def authenticate(self, context: Any) -> Principal:
        token = None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                scheme, _, rest = value.strip().partition(" ")
                if scheme.lower() != "bearer" or not rest.strip():
                    raise Denied(
                        grpc.StatusCode.UNAUTHENTICATED, "invalid_token", "authorization is not a Bearer token"
                    )
                token = rest.strip()
                break
        if token is not None and "jwt" in self.mode:
            try:
                return self.verifier.verify(token)  # type: ignore[union-attr]
            except InvalidToken as exc:
                raise Denied(grpc.StatusCode.UNAUTHENTICATED, "invalid_token", str(exc)) from None
        if "mtls" in self.mode:
            auth_context = context.auth_context() or {}
            if auth_context.get("x509_common_name") or auth_context.get("x509_subject_alternative_name"):
                principal = self.certificates.principal(auth_context)  # type: ignore[union-attr]
                if principal is None:
                    raise Denied(
                        grpc.StatusCode.UNAUTHENTICATED,
                        "unknown_certificate",
                        "the client certificate is not mapped to a role (by its name and issuing CA)",
                    )
                return principal
        raise Denied(
            grpc.StatusCode.UNAUTHENTICATED,
            "missing_credentials",
            "credentials required: authorization: Bearer <token>"
            if "jwt" in self.mode
            else "credentials required: a client certificate",
        )

    # -- may they --------------------------------------------------------------------------------
    def authorize(self, rule: Rule | None, principal: Principal, request: Any) -> None:
        if rule is None:
            raise Denied(grpc.StatusCode.PERMISSION_DENIED, "no_policy", "no access rule for this method")
        if not rule.allows_role(principal.role):
            raise Denied(
                grpc.StatusCode.PERMISSION_DENIED, "wrong_role", f"role {principal.role} may not call this method"
            )
        if (
            principal.role == "ENTERPRISE"
            and rule.enterprise_field
            and not rule.public
            and field_value(request, rule.enterprise_field) != principal.credit_code
        ):
            raise Denied(
                grpc.StatusCode.PERMISSION_DENIED,
                "wrong_firm",
                f"{rule.enterprise_field} is not the caller's credit code",
            )

    async def intercept_service(self, continuation: Callable, handler_call_details: Any) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        service, method = split_method(handler_call_details.method)
        rule = self.policy.rule(service, method)
        outer = self

        async def check(request: Any, context: Any) -> Principal | None:
            if rule is not None and rule.public:
                return None
            principal: Principal | None = None
            try:
                principal = outer.authenticate(context)
                outer.authorize(rule, principal, request)
            except Denied as refused:
                deny(service, method, refused.reason, principal, refused.detail)
                await context.abort(refused.code, refused.detail)
            return principal

        # Methods with streaming requests (reflection) are checked on the call,
        # without a request to look into (no enterprise field rules apply).
        @contextlib.asynccontextmanager
        async def checked(request: Any, context: Any) -> Any:
            principal = await check(request, context)
            with acting_as(principal):
                yield

        return wrap_handler(handler, checked)


async def check_firm(context: Any, credit_code: str, service: str, method: str) -> None:
    """For rules with ``enterprise: servicer``: after loading a record, abort
    with PERMISSION_DENIED unless the caller may see ``credit_code``'s data."""
    from subsidy.platform.security.identity import current, firm_allowed

    if not firm_allowed(credit_code):
        deny(service, method, "wrong_firm", current(), "the record belongs to another firm")
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "this record belongs to another firm")
