"""notify's settings: the webhook's plain-http-to-loopback switch and the
SMTP relay's transport (issue 17, item 5)."""

from __future__ import annotations

import pytest

from subsidy.services.notify.bootstrap import build_channels
from subsidy.services.notify.config import Settings

TLS = {"SUBSIDY_TLS_CERT_FILE": "/etc/tls/tls.crt", "SUBSIDY_TLS_KEY_FILE": "/etc/tls/tls.key"}
NOTIFY_TLS = {"SUBSIDY_NOTIFY_TLS_CERT_FILE": "/etc/tls/tls.crt", "SUBSIDY_NOTIFY_TLS_KEY_FILE": "/etc/tls/tls.key"}


@pytest.mark.parametrize(
    ("env", "allowed"),
    [
        ({}, True),  # auto, plaintext: make run, the tests
        (TLS, False),  # auto with TLS
        (NOTIFY_TLS, False),
        ({"SUBSIDY_NOTIFY_WEBHOOK_ALLOW_HTTP_LOOPBACK": "off"}, False),  # the cluster
        ({**TLS, "SUBSIDY_NOTIFY_WEBHOOK_ALLOW_HTTP_LOOPBACK": "ON"}, True),
        ({"SUBSIDY_NOTIFY_WEBHOOK_ALLOW_HTTP_LOOPBACK": "auto"}, True),
    ],
)
def test_plain_http_webhooks_to_loopback_follow_the_setting_and_auto_means_without_tls(env, allowed):
    settings = Settings.from_env(env)
    assert settings.webhook_http_loopback_allowed is allowed
    [webhook] = [
        c
        for c in build_channels(Settings.from_env({**env, "SUBSIDY_NOTIFY_WEBHOOK_SECRET": "s"}))
        if c.name == "webhook"
    ]
    assert webhook.allow_http_loopback is allowed


def test_an_unknown_value_is_a_config_error_naming_the_setting():
    with pytest.raises(ValueError, match="SUBSIDY_NOTIFY_WEBHOOK_ALLOW_HTTP_LOOPBACK"):
        Settings.from_env({"SUBSIDY_NOTIFY_WEBHOOK_ALLOW_HTTP_LOOPBACK": "yes"})


@pytest.mark.parametrize(
    "url", ["smtp://mail.example.cn:25", "smtp://10.1.2.3", "smtp://relay", "SMTP://relay.example.cn"]
)
def test_plain_smtp_to_a_remote_relay_is_refused_at_start_naming_the_setting(url):
    with pytest.raises(ValueError, match="SUBSIDY_NOTIFY_SMTP_URL") as refused:
        build_channels(Settings.from_env({"SUBSIDY_NOTIFY_SMTP_URL": url}))
    assert "smtps://" in str(refused.value) and "smtp+starttls://" in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "smtps://mail.example.cn",
        "smtp+starttls://u:p@mail.example.cn",
        "smtp://mail.example.cn:25?starttls=true",
        "smtp://127.0.0.1:2525",
        "smtp://localhost:25",
        "smtp://[::1]:25",
    ],
)
def test_tls_relays_and_a_loopback_relay_are_accepted(url):
    [email] = [c for c in build_channels(Settings.from_env({"SUBSIDY_NOTIFY_SMTP_URL": url})) if c.name == "email"]
    assert email.tls or email.starttls or email.host in ("127.0.0.1", "localhost", "::1")
