"""notify: webhook signatures with rotating keys, SMTP with STARTTLS against
a real aiosmtpd server that requires it (certificate generated here)."""

from __future__ import annotations

import ssl
import time

import pytest
from aiosmtpd.controller import Controller
from integration.test_notify_support import HttpSink

from subsidy.services.notify.adapters.channels import SmtpEmail, Webhook, parse_keys, sign, verify_signature
from subsidy.services.notify.model import DeliveryError, Notification
from subsidy_dev import free_port


def _notification() -> Notification:
    return Notification(
        id="n-1",
        event_id="e-1",
        kind="decision",
        channel="email",
        credit_code="91310117313Q6C3D6G",
        subject="决定",
        body="您的申请已决定",
        sms="",
        data={},
    )


def test_the_active_key_signs_and_names_itself():
    hook = Webhook(keys=parse_keys("k2026=new-secret,k2025=old-secret"), active_key_id="k2026")
    body = b'{"x":1}'
    ts = str(int(time.time()))
    header = hook.signature(body, ts)
    assert header.startswith("keyid=k2026,sha256=")
    assert verify_signature(header, body, {"k2025": "old-secret", "k2026": "new-secret"}, timestamp=ts)
    assert not verify_signature(header, body, {"k2025": "old-secret"}, timestamp=ts)
    assert not verify_signature(header, b'{"x":2}', {"k2026": "new-secret"}, timestamp=ts)
    # rotation step: switch the active key, receivers holding both keep verifying
    older = Webhook(keys=parse_keys("k2026=new-secret,k2025=old-secret"), active_key_id="k2025")
    assert verify_signature(
        older.signature(body, ts), body, {"k2025": "old-secret", "k2026": "new-secret"}, timestamp=ts
    )
    assert "new-secret" not in repr(hook) and "old-secret" not in repr(hook)


def test_the_legacy_single_secret_keeps_its_format():
    hook = Webhook("legacy")
    ts = str(int(time.time()))
    assert hook.signature(b"{}", ts) == sign("legacy", ts.encode() + b".{}")
    assert verify_signature(hook.signature(b"{}", ts), b"{}", {}, legacy_secret="legacy", timestamp=ts)


@pytest.mark.parametrize("spec", ["novalue", "=x", "a b=x", "k=1,k=2"])
def test_bad_key_specs_are_refused(spec):
    with pytest.raises(ValueError):
        parse_keys(spec)


def test_the_active_key_must_exist():
    with pytest.raises(ValueError):
        Webhook(keys={"a": "s"}, active_key_id="b")


def test_a_real_receiver_verifies_with_any_listed_key():
    with HttpSink() as sink:
        hook = Webhook(keys=parse_keys("k2=two,k1=one"), allow_http_loopback=True)
        hook.send(_notification(), sink.url("/hook"))
        (request,) = sink.requests
        assert request["headers"]["X-Subsidy-Signature"].startswith("keyid=k2,")
        headers = request["headers"]
        assert verify_signature(
            headers["X-Subsidy-Signature"],
            request["body"],
            {"k1": "one", "k2": "two"},
            timestamp=headers["X-Subsidy-Timestamp"],
        )


class _Sink:
    def __init__(self):
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.fixture()
def starttls_server(pki):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.write("smtp.crt", pki.server.cert), pki.write("smtp.key", pki.server.key))
    sink = _Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port(), tls_context=context, require_starttls=True)
    controller.start()
    yield controller, sink
    controller.stop()


def test_smtp_starttls_delivers_with_a_verified_certificate(starttls_server, pki):
    controller, sink = starttls_server
    mail = SmtpEmail(
        f"smtp+starttls://localhost:{controller.port}", "from@example.cn", cafile=pki.write("smtp-ca.crt", pki.ca.pem)
    )
    mail.send(_notification(), "firm@example.cn")
    assert len(sink.envelopes) == 1


def test_smtp_starttls_refuses_an_untrusted_certificate(starttls_server):
    controller, sink = starttls_server
    mail = SmtpEmail(f"smtp+starttls://localhost:{controller.port}", "from@example.cn")  # system CAs only
    with pytest.raises(DeliveryError):
        mail.send(_notification(), "firm@example.cn")
    assert sink.envelopes == []


def test_smtp_without_starttls_is_refused_by_a_server_requiring_it(starttls_server):
    controller, sink = starttls_server
    with pytest.raises(DeliveryError):
        SmtpEmail(f"smtp://localhost:{controller.port}", "from@example.cn").send(_notification(), "firm@example.cn")
    assert sink.envelopes == []


def test_smtp_credentials_never_go_over_plaintext_to_a_remote_host():
    with pytest.raises(ValueError):
        SmtpEmail("smtp://user:pw@mail.example.cn:25", "from@example.cn")
