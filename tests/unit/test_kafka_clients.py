"""Every producer of ours batches and compresses the same way
(subsidy/platform/kafka_clients.py), and the codec is installed for both
client libraries, so every consumer of ours reads every topic."""

from __future__ import annotations

import aiokafka.codec
import kafka
import kafka.codec
import pytest

from subsidy.platform import kafka_clients
from subsidy.platform.consumer import KafkaRecordLoop
from subsidy.platform.outbox import OutboxRelay
from subsidy.services.eligibility.adapters.kafka import faust_settings
from subsidy.services.eligibility.config import Settings


class Captured(Exception):
    pass


@pytest.fixture
def producer_kwargs(monkeypatch):
    seen: dict = {}

    def fake_producer(**kwargs):
        seen.update(kwargs)
        raise Captured

    monkeypatch.setattr(kafka, "KafkaProducer", fake_producer)
    return seen


def test_the_codec_is_there_for_kafka_python_and_for_faust_s_aiokafka():
    assert kafka_clients.COMPRESSION == "lz4"
    assert kafka.codec.has_lz4(), "python-lz4 missing: kafka-python cannot read or write lz4 batches"
    assert aiokafka.codec.has_lz4(), "cramjam missing: eligibility (faust) cannot read or write lz4 batches"


def test_the_outbox_relays_batch_and_compress(producer_kwargs):
    relay = OutboxRelay(object(), "localhost:9092", service="test", published=None, failures=None)
    with pytest.raises(Captured):
        relay._new_producer()
    assert producer_kwargs["compression_type"] == "lz4"
    assert producer_kwargs["linger_ms"] == kafka_clients.LINGER_MS
    assert producer_kwargs["batch_size"] == kafka_clients.BATCH_BYTES
    assert producer_kwargs["acks"] == "all" and producer_kwargs["enable_idempotence"] is True


def test_the_dead_letter_producers_compress_too(producer_kwargs):
    loop = KafkaRecordLoop(
        "t", lambda record: "ok", "localhost:9092", topics=["x"], group_id="g", dlq_topic="x.dlq", source="/t"
    )
    with pytest.raises(Captured):
        loop._new_producer()
    assert producer_kwargs["compression_type"] == "lz4"


def test_eligibility_s_faust_producer_batches_and_compresses():
    config = faust_settings(Settings.from_env({}))
    assert config["producer_compression_type"] == "lz4"
    assert config["producer_linger"] == kafka_clients.LINGER_MS / 1000
    assert config["producer_max_batch_size"] == kafka_clients.BATCH_BYTES
