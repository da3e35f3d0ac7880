"""The DLQ consumers (subsidy.platform.consumer.KafkaRecordLoop, kafka-python
in a thread each): one per dead-letter topic, group
``<prefix>-<topic>``, each record stored once by where it was read
(handlers.record_letter), so a redelivery changes nothing.

Nothing a DLQ holds is refused: a record that is not a DeadLetter is kept
as it is and shown with the reason. A failure nobody foresaw (a bug) is
retried like in every consumer and then dead-lettered back onto the same
DLQ topic (counted in ``subsidy_dead_letters_total`` and logged), where it
is read again as a letter about a letter: never dropped silently."""

from __future__ import annotations

import logging
from typing import Any

from subsidy.core.dates import rfc3339
from subsidy.platform.clock import Clock
from subsidy.platform.consumer import KafkaRecordLoop
from subsidy.platform.dead_letters import header_list
from subsidy.services.operations import handlers, metrics
from subsidy.services.operations.model import DLQ_TOPICS, SOURCE
from subsidy.services.operations.ports import Store

log = logging.getLogger("subsidy.services.operations.adapters.kafka")


class LetterReader:
    def __init__(self, store: Store, clock: Clock):
        self.store = store
        self.clock = clock

    def __call__(self, record: Any) -> str:
        outcome = handlers.record_letter(
            self.store,
            record.topic,
            record.partition,
            record.offset,
            record.value,
            header_list(record.headers),
            rfc3339(self.clock.now()),
        )
        metrics.LETTERS_READ.labels(record.topic, outcome).inc()
        if outcome == "stored":
            log.info(
                "dead letter stored",
                extra={"fields": {"topic": record.topic, "partition": record.partition, "offset": record.offset}},
            )
        return outcome


def dlq_consumers(
    store: Store, clock: Clock, bootstrap: str, group_prefix: str, *, session_timeout_ms: int, stall_s: float
) -> list[KafkaRecordLoop]:
    reader = LetterReader(store, clock)
    config = {"session_timeout_ms": session_timeout_ms, "heartbeat_interval_ms": max(500, session_timeout_ms // 3)}
    return [
        KafkaRecordLoop(
            f"operations-{topic}",
            reader,
            bootstrap,
            topics=[topic],
            group_id=f"{group_prefix}-{topic}",
            dlq_topic=topic,
            source=SOURCE,
            rejects=(),
            consumer_config=config,
            stall_s=stall_s,
        )
        for topic in DLQ_TOPICS
    ]
