"""What the focused benchmarks (bench/payout.py, bench/eligibility.py,
bench/scaling.py) share: a process's CPU time, filling an input topic,
starting and stopping the service, watching its output topic, reading a
service's /metrics, and whether a group's committed offsets reached the end
of its topic."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:13]) / os.sysconf("SC_CLK_TCK")


def scrape(metrics_address: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample a service's ``/metrics`` serves: (name, labels, value)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=10) as response:  # nosec B310 - local
        text = response.read().decode()
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def metric_sum(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(
        value for sample, have, value in samples if sample == name and all(have.get(k) == v for k, v in labels.items())
    )


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


def read_from_start(bootstrap: str, topic: str) -> Any:
    """A consumer of every partition of ``topic``, from its beginning, in no group."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, fetch_max_wait_ms=20)
    consumer.assign([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or range(6)])
    consumer.seek_to_beginning()
    return consumer


#: The services with a database, which ``subsidy migrate`` prepares before they start.
MIGRATED = ("intake", "payout", "notify")


def start_service(name: str, root: Path, env: dict, log_path: Path) -> subprocess.Popen:
    """``python -m subsidy.services.<name>`` from the checkout ``root``, its output in ``log_path``.

    A service with a database gets it migrated first (``subsidy migrate``, as
    production's Job before a rollout): it only checks the schema version.
    A checkout from before versioned migrations (``--root`` of an older
    baseline) has no such command; its service creates its tables itself."""
    if name in MIGRATED and (root / "subsidy" / "platform" / "migrations").is_dir():
        from subsidy_dev import tail

        with log_path.open("ab") as out:
            status = subprocess.run(
                [sys.executable, "-m", "subsidy.cli", "migrate", "--service", name],
                cwd=root,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=300,
            ).returncode
        if status != 0:
            raise RuntimeError(f"`subsidy migrate --service {name}` exited {status}:\n{tail(log_path)}")
    with log_path.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", f"subsidy.services.{name}"], cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT
        )


@dataclasses.dataclass
class Watched:
    """What a consumer here saw of a service's output: the ids completed, the
    wall and CPU time of the first and last poll that completed any, and how
    many ids the first of those polls had completed."""

    seen: set
    records: int
    first: float
    last: float
    first_count: int
    cpu_first: float
    cpu_last: float

    @property
    def span(self) -> float:
        return self.last - self.first

    @property
    def cpu_share(self) -> float:
        return (self.cpu_last - self.cpu_first) / self.span if self.span > 0 else float("nan")


def watch(
    consumer: Any,
    proc: subprocess.Popen | Sequence[subprocess.Popen],
    log_path: Path | Sequence[Path],
    wanted: set,
    completes: Callable[[Any], Any],
    timeout: float,
    what: str,
) -> Watched:
    """Poll ``consumer`` until every id in ``wanted`` is completed
    (``completes(record)``: the id a record completes, or None) or ``timeout``
    passes; raises, with the service's log tail, if it exits or falls short.
    ``proc`` and ``log_path`` may be lists, the replicas of one service (in
    the same order): any of them exiting raises, and CPU is their sum."""
    from subsidy_dev import tail

    procs = [proc] if isinstance(proc, subprocess.Popen) else list(proc)
    logs = [log_path] if isinstance(log_path, Path) else list(log_path)

    def cpu() -> float:
        return sum(cpu_seconds(p.pid) for p in procs)

    seen: set = set()
    records = 0
    first = last = None
    first_count = 0
    cpu_first = 0.0
    deadline = time.perf_counter() + timeout
    while len(seen) < len(wanted) and time.perf_counter() < deadline:
        for p, path in zip(procs, logs):
            if p.poll() is not None:
                raise RuntimeError(f"the service exited {p.returncode}:\n{tail(path)}")
        batch = consumer.poll(timeout_ms=100, max_records=5000)
        now = time.perf_counter()
        for batch_records in batch.values():
            for record in batch_records:
                records += 1
                done = completes(record)
                if done in wanted:
                    seen.add(done)
        if seen and first is None:
            first, cpu_first, first_count = now, cpu(), len(seen)
        if seen:
            last = now
    cpu_last = cpu()
    if len(seen) < len(wanted):
        raise RuntimeError(f"{len(seen)}/{len(wanted)} {what} within {timeout}s:\n{tail(logs[0])}")
    return Watched(seen, records, first, last, first_count, cpu_first, cpu_last)


def stop_service(proc: subprocess.Popen) -> int:
    """SIGTERM, and its exit status (killed if it does not stop within 60 s)."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
