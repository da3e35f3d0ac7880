"""notify on the real broker: Decisions and PayoutEvents in; e-mail on a
real SMTP server, signed webhooks and SMS gateway calls out; replays send
nothing more; a webhook that always fails ends in the dead-letter topic
while the partition keeps moving."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from kafka import KafkaConsumer, TopicPartition
from unit.notify.notify_fakes import (
    cancelled,
    decision,
    due,
    grant,
    grant_payable,
    held,
    notice_published,
    objection_resolved,
    paid,
    proposal_created,
    proposal_expired,
    recovery_opened,
    reserved,
    reviewed,
    scheduled,
    tranche_held,
    tranche_released,
)

from subsidy.contracts import topics
from subsidy.services.notify import metrics, model
from subsidy.v1 import events_pb2

from .test_notify_support import (
    FIRM,
    SECRET,
    HttpSink,
    Producer,
    RunningNotify,
    SmtpSink,
    database_url,
    group_at_end,
    new_id,
    registry_file,
    settings,
    wait_for,
)

pytestmark = pytest.mark.integration

CHANNELS = ("email", "webhook", "sms")


def events_for(app: str) -> list:
    under_review = new_id("SJ")
    notice = notice_published(notice=f"N-{app}")
    for line in notice.notice_published.lines:
        line.application_id = f"{line.application_id}-{app}"
    return [
        decision(app=app),
        grant(app=app),
        scheduled(app=app, number=0),
        due(app=app, number=0),
        paid(app=app, number=0),
        scheduled(app=app, number=1),
        cancelled(app=app, number=1),
        # Review and the public notice (issue 12).
        held(app=under_review),
        reviewed(app=under_review),
        reserved(app=under_review),
        notice,
        objection_resolved(objection=f"O-{app}"),
        grant_payable(app=under_review),
        # Release gates, recovery and 免申即享 (issue 13).
        tranche_held(app=app, number=2),
        tranche_released(app=app, number=2),
        recovery_opened(app=app),
        proposal_created(proposal=f"P-{app}"),
        proposal_expired(proposal=f"P-{app}"),
    ]


def event_id(message) -> str:
    """The id notify gives the (first) notification of ``message``."""
    if message.DESCRIPTOR.name == "ProposalEvent":
        return message.event_id
    if hasattr(message, "decision_id"):
        return f"decision:{message.decision_id}"
    if message.WhichOneof("event") == "notice_published":
        return f"{message.event_id}/{FIRM}"  # this firm's lines; the other firm's are not this firm's
    return message.event_id


def produce(producer: Producer, messages) -> None:
    for m in messages:
        if hasattr(m, "decision_id"):
            producer.decision(m)
        elif m.DESCRIPTOR.name == "NoticeEvent":
            producer.notice(m)
        elif m.DESCRIPTOR.name == "ProposalEvent":
            producer.proposal(m)
        else:
            producer.payout(m)


def received(smtp: SmtpSink, hook: HttpSink, sms: HttpSink, eid: str) -> tuple[int, int, int]:
    return (
        len(smtp.with_header("X-Subsidy-Event-Id", eid)),
        len(hook.with_key(model.notification_id(eid, "webhook"))),
        len(sms.with_key(model.notification_id(eid, "sms"))),
    )


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_every_event_notifies_each_channel_once_and_a_replay_sends_nothing_more(
    kind, kafka_bootstrap, tmp_path, request
):
    url = database_url(kind, tmp_path, request.getfixturevalue("postgres_url") if kind == "postgresql" else None)
    app = new_id("SJ")
    messages = events_for(app)
    ids = [event_id(m) for m in messages]
    skipped_before = replayed_metric()
    with SmtpSink() as smtp, HttpSink() as hook, HttpSink() as sms:
        config = settings(
            kafka_bootstrap,
            url,
            smtp_url=smtp.url,
            sms_gateway_url=sms.url("/sms"),
            registry_file=str(registry_file(tmp_path, hook.url(f"/hooks/{FIRM}"))),
        )
        # A second group, positioned before the events: it replays them later.
        replay_group = group_at_end(kafka_bootstrap, f"{config.consumer_group}-replay")
        producer = Producer(kafka_bootstrap)
        try:
            with RunningNotify(config):
                produce(producer, messages)
                wait_for(lambda: all(received(smtp, hook, sms, eid) == (1, 1, 1) for eid in ids), timeout=40)

            mails = {m["X-Subsidy-Event-Id"]: m for m in smtp.messages()}
            decided = mails[ids[0]]
            assert "评审结果：符合支持条件" in decided["Subject"]
            body = decided.get_content()
            assert "第2条“鼓励培育行业性工业互联网平台”" in body and "2,962,962.96元" in body
            assert "第2条" in mails[ids[6]].get_content()  # the clause the cancellation carries
            assert "原因：企业已迁出松江区" in mails[ids[6]].get_content()
            assert "已转人工审核" in mails[ids[7]]["Subject"] and "审核通过" in mails[ids[8]]["Subject"]
            listed = mails[ids[10]].get_content()
            assert "N-" in mails[ids[10]]["Subject"] and "SJ-OTHER-1" not in listed and "上海别家" not in listed
            assert "异议不成立" in mails[ids[11]]["Subject"] and "资助可拨付" in mails[ids[12]]["Subject"]
            assert (
                "拨付已暂停" in mails[ids[13]]["Subject"]
                and "宽限期截止：2026年5月21日" in mails[ids[13]].get_content()
            )
            assert "暂停拨付已解除" in mails[ids[14]]["Subject"]
            assert "资金追回通知" in mails[ids[15]]["Subject"] and "追回金额：500,000元" in mails[ids[15]].get_content()
            assert "免申即享" in mails[ids[16]]["Subject"] and "确认截止：2026年4月1日" in mails[ids[16]].get_content()
            assert "已过期" in mails[ids[17]]["Subject"]
            for r in hook.requests:
                signed = r["headers"]["X-Subsidy-Timestamp"].encode() + b"." + r["body"]
                expected = "sha256=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
                assert hmac.compare_digest(r["headers"]["X-Subsidy-Signature"], expected)
            assert {json.loads(r["body"])["to"] for r in sms.requests} == {"+86-21-5555-0199"}

            # Replay: another consumer group over the same log reads every event again.
            sentinel = decision(app=new_id("SJ"))
            with RunningNotify(
                settings(
                    kafka_bootstrap,
                    url,
                    at_end=False,
                    consumer_group=replay_group,
                    smtp_url=smtp.url,
                    sms_gateway_url=sms.url("/sms"),
                    registry_file=config.registry_file,
                )
            ):
                produce(producer, [sentinel])
                wait_for(lambda: received(smtp, hook, sms, event_id(sentinel)) == (1, 1, 1), timeout=40)
                # Every replayed event's three notifications were found in the log and skipped.
                wait_for(lambda: replayed_metric() >= skipped_before + 3 * len(ids), timeout=40)
            assert all(received(smtp, hook, sms, eid) == (1, 1, 1) for eid in ids)
        finally:
            producer.close()


def replayed_metric() -> float:
    return sum(metrics.SKIPPED.labels(c, "replayed")._value.get() for c in CHANNELS)


def dead_letters(bootstrap: str, value: bytes, timeout: float = 20.0) -> list:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        tp = TopicPartition(topics.NOTIFICATIONS_DLQ.name, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        found: list = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not found:
            for batch in consumer.poll(timeout_ms=300).values():
                for r in batch:
                    letter = events_pb2.DeadLetter.FromString(r.value)
                    if letter.value == value:
                        found.append(letter)
        return found
    finally:
        consumer.close()


def test_a_webhook_that_always_fails_is_retried_then_dead_lettered_and_the_partition_moves_on(
    kafka_bootstrap, tmp_path
):
    failing, later = decision(app=new_id("SJ")), decision(app=new_id("SJ"))
    with SmtpSink() as smtp, HttpSink(status=503) as hook:
        config = settings(
            kafka_bootstrap,
            f"sqlite:///{tmp_path / 'notify.db'}",
            smtp_url=smtp.url,
            registry_file=str(registry_file(tmp_path, hook.url("/hook"), mail="li.si@example.cn")),
        )
        before = metrics.DEAD_LETTERS.labels(topics.DECISIONS.name, "notify")._value.get()
        failed_before = metrics.FAILED.labels("webhook")._value.get()
        producer = Producer(kafka_bootstrap)
        try:
            with RunningNotify(config):
                produce(producer, [failing])
                garbage = b"\xff\x00 not a protobuf " + new_id().encode()
                producer.raw(topics.PAYOUTS.name, garbage)
                produce(producer, [later])
                wait_for(lambda: smtp.with_header("X-Subsidy-Event-Id", event_id(later)), timeout=40)
                # The undecodable payout event (another topic, so no order with `later`) is dead-lettered too.
                assert dead_letters(kafka_bootstrap, garbage, timeout=30)
        finally:
            producer.close()
        # Three attempts at the failing event's webhook, the e-mail still sent.
        assert len(hook.with_key(model.notification_id(event_id(failing), "webhook"))) == 3
        assert len(smtp.with_header("X-Subsidy-Event-Id", event_id(failing))) == 1
        [letter] = dead_letters(kafka_bootstrap, failing.SerializeToString())
        assert letter.consumer == "notify" and "webhook: webhook: HTTP 503 after 3 attempts" in letter.error
        assert "example.cn" not in letter.error and "127.0.0.1" not in letter.error
        assert metrics.DEAD_LETTERS.labels(topics.DECISIONS.name, "notify")._value.get() >= before + 1
        assert metrics.FAILED.labels("webhook")._value.get() >= failed_before + 1
