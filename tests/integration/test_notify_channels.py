"""notify's adapters against real servers on 127.0.0.1: SMTP (aiosmtpd),
a webhook receiver and an SMS gateway (aiohttp), the .eml directory, and
the notification log on SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json

import pytest

from subsidy.platform.db import Database
from subsidy.services.notify import model
from subsidy.services.notify.adapters.channels import MailDirEmail, SmsGateway, SmtpEmail, Webhook
from subsidy.services.notify.adapters.store import SqlNotificationLog
from subsidy.services.notify.model import DeliveryError, Notification, PermanentDeliveryError

from .test_notify_support import SECRET, HttpSink, SmtpSink, database_url

pytestmark = pytest.mark.integration


def notification(channel="email", event_id="decision:SJ-1@v1"):
    return Notification(
        id=model.notification_id(event_id, channel),
        event_id=event_id,
        kind=model.DECISION,
        channel=channel,
        credit_code="91310117MA1K7D2E8N",
        subject="【松江区工业互联网专项资金】申请 SJ-1 评审结果：符合支持条件",
        body="上海泗泾智造示范工厂有限公司：\n\n最高支持金额：2,962,962.96元\n",
        sms="评审结果：符合支持条件",
        data={"clause": "2", "max_award_fen": 296296296},
    )


def test_an_email_reaches_a_real_smtp_server_with_a_chinese_subject_and_body():
    with SmtpSink() as smtp:
        n = notification()
        SmtpEmail(smtp.url, "subsidy@songjiang.example.cn").send(n, "wang.wu@example.cn")
        [envelope] = smtp.envelopes
        assert envelope.rcpt_tos == ["wang.wu@example.cn"] and envelope.mail_from == "subsidy@songjiang.example.cn"
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert message["Subject"] == n.subject
        assert "2,962,962.96元" in message.get_content()
        assert message["Message-ID"] == f"<{n.id}@subsidy.songjiang.example.cn>"
        assert message.get_content_charset() == "utf-8"


def test_an_unreachable_smtp_server_is_a_retryable_error_without_the_address():
    from subsidy_dev import free_port

    channel = SmtpEmail(f"smtp://127.0.0.1:{free_port()}", "subsidy@songjiang.example.cn", timeout=2)
    with pytest.raises(DeliveryError) as caught:
        channel.send(notification(), "wang.wu@example.cn")
    assert not isinstance(caught.value, PermanentDeliveryError) and "wang.wu" not in str(caught.value)


def test_smtp_urls_select_plain_starttls_or_tls():
    plain = SmtpEmail("smtp://127.0.0.1:2525", "a@b")  # plain only to a loopback relay
    assert (plain.starttls, plain.tls) == (False, False)
    assert SmtpEmail("smtp+starttls://u:p@h", "a@b").starttls and SmtpEmail("smtp+starttls://h", "a@b").port == 587
    assert SmtpEmail("smtp://h:25?starttls=true", "a@b").starttls
    assert SmtpEmail("smtps://h", "a@b").tls and SmtpEmail("smtps://h", "a@b").port == 465
    with pytest.raises(ValueError):
        SmtpEmail("http://h", "a@b")


def test_without_smtp_each_email_is_an_eml_file_in_the_mail_directory(tmp_path):
    n = notification()
    MailDirEmail(tmp_path / "mail", "subsidy@songjiang.example.cn").send(n, "wang.wu@example.cn")
    [path] = (tmp_path / "mail").iterdir()
    assert path.name == f"{n.id}.eml"
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message["Subject"] == n.subject and "2,962,962.96元" in message.get_content()


def test_a_webhook_is_posted_as_json_with_a_valid_signature_and_the_idempotency_key():
    with HttpSink() as hook:
        n = notification("webhook")
        Webhook(SECRET, allow_http_loopback=True).send(n, hook.url("/firms/hook"))
        [request] = hook.requests
        body = request["body"]
        signed = request["headers"]["X-Subsidy-Timestamp"].encode() + b"." + body
        expected = "sha256=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(request["headers"]["X-Subsidy-Signature"], expected)
        assert request["headers"]["Idempotency-Key"] == n.id
        payload = json.loads(body)
        assert payload["notification_id"] == n.id and payload["subject"] == n.subject
        assert payload["data"]["max_award_fen"] == 296296296


def test_a_webhook_answering_5xx_is_retryable_and_4xx_permanent():
    with HttpSink(status=503) as hook:
        with pytest.raises(DeliveryError) as caught:
            Webhook(SECRET, allow_http_loopback=True).send(notification("webhook"), hook.url("/x"))
        assert not isinstance(caught.value, PermanentDeliveryError) and "503" in str(caught.value)
        hook.status = 400
        with pytest.raises(PermanentDeliveryError):
            Webhook(SECRET, allow_http_loopback=True).send(notification("webhook"), hook.url("/x"))
        assert "127.0.0.1" not in str(caught.value)


def test_the_sms_gateway_receives_the_phone_and_the_short_text():
    with HttpSink() as gateway:
        n = notification("sms")
        SmsGateway(gateway.url("/sms")).send(n, "+86-21-5555-0199")
        [request] = gateway.requests
        assert request["path"] == "/sms"
        assert json.loads(request["body"]) == {"id": n.id, "to": "+86-21-5555-0199", "text": "评审结果：符合支持条件"}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_notification_log_records_once(kind, tmp_path, request):
    url = database_url(kind, tmp_path, request.getfixturevalue("postgres_url") if kind == "postgresql" else None)
    db = Database(url, store="notify")
    try:
        store = SqlNotificationLog(db)
        store.create_schema()
        store.create_schema()  # idempotent
        n = notification()
        assert not store.was_sent(n.id)
        store.record_sent(n, "ab" * 16, "2026-01-01T00:00:00.000+00:00")
        store.record_sent(n, "ab" * 16, "2026-01-01T00:00:01.000+00:00")  # a second record is a no-op
        assert store.was_sent(n.id) and store.sent_for_event(n.event_id) == [("email", n.id)]
    finally:
        db.close()
