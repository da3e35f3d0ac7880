"""What the focused benchmarks (bench/payout.py, bench/eligibility.py) share:
a process's CPU time, filling an input topic, and whether a group's committed
offsets reached the end of its topic."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:13]) / os.sysconf("SC_CLK_TCK")


def prefill(bootstrap: str, topic: str, items: list) -> None:
    """Produce ``(key, value, headers, _)`` items to ``topic`` and wait for every acknowledgement."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    for key, value, headers, _ in items:
        producer.send(topic, key=key, value=value, headers=headers)
    producer.flush(120)
    producer.close()


def committed_vs_end(bootstrap: str, group: str, topic: str) -> tuple[int, int]:
    """The group's committed offsets and the topic's end offsets, each summed over the partitions."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    ends = consumer.end_offsets(tps)
    committed = sum(consumer.committed(tp) or 0 for tp in tps)
    consumer.close()
    return committed, sum(ends.values())
