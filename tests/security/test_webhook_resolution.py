"""Webhook hosts that resolve to a non-public address are never called
(issue 17, item 5; docs/security.md): notify resolves the host once, checks
every address, and connects to a checked address with the host's name as
SNI, certificate name and Host header, so the name cannot be re-pointed
between the check and the connection (DNS rebinding)."""

from __future__ import annotations

import http.server
import socket
import ssl
import threading

import pytest

from subsidy.services.notify.adapters.channels import Webhook, is_public_address
from subsidy.services.notify.model import DeliveryError, Notification, PermanentDeliveryError

HOST = "hooks.example.cn"


def notification() -> Notification:
    return Notification(
        id="n-1",
        event_id="e-1",
        kind="decision",
        credit_code="91310117313Q6C3D6G",
        channel="webhook",
        subject="决定",
        body="正文",
        sms="短信",
        data={},
    )


class Listener:
    """A TCP listener on 127.0.0.1 that only counts connections."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def listener():
    lst = Listener()
    yield lst
    lst.close()


class TlsReceiver:
    """An HTTPS receiver on 127.0.0.1 serving ``cert``; records the SNI name,
    the Host header and the body of each POST."""

    def __init__(self, cert: str, key: str):
        self.posts: list[tuple[str | None, str, bytes]] = []
        self.sni: list[str | None] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append((receiver.sni[-1] if receiver.sni else None, self.headers["Host"], body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.sni_callback = lambda sock, name, ctx: self.sni.append(name)
        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def stub(answers: dict[str, list[str]], calls: list[str] | None = None):
    """A resolver at the adapter's boundary: no DNS, no /etc/hosts."""

    def resolver(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[host]

    return resolver


def test_localhost_over_https_is_refused_and_never_connected(listener):
    """The real resolver: ``localhost`` resolves to loopback."""
    hook = Webhook("secret")
    with pytest.raises(PermanentDeliveryError, match="non-public address") as refused:
        hook.send(notification(), f"https://localhost:{listener.port}/hook")
    assert "localhost" not in str(refused.value) and "127.0.0.1" not in str(refused.value)
    assert listener.accepted == 0


@pytest.mark.parametrize(
    "addresses",
    [
        ["127.0.0.1"],
        ["10.1.2.3"],
        ["172.16.0.9"],
        ["192.168.1.1"],
        ["169.254.169.254"],  # cloud metadata
        ["100.64.0.1"],  # carrier-grade NAT
        ["0.0.0.0"],
        ["224.0.0.1"],
        ["::1"],
        ["fe80::1%eth0"],
        ["fd00::5"],
        ["::ffff:127.0.0.1"],  # IPv4-mapped loopback
        ["64:ff9b::a00:1"],  # NAT64 of 10.0.0.1
        ["2002:7f00:1::1"],  # 6to4 of 127.0.0.1
        ["203.0.113.7"],  # documentation
        ["8.8.8.8", "127.0.0.1"],  # one bad address among good ones
    ],
)
def test_a_name_resolving_to_a_non_public_address_is_refused(addresses, listener):
    calls: list[str] = []
    hook = Webhook("secret", resolver=stub({HOST: addresses}, calls))
    with pytest.raises(PermanentDeliveryError, match="non-public address"):
        hook.send(notification(), f"https://{HOST}:{listener.port}/hook")
    assert calls == [HOST]
    assert listener.accepted == 0


def test_an_ip_literal_is_checked_like_a_name(listener):
    hook = Webhook("secret")
    with pytest.raises(PermanentDeliveryError, match="non-public address"):
        hook.send(notification(), f"https://127.0.0.1:{listener.port}/hook")
    assert listener.accepted == 0


def test_public_addresses_are_public():
    for a in ("8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8", "64:ff9b::808:808"):
        assert is_public_address(a), a
    for a in ("not-an-ip", "", "127.0.0.1", "::", "198.18.0.1", "255.255.255.255", "ff02::1"):
        assert not is_public_address(a), a


def test_a_name_that_does_not_resolve_is_a_transient_failure(listener):
    hook = Webhook("secret", resolver=stub({}))
    with pytest.raises(DeliveryError, match="did not resolve") as failure:
        hook.send(notification(), f"https://{HOST}:{listener.port}/hook")
    assert not isinstance(failure.value, PermanentDeliveryError)


@pytest.fixture
def receiver(pki):
    issued = pki.ca.issue(HOST, server=True, sans=(HOST,))
    r = TlsReceiver(pki.write("hook.crt", issued.cert), pki.write("hook.key", issued.key))
    yield r
    r.close()


def trusting(pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=pki.write("hook-ca.crt", pki.ca.pem))


def test_the_connection_goes_to_the_checked_address_with_the_names_sni_and_host(pki, receiver):
    """Resolved once: a rebinding resolver's second answer is never asked for.
    Loopback is allowed here only so that a receiver on this machine stands
    in for a public one (the check itself is tested above)."""
    answers = iter([["127.0.0.1"], ["10.9.9.9"]])
    calls: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    checked: list[str] = []

    def allow_loopback_only(address: str) -> bool:
        checked.append(address)
        return address == "127.0.0.1"

    hook = Webhook("secret", resolver=rebinding, address_allowed=allow_loopback_only, tls_context=trusting(pki))
    hook.send(notification(), f"https://{HOST}:{receiver.port}/firms/hook?x=1")
    assert calls == [HOST] and checked == ["127.0.0.1"]
    assert len(receiver.posts) == 1
    sni, host_header, body = receiver.posts[0]
    assert sni == HOST
    assert host_header == f"{HOST}:{receiver.port}"
    assert b'"notification_id":"n-1"' in body


def test_a_certificate_for_another_name_is_refused(pki):
    other = pki.ca.issue("elsewhere.example.cn", server=True, sans=("elsewhere.example.cn",))
    r = TlsReceiver(pki.write("other.crt", other.cert), pki.write("other.key", other.key))
    try:
        hook = Webhook(
            "secret",
            resolver=stub({HOST: ["127.0.0.1"]}),
            address_allowed=lambda a: True,
            tls_context=trusting(pki),
        )
        with pytest.raises(PermanentDeliveryError, match="certificate does not verify"):
            hook.send(notification(), f"https://{HOST}:{r.port}/hook")
        assert r.posts == []
    finally:
        r.close()


def test_a_redirect_from_the_pinned_receiver_is_not_followed(pki):
    issued = pki.ca.issue(HOST, server=True, sans=(HOST,))

    r = TlsReceiver(pki.write("redir.crt", issued.cert), pki.write("redir.key", issued.key))
    handler = r.server.RequestHandlerClass

    def redirect(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        r.posts.append((None, self.headers["Host"], b""))
        self.send_response(307)
        self.send_header("Location", "https://127.0.0.1:1/steal")
        self.end_headers()

    handler.do_POST = redirect
    try:
        hook = Webhook(
            "secret", resolver=stub({HOST: ["127.0.0.1"]}), address_allowed=lambda a: True, tls_context=trusting(pki)
        )
        with pytest.raises(PermanentDeliveryError, match="HTTP 307: redirects are not followed"):
            hook.send(notification(), f"https://{HOST}:{r.port}/hook")
        assert len(r.posts) == 1
    finally:
        r.close()
