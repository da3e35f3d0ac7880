"""The console as a process: `python -m subsidy.services.console` serves the
pages and a gRPC health check, stops on SIGTERM with status 0, and refuses
to start (status 2, the variable named) on settings that cannot work. And
the gRPC adapter's translation of the services' refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from subsidy.services.console.adapters.grpc import translate
from subsidy.services.console.model import Conflict, Forbidden, FormError, NotFound, SignedOut, Unavailable
from tests.unit.console.fakes import AUDIENCE, IDENTITIES, ISSUER, KID, make_harness

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def console_env(tmp_path) -> dict[str, str]:
    settings = make_harness(tmp_path).console.settings
    return {
        **os.environ,
        "SUBSIDY_DEV_MODE": "1",
        "SUBSIDY_CONSOLE_HTTP_ADDRESS": f"127.0.0.1:{free_port()}",
        "SUBSIDY_CONSOLE_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
        "SUBSIDY_CONSOLE_METRICS_ADDRESS": "off",
        "SUBSIDY_CONSOLE_SESSION_SECRET": "p" * 40,
        "SUBSIDY_CONSOLE_AUTH_JWKS_FILE": settings.jwks_file,
        "SUBSIDY_CONSOLE_AUTH_AUDIENCE": AUDIENCE,
        "SUBSIDY_CONSOLE_AUTH_ISSUER": ISSUER,
        "SUBSIDY_CONSOLE_DEV_SIGNING_KEY_FILE": settings.dev_signing_key_file,
        "SUBSIDY_CONSOLE_DEV_KEY_ID": KID,
        "SUBSIDY_CONSOLE_DEV_IDENTITIES": json.dumps(IDENTITIES),
    }


def test_serves_pages_and_health_and_stops_cleanly_on_sigterm(tmp_path):
    env = console_env(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "subsidy.services.console"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        with grpc.insecure_channel(env["SUBSIDY_CONSOLE_GRPC_ADDRESS"]) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                        break
                except grpc.RpcError:
                    pass
                assert process.poll() is None and time.monotonic() < deadline, "console did not become SERVING"
                time.sleep(0.2)
        page = httpx.get(f"http://{env['SUBSIDY_CONSOLE_HTTP_ADDRESS']}/signin", timeout=10)
        assert page.status_code == 200 and "张敏" in page.text
        assert "server" not in page.headers  # uvicorn's banner off
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"SUBSIDY_CONSOLE_SESSION_SECRET": "short"}, "SUBSIDY_CONSOLE_SESSION_SECRET"),
        ({"SUBSIDY_DEV_MODE": ""}, "SUBSIDY_DEV_MODE=1"),
        ({"SUBSIDY_CONSOLE_AUTH_JWKS_FILE": ""}, "SUBSIDY_CONSOLE_AUTH_JWKS_FILE"),
    ],
)
def test_refuses_to_start_naming_the_setting(tmp_path, change, named):
    env = {**console_env(tmp_path), **change}
    done = subprocess.run(
        [sys.executable, "-m", "subsidy.services.console"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and named in done.stderr


class FakeRpcError(grpc.RpcError):
    def __init__(self, code, details=""):
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


@pytest.mark.parametrize(
    ("code", "details", "error", "text"),
    [
        (grpc.StatusCode.UNAUTHENTICATED, "expired", SignedOut, "重新登录"),
        (grpc.StatusCode.PERMISSION_DENIED, "four-eyes: same subject", Forbidden, "four-eyes"),
        (grpc.StatusCode.NOT_FOUND, "no item", NotFound, "未找到"),
        (grpc.StatusCode.FAILED_PRECONDITION, "item is closed", Conflict, "当前状态下不能"),
        (
            grpc.StatusCode.INVALID_ARGUMENT,
            "amount_fen: above the ceiling",
            FormError,
            "核定金额（元）：服务不接受：above",
        ),
        (grpc.StatusCode.UNAVAILABLE, "", Unavailable, "暂时不可用"),
        (grpc.StatusCode.INTERNAL, "boom", Unavailable, "INTERNAL"),
    ],
)
def test_refusals_of_the_services_in_chinese(code, details, error, text):
    translated = translate(FakeRpcError(code, details), "审核结论")
    assert isinstance(translated, error) and text in translated.message
