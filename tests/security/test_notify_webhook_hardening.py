"""notify's webhook delivery (issue 17, item 5): redirects are not followed,
plain http only to a loopback receiver when allowed, the signature covers a
timestamp. Real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from subsidy.services.notify import model
from subsidy.services.notify.adapters.channels import Webhook
from subsidy.services.notify.model import Notification, PermanentDeliveryError


def _notification() -> Notification:
    event_id = "decision:SJ-5@v1"
    return Notification(
        id=model.notification_id(event_id, "webhook"),
        event_id=event_id,
        kind=model.DECISION,
        channel="webhook",
        credit_code="91310117MA1K7D2E8N",
        subject="评审结果",
        body="您好",
        sms="您好",
        data={},
    )


@contextmanager
def _server(status: int, location: str = "") -> Iterator[tuple[str, list[dict]]]:
    calls: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            calls.append({"path": self.path, "headers": dict(self.headers), "body": self.rfile.read(length)})
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", calls
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_and_is_a_permanent_failure(status):
    with _server(200) as (target, target_calls), _server(status, target + "/internal") as (hook, hook_calls):
        with pytest.raises(PermanentDeliveryError, match=f"HTTP {status}") as failure:
            Webhook("s", allow_http_loopback=True).send(_notification(), hook + "/firms/hook")
        assert len(hook_calls) == 1
        assert target_calls == [], "the redirect target must never be called (with the signature headers)"
        assert "127.0.0.1" not in str(failure.value) and "/internal" not in str(failure.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.cn/firms/hook",
        "http://10.0.0.7/firms/hook",
        "http://[::ffff:10.0.0.7]/hook",
        "ftp://hooks.example.cn/x",
        "hooks.example.cn/x",
    ],
)
def test_a_non_https_address_to_a_remote_host_is_a_permanent_failure_even_when_loopback_http_is_on(url):
    with pytest.raises(PermanentDeliveryError, match="not an https:// URL") as failure:
        Webhook("s", allow_http_loopback=True).send(_notification(), url)
    assert "example" not in str(failure.value) and "10.0.0.7" not in str(failure.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_plain_http_to_loopback_only_when_allowed(host):
    with _server(200) as (hook, calls):
        url = hook.replace("127.0.0.1", host) + "/firms/hook"
        with pytest.raises(PermanentDeliveryError, match="SUBSIDY_NOTIFY_WEBHOOK_ALLOW_HTTP_LOOPBACK"):
            Webhook("s").send(_notification(), url)
        assert calls == []
        Webhook("s", allow_http_loopback=True).send(_notification(), url)
        assert len(calls) == 1


def test_loopback_hosts():
    from subsidy.services.notify.adapters.channels import is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.9.10", "::1", "localhost", "LOCALHOST"))
    assert not any(is_loopback(h) for h in ("10.0.0.1", "0.0.0.0", "localhost.example.cn", "128.0.0.1", "", None))


def test_the_signature_covers_a_timestamp_sent_beside_it_and_old_requests_are_rejected():
    import hashlib
    import hmac

    from subsidy.services.notify.adapters.channels import verify_signature

    with _server(200) as (hook, calls):
        Webhook(keys={"k1": "one"}, allow_http_loopback=True, clock=lambda: 1_767_225_600.7).send(
            _notification(), hook + "/firms/hook"
        )
    [request] = calls
    timestamp, body = request["headers"]["X-Subsidy-Timestamp"], request["body"]
    assert timestamp == "1767225600"
    expected = hmac.new(b"one", timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert request["headers"]["X-Subsidy-Signature"] == f"keyid=k1,sha256={expected}"

    header, keys = request["headers"]["X-Subsidy-Signature"], {"k1": "one"}
    assert verify_signature(header, body, keys, timestamp=timestamp, now=1_767_225_600 + 299)
    assert not verify_signature(header, body, keys, timestamp=timestamp, now=1_767_225_600 + 301)  # replayed late
    assert not verify_signature(header, body, keys, timestamp=timestamp, now=1_767_225_600 - 301)  # from the future
    assert not verify_signature(header, body, keys, timestamp="1767225700", now=1_767_225_700)  # timestamp swapped
    assert not verify_signature(header, body, keys, timestamp="", now=1_767_225_600)
