"""Issue 17, item 1b: an event notify cannot build a message from is a bad
event, not a delivery failure. An application id with CR/LF (as a producer
before the identifier grammar could have written it) makes the e-mail's
headers raise ValueError; that record is dead-lettered once, with the
reason, and the next record of the partition is delivered — the partition
does not rewind forever. (Since the decoders check the identifier grammar,
such a record is refused before a message is built; the builder's defence
stays for events that get past a decoder.)"""

from __future__ import annotations

import dataclasses
import threading
import time
from types import SimpleNamespace

import pytest
from kafka import TopicPartition
from notify_fakes import FakeChannel, FakeFirms, FakeLog, decision, firm_record

from subsidy.contracts import topics
from subsidy.platform.consumer import KafkaRecordLoop
from subsidy.services.notify import handlers
from subsidy.services.notify.adapters.channels import MailDirEmail
from subsidy.services.notify.adapters.kafka import NotifyHandler
from subsidy.services.notify.model import DeliveryFailed
from subsidy.v1 import events_pb2

TOPIC = topics.DECISIONS.name
P0 = TopicPartition(TOPIC, 0)
CRLF_ID = "SJ-2025-7100\r\nBcc: x@evil"


class FakeConsumer:
    """One scripted batch, then nothing; seeks are recorded (a rewind)."""

    def __init__(self, batch):
        self.batches = [batch]
        self.commits: list[dict] = []
        self.seeks: list = []
        self.positions: dict = {}
        self.polled = threading.Event()

    def poll(self, timeout_ms=0, max_records=None):
        if not self.batches:
            self.polled.set()
            time.sleep(0.005)
            return {}
        batch = self.batches.pop(0)
        for tp, records in batch.items():
            self.positions[tp] = records[-1].offset + 1
        return batch

    def commit(self, offsets, timeout_ms=None):
        self.commits.append({tp: meta.offset for tp, meta in offsets.items()})

    def seek(self, tp, offset):
        self.seeks.append((tp, offset))
        self.positions[tp] = offset

    def assignment(self):
        return {P0}

    def end_offsets(self, tps, timeout_ms=None):
        return {tp: self.positions.get(tp, 0) for tp in tps}

    def position(self, tp, timeout_ms=None):
        return self.positions.get(tp, 0)

    def close(self, autocommit=True):
        pass


class FakeProducer:
    def __init__(self):
        self.sent: list = []

    def send(self, topic, key=None, value=None, headers=None):
        self.sent.append((topic, key, value, headers))
        return SimpleNamespace(get=lambda timeout=None: None)

    def flush(self, timeout=None):
        pass

    def close(self, timeout=None):
        pass


def _record(offset, message):
    value = message.SerializeToString()
    return SimpleNamespace(topic=TOPIC, partition=0, offset=offset, key=b"k", value=value, headers=[])


def _deps(tmp_path, webhook):
    return handlers.Deps(
        firms=FakeFirms(firm_record()),
        log=FakeLog(),
        channels=[MailDirEmail(tmp_path / "mail", "noreply@example.cn"), webhook],
        titles={},
        attempts=3,
        backoff_s=0,
        sleep=lambda s: None,
    )


def test_a_message_that_cannot_be_built_is_a_permanent_failure_of_that_channel(tmp_path):
    webhook = FakeChannel("webhook", "webhook_url")
    deps = _deps(tmp_path, webhook)
    # The decoder refuses such an id now (subsidy/contracts/events.py); the
    # builder's own defence is tested on an event that got past it.
    event = handlers.parse_decision(decision(app="SJ-2025-7100").SerializeToString())
    event = dataclasses.replace(event, fact=dataclasses.replace(event.fact, application_id=CRLF_ID))
    with pytest.raises(DeliveryFailed) as failed:
        handlers.notify(deps, event)
    [(channel, error)] = failed.value.failures
    assert channel == "email" and "permanent" in error and "ValueError" in error
    assert "after 3 attempts" not in error  # not retried: the same event builds the same message
    # the other channel was still tried, and delivered
    assert len(webhook.delivered) == 1


def test_a_bad_event_is_dead_lettered_once_and_the_next_record_of_the_partition_is_delivered(tmp_path):
    webhook = FakeChannel("webhook", "webhook_url")
    deps = _deps(tmp_path, webhook)
    consumer = FakeConsumer({P0: [_record(0, decision(app=CRLF_ID)), _record(1, decision(app="SJ-2025-7105"))]})
    producer = FakeProducer()
    loop = KafkaRecordLoop(
        "notify",
        NotifyHandler(deps),
        "unused",
        topics=[TOPIC],
        group_id="g",
        dlq_topic=topics.NOTIFICATIONS_DLQ.name,
        source=handlers.SOURCE,
        max_backoff=0.01,
        consumer_factory=lambda: consumer,
        producer_factory=lambda: producer,
    )
    loop.start()
    try:
        deadline = time.monotonic() + 5
        while not consumer.polled.is_set():
            assert time.monotonic() < deadline, "the loop did not get past the batch"
            time.sleep(0.005)
    finally:
        loop.stop()
    [(topic, _key, value, _headers)] = producer.sent
    letter = events_pb2.DeadLetter.FromString(value)
    assert topic == topics.NOTIFICATIONS_DLQ.name
    # refused by the decoder (the identifier grammar), before any message is built
    assert letter.source_offset == 0 and "application_id" in letter.error and "not an identifier" in letter.error
    assert "\r" not in letter.error and "\n" not in letter.error
    assert consumer.seeks == [], "no rewind: the bad record is not retried"
    assert consumer.commits[-1] == {P0: 2}
    # the next record was delivered on both channels
    assert webhook.delivered[-1][0].event_id == "decision:SJ-2025-7105@2024.1+abc"
    assert len(list((tmp_path / "mail").glob("*.eml"))) == 1
