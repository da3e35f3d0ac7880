"""HttpRegistry against a real HTTP server on 127.0.0.1 (the standard
library's), including a platform that is down, failing or slow."""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import threading
import time

import pytest

from subsidy.platform.registry import HttpRegistry, RegistryUnavailable

FIRM = {
    "credit_code": "91310117MA1K7D2E8N",
    "name": "上海泗泾智造示范工厂有限公司",
    "kinds": ["INDUSTRIAL", "SME"],
    "registered_in_district": True,
    "tax_registered_in_district": True,
    "independent_legal_person": True,
    "contacts": {"email": "a@example.cn", "phone": "+86-21-5555-0000", "webhook_url": "https://hooks.example.cn/x"},
}


class Platform:
    """A fake government data platform: ``script`` is a list of behaviours
    for successive requests ('ok', 'fail', 'slow', 'garbage'); the last repeats."""

    def __init__(self):
        self.script = ["ok"]
        self.requests: list[str] = []
        platform = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                platform.requests.append(self.path)
                step = platform.script[min(len(platform.requests) - 1, len(platform.script) - 1)]
                if step == "slow":
                    time.sleep(1.0)
                if step == "fail":
                    self.send_response(503)
                    self.end_headers()
                    return
                code = self.path.rsplit("/", 1)[-1]
                if code != FIRM["credit_code"]:
                    self.send_response(404)
                    self.end_headers()
                    return
                body = b"{not json" if step == "garbage" else json.dumps(FIRM).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                # The client may have given up waiting (the slow case).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def platform():
    p = Platform()
    yield p
    p.close()


def registry(url, **kw):
    kw.setdefault("timeout", 0.5)
    kw.setdefault("backoff", 0.01)
    return HttpRegistry(url, **kw)


def test_a_known_firm_is_read_with_its_facts_and_contacts(platform):
    record = registry(platform.url).firm(FIRM["credit_code"])
    assert record.firm.name == FIRM["name"] and record.firm.kinds == ("INDUSTRIAL", "SME")
    assert record.contacts.email == "a@example.cn"
    assert platform.requests == [f"/firms/{FIRM['credit_code']}"]


def test_a_404_means_an_unknown_firm_and_is_not_retried(platform):
    assert registry(platform.url).firm("91310117000000019J") is None
    assert len(platform.requests) == 1


def test_a_5xx_is_retried_with_backoff_and_a_later_success_counts(platform):
    platform.script = ["fail", "fail", "ok"]
    sleeps = []
    record = HttpRegistry(platform.url, timeout=0.5, attempts=3, backoff=0.1, sleep=sleeps.append).firm(
        FIRM["credit_code"]
    )
    assert record is not None and len(platform.requests) == 3
    assert sleeps == [0.1, 0.2]


def test_a_platform_that_keeps_failing_is_unavailable_after_the_retries(platform):
    platform.script = ["fail"]
    with pytest.raises(RegistryUnavailable, match=r"HTTP 503 after 3 attempts"):
        registry(platform.url, attempts=3).firm(FIRM["credit_code"])
    assert len(platform.requests) == 3


def test_a_platform_that_is_down_is_unavailable_with_a_clear_message():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed
    with pytest.raises(RegistryUnavailable, match=r"government data platform is unavailable .*after 2 attempts"):
        registry(f"http://127.0.0.1:{port}", attempts=2).firm(FIRM["credit_code"])


def test_a_slow_platform_times_out_within_the_timeout_times_the_attempts(platform):
    platform.script = ["slow"]
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable, match="timed out"):
        registry(platform.url, timeout=0.2, attempts=2).firm(FIRM["credit_code"])
    assert time.monotonic() - started < 1.5


def test_an_answer_that_is_not_a_firm_is_unavailable_not_a_crash(platform):
    platform.script = ["garbage"]
    with pytest.raises(RegistryUnavailable, match="invalid data"):
        registry(platform.url).firm(FIRM["credit_code"])
