"""The adoption audit trail on a Kafka topic every eligibility instance reads
(issue 14, item 2; ADR 0018): ``subsidy.policy.adoptions.v1``, one
partition (one total order of the four-eyes steps), kept forever (it is the
audit trail: every proposal, adoption and refusal, never compacted away).

- ``append`` produces one event (JSON, key the version id) and returns once
  the broker has it (acks=all, idempotent producer): written before the RPC
  answers and before the state changes, as the file trail was;
- ``read`` reads the topic from its beginning to its end at start;
- ``catch_up`` reads what was appended since (by this instance or another):
  ``AdoptionDesk.refresh`` calls it before every step (so the second
  reviewer's call on another replica sees the first one's proposal) and
  every second (so every replica routes applications to the adopted
  version within a second of the adoption).

A failure to write is an ``OSError`` (the RPC answers UNAVAILABLE, nothing
adopted); a record that is not an adoption event is ``AdoptionLogError``
naming the topic and offset (eligibility refuses to start on it: the trail
is only eligibility's to write).

The topic is eligibility's own (no other service reads or writes it), so it
is declared here and created by eligibility at start like faust's own
topics; on Kubernetes it is a KafkaTopic with eligibility's ACL
(docs/policy-versions.md, what is left).
"""

from __future__ import annotations

import errno
import json
import threading
import time
from collections.abc import Mapping
from typing import Any

from subsidy.contracts import cloudevents, topics
from subsidy.platform import kafka_clients
from subsidy.platform.security import kafka as kafka_security
from subsidy.services.eligibility.adapters.adoption_log import AdoptionLogError

#: Forever: the audit trail of who adopted which policy version (subsidy/contracts/topics.py).
ADOPTIONS = topics.POLICY_ADOPTIONS
TYPE_ADOPTION = "cn.gov.songjiang.subsidy.policy.adoption.v1"
SOURCE = "/songjiang/subsidy/eligibility"


class TopicAdoptionLog:
    def __init__(self, bootstrap: str, topic: str = ADOPTIONS.name, timeout: float = 30.0):
        self.bootstrap = bootstrap
        self.topic = topic
        self.timeout = timeout
        self._lock = threading.Lock()
        self._consumer: Any = None
        self._producer: Any = None
        self._partition: Any = None

    @property
    def where(self) -> str:
        return f"topic {self.topic}"

    def _reader(self) -> Any:
        if self._consumer is None:
            from kafka import KafkaConsumer, TopicPartition

            consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                enable_auto_commit=False,
                group_id=None,
                client_id="subsidy-eligibility-adoptions",
                **kafka_security.client_config(),
            )
            self._partition = TopicPartition(self.topic, 0)
            consumer.assign([self._partition])
            consumer.seek_to_beginning(self._partition)
            self._consumer = consumer
        return self._consumer

    def read(self) -> list[dict[str, Any]]:
        """Every event from the beginning (at start: the reader is new)."""
        return self.catch_up()

    def catch_up(self) -> list[dict[str, Any]]:
        """The events appended since the last read, up to the end the broker has now."""
        with self._lock:
            try:
                consumer = self._reader()
                end = consumer.end_offsets([self._partition])[self._partition]
                events: list[dict[str, Any]] = []
                deadline = time.monotonic() + self.timeout
                while consumer.position(self._partition) < end:
                    if time.monotonic() > deadline:
                        raise OSError(errno.ETIMEDOUT, f"{self.topic}: not read to its end ({end}) in {self.timeout}s")
                    for batch in consumer.poll(timeout_ms=200).values():
                        events.extend(self._decode(r) for r in batch)
                return events
            except AdoptionLogError:
                raise
            except OSError:
                raise
            except Exception as exc:
                raise OSError(errno.EIO, f"{self.topic}: cannot be read: {type(exc).__name__}: {exc}") from exc

    def _decode(self, record: Any) -> dict[str, Any]:
        where = f"{self.topic}/{record.partition}@{record.offset}"
        try:
            event = json.loads(record.value)
        except (TypeError, ValueError) as exc:
            raise AdoptionLogError(f"{where}: not JSON: {exc}") from None
        if not isinstance(event, dict) or "event" not in event:
            raise AdoptionLogError(f"{where}: event: is required")
        return event

    def append(self, event: Mapping[str, Any]) -> None:
        """One event, acknowledged by the broker (acks=all) before this returns."""
        try:
            if self._producer is None:
                from kafka import KafkaProducer

                self._producer = KafkaProducer(
                    bootstrap_servers=self.bootstrap,
                    acks="all",
                    enable_idempotence=True,
                    client_id="subsidy-eligibility-adoptions",
                    **kafka_clients.producer_tuning(),
                    **kafka_security.client_config(),
                )
            event_id = f"adoption:{event['event']}:{event['version_id']}:{event['subject']}:{event['at']}"
            headers = cloudevents.headers(event_id, TYPE_ADOPTION, SOURCE, cloudevents.new_trace_id())
            value = json.dumps(dict(event), ensure_ascii=False, sort_keys=True).encode()
            self._producer.send(self.topic, key=str(event["version_id"]).encode(), value=value, headers=headers).get(
                timeout=self.timeout
            )
        except Exception as exc:
            raise OSError(errno.EIO, f"{self.topic}: cannot be written: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None
