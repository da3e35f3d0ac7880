"""Production sign-in: OpenID Connect, authorization code with PKCE (S256),
through Authlib's client, against a small identity provider served over real
HTTP on loopback. The access token the provider issues is what the services
accept (aud, iss, role); the console verifies it before starting a session.
A wrong state, a wrong verifier or an access token the services would not
accept signs no one in."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import socket
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from subsidy.services.console.adapters.signin import oidc_client
from tests.unit.console.fakes import AUDIENCE, ISSUER, KID, make_harness

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CLIENT_ID = "subsidy-console"
CLIENT_SECRET = "console-secret-for-tests"


class Provider:
    """The district's identity provider, as far as the console uses it."""

    def __init__(self, key: Any, port: int):
        self.key = key
        self.issuer = f"http://127.0.0.1:{port}"
        self.codes: dict[str, dict[str, str]] = {}
        self.refused: list[str] = []
        self.access_claims: dict[str, Any] = {"role": "REVIEWER", "aud": AUDIENCE, "iss": ISSUER}
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
        jwk.update(kid=KID, use="sig", alg="ES256")
        self.jwks = {"keys": [jwk]}
        self.app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.metadata),
                Route("/jwks", self.keys),
                Route("/token", self.token, methods=["POST"]),
            ]
        )

    async def metadata(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "id_token_signing_alg_values_supported": ["ES256"],
                "code_challenge_methods_supported": ["S256"],
            }
        )

    async def keys(self, request: Request) -> JSONResponse:
        return JSONResponse(self.jwks)

    def authorize(self, query: dict[str, str]) -> str:
        """What the provider does after the person signed in there: a code for this request."""
        code = secrets.token_urlsafe(16)
        self.codes[code] = query
        return code

    async def token(self, request: Request) -> JSONResponse:
        form = dict(await request.form())
        basic = request.headers.get("authorization", "")
        client = base64.b64decode(basic.removeprefix("Basic ")).decode() if basic.startswith("Basic ") else ""
        if client != f"{CLIENT_ID}:{CLIENT_SECRET}":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        asked = self.codes.pop(str(form.get("code")), None)
        if asked is None or form.get("grant_type") != "authorization_code":
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        verifier = str(form.get("code_verifier") or "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if challenge != asked["code_challenge"] or form.get("redirect_uri") != asked["redirect_uri"]:
            self.refused.append("PKCE")
            return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, status_code=400)
        now = int(time.time())
        sign = lambda claims: jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": KID})  # noqa: E731
        access = {"sub": "reviewer-wu", "name": "吴静（区科委）", "iat": now, "exp": now + 600, **self.access_claims}
        identity = {"sub": "reviewer-wu", "name": "吴静（区科委）", "iss": self.issuer, "aud": CLIENT_ID}
        identity.update(iat=now, exp=now + 600, nonce=asked["nonce"])
        return JSONResponse(
            {"access_token": sign(access), "id_token": sign(identity), "token_type": "Bearer", "expires_in": 600}
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def signed(tmp_path):
    harness = make_harness(tmp_path)
    key = serialization.load_pem_private_key((tmp_path / "signing-key.pem").read_bytes(), password=None)
    port = free_port()
    provider = Provider(key, port)
    server = uvicorn.Server(uvicorn.Config(provider.app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the test identity provider did not start"
        time.sleep(0.02)
    harness.console.oidc = oidc_client(provider.issuer, CLIENT_ID, CLIENT_SECRET, "openid profile")
    try:
        yield harness, provider
    finally:
        server.should_exit = True
        thread.join(5)


def start(harness) -> dict[str, str]:
    page = harness.client.get("/signin").text
    assert 'id="signin-oidc"' in page
    reply = harness.client.post("/signin/oidc", data={"csrf_token": harness.csrf()}, follow_redirects=False)
    assert reply.status_code == 302
    location = urlsplit(reply.headers["location"])
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert location.path == "/authorize"
    return query


def test_authorization_code_with_pkce_signs_the_person_in(signed):
    harness, provider = signed
    query = start(harness)
    assert query["response_type"] == "code" and query["client_id"] == CLIENT_ID
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) >= 43
    assert query["redirect_uri"] == "http://127.0.0.1:8080/auth/callback"
    assert query["state"] and query["nonce"] and "openid" in query["scope"]
    code = provider.authorize(query)
    reply = harness.client.get(f"/auth/callback?code={code}&state={query['state']}", follow_redirects=False)
    assert reply.status_code == 303, reply.text[:300]
    home = harness.client.get("/").text
    assert "吴静（区科委）" in home and "审核队列" in home
    assert harness.client.get("/review").status_code == 200
    assert harness.client.get("/finance/tranches").status_code == 403


def test_a_wrong_state_signs_no_one_in(signed):
    harness, provider = signed
    query = start(harness)
    code = provider.authorize(query)
    reply = harness.client.get(f"/auth/callback?code={code}&state=forged", follow_redirects=False)
    assert reply.status_code in (303, 401)
    assert harness.client.get("/", follow_redirects=False).status_code == 303
    assert code in provider.codes, "the code was never redeemed"


def test_a_wrong_verifier_signs_no_one_in(signed):
    harness, provider = signed
    query = start(harness)
    code = provider.authorize({**query, "code_challenge": "A" * 43})
    harness.client.get(f"/auth/callback?code={code}&state={query['state']}", follow_redirects=False)
    assert harness.client.get("/", follow_redirects=False).status_code == 303
    assert provider.refused == ["PKCE"]


def test_an_access_token_the_services_would_refuse_signs_no_one_in(signed):
    harness, provider = signed
    provider.access_claims = {"role": "REVIEWER", "aud": "another-api", "iss": ISSUER}
    query = start(harness)
    code = provider.authorize(query)
    harness.client.get(f"/auth/callback?code={code}&state={query['state']}", follow_redirects=False)
    assert harness.client.get("/", follow_redirects=False).status_code == 303
    provider.access_claims = {"role": "ROOT", "aud": AUDIENCE, "iss": ISSUER}
    query = start(harness)
    code = provider.authorize(query)
    reply = harness.client.get(f"/auth/callback?code={code}&state={query['state']}", follow_redirects=False)
    assert "身份令牌无效" in harness.client.get(reply.headers["location"]).text
    assert harness.client.get("/", follow_redirects=False).status_code == 303
    assert code not in provider.codes and provider.refused == []
