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
            Webhook("s").send(_notification(), hook + "/firms/hook")
        assert len(hook_calls) == 1
        assert target_calls == [], "the redirect target must never be called (with the signature headers)"
        assert "127.0.0.1" not in str(failure.value) and "/internal" not in str(failure.value)
