"""No tests here: helpers for the notify integration tests: a real SMTP
server (aiosmtpd), real HTTP servers (aiohttp) for webhooks and the SMS
gateway, the service run in-process, and event producers."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import threading
import uuid
from pathlib import Path
from typing import Any

import psycopg
from aiohttp import web
from aiosmtpd.controller import Controller
from kafka import KafkaProducer

from subsidy.contracts import cloudevents, topics
from subsidy.platform import topics as platform_topics
from subsidy.services.notify.bootstrap import NotifyApp
from subsidy.services.notify.config import Settings
from subsidy_dev import free_port

from .running import RunningApp, migrate, wait_for

ROOT = Path(__file__).resolve().parents[2]
FIRM = "91310117MA1K7D2E8N"  # 上海泗泾智造示范工厂有限公司, in demo/registry.json
SECRET = "test-webhook-secret"
TYPE_PAYOUT = "cn.gov.songjiang.subsidy.payout.v1"


def new_id(prefix: str = "NT") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def database_url(kind: str, tmp_path: Path, postgres_url: str | None) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'notify.db'}"
    schema = f"notify_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in postgres_url else "?"
    return f"{postgres_url}{sep}options=-csearch_path%3D{schema}"


class SmtpSink:
    """A real SMTP server on 127.0.0.1 (aiosmtpd's Controller) keeping what it receives."""

    def __init__(self):
        self.envelopes: list = []
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.controller.port}"

    def messages(self) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(e.content, policy=email.policy.default) for e in self.envelopes]

    def with_header(self, name: str, value: str) -> list:
        return [m for m in self.messages() if m.get(name) == value]

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


class HttpSink:
    """A real aiohttp server on 127.0.0.1 answering every POST with ``status``."""

    def __init__(self, status: int = 200):
        self.status = status
        self.requests: list[dict[str, Any]] = []
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
        return web.json_response({"ok": self.status < 400}, status=self.status)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def with_key(self, key: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["headers"].get("Idempotency-Key") == key]

    def __enter__(self) -> HttpSink:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def registry_file(
    tmp_path: Path, webhook_url: str, phone: str = "+86-21-5555-0199", mail: str = "caiwu.li@example.cn"
) -> Path:
    """demo/registry.json with FIRM's contacts pointing at the test servers."""
    doc = json.loads((ROOT / "demo" / "registry.json").read_text(encoding="utf-8"))
    for firm in doc["firms"]:
        if firm["credit_code"] == FIRM:
            firm["contacts"] = {"email": mail, "phone": phone, "webhook_url": webhook_url}
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path


def settings(bootstrap: str, db_url: str, at_end: bool = True, **overrides: Any) -> Settings:
    base = dict(
        kafka_bootstrap=bootstrap,
        grpc_address="127.0.0.1:0",
        database_url=db_url,
        consumer_group=f"it-notify-{uuid.uuid4().hex[:8]}",
        webhook_secret=SECRET,
        attempts=3,
        retry_backoff_s=0.05,
        retry_max_backoff_s=0.2,
        metrics_address="",
        grace_s=2.0,
        health_interval_s=0.2,
    )
    base.update(overrides)
    if at_end:
        group_at_end(bootstrap, base["consumer_group"])
    return Settings(**base)


class RunningNotify(RunningApp):
    """``with RunningNotify(settings) as svc:`` the service on its own event loop in a thread."""

    def __init__(self, settings: Settings):
        super().__init__(lambda: NotifyApp(settings))
        self.settings = settings

    def __enter__(self) -> RunningNotify:
        migrate("notify", self.settings.database_url)  # as the migration Job does before a rollout
        super().__enter__()
        wait_for(lambda: self.app.consumer.running, timeout=30)
        return self


class Producer:
    def __init__(self, bootstrap: str):
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        self.trace_id = cloudevents.new_trace_id()

    def decision(self, message: Any) -> None:
        self._send(
            topics.DECISIONS.name,
            message.credit_code,
            message.decision_id,
            cloudevents.TYPE_DECISION_MADE,
            message.SerializeToString(),
        )

    def payout(self, message: Any) -> None:
        inner = getattr(message, message.WhichOneof("event"))
        self._send(topics.PAYOUTS.name, inner.credit_code, message.event_id, TYPE_PAYOUT, message.SerializeToString())

    def notice(self, message: Any, key: str = FIRM) -> None:
        """A NoticeEvent on subsidy.notices.v1 (key: the firm, as the review service keys it)."""
        self._send(topics.NOTICES.name, key, message.event_id, TYPE_PAYOUT, message.SerializeToString())

    def proposal(self, message: Any) -> None:
        """A ProposalEvent on subsidy.proposals.v1 (key: the firm, as intake keys it)."""
        self._send(
            topics.PROPOSALS.name,
            message.credit_code,
            message.event_id,
            "cn.gov.songjiang.subsidy.proposal.v1",
            message.SerializeToString(),
        )

    def raw(self, topic: str, value: bytes, key: str = FIRM) -> None:
        self._send(topic, key, new_id("raw"), TYPE_PAYOUT, value)

    def _send(self, topic: str, key: str, event_id: str, event_type: str, value: bytes) -> None:
        headers = cloudevents.headers(event_id, event_type, "/tests/notify", self.trace_id)
        self.producer.send(topic, key=key.encode(), value=value, headers=headers).get(timeout=30)

    def close(self) -> None:
        self.producer.close(timeout=5)


def group_at_end(bootstrap: str, group: str) -> str:
    """Commit ``group``'s offsets at the end of its input topics, so a test's
    service reads only what the test produces (not the session's history)."""
    from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition

    platform_topics.ensure_all(bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        parts = [
            TopicPartition(t, p)
            for t in (
                topics.DECISIONS.name,
                topics.PAYOUTS.name,
                topics.NOTICES.name,
                topics.REVIEWS.name,
                topics.PROPOSALS.name,
            )
            for p in (consumer.partitions_for_topic(t) or ())
        ]
        ends = consumer.end_offsets(parts)
        consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in ends.items()})
    finally:
        consumer.close()
    return group
