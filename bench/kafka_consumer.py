"""One Kafka consumer alone: CPU per record at paced rates, by poll strategy.

    .venv/bin/python bench/kafka_consumer.py [--rates 0,50,150,400] [--seconds 10]

A fresh single-node broker (subsidy_dev.kafka) in a temporary directory and
a 6-partition topic. A producer in a subprocess (so its CPU is not counted)
sends 170-byte records at each rate, paced, with the services' producer
settings (subsidy/platform/kafka_clients.py). In this process a consumer
group member reads them, and the benchmark reports this process's CPU
(user + system, from getrusage) per second and per record, for:

- ``loop, paced``: the services' own ``KafkaRecordLoop``
  (subsidy/platform/consumer.py) with a no-op handler, as it runs;
- ``loop, unpaced``: the same loop with ``min_poll_interval_s=0`` (a poll
  as soon as the last one was handled: the loop before issue 18's change);
- ``broker-side wait``: the same loop unpaced, with ``fetch_min_bytes``
  1 MiB and ``fetch_max_wait_ms`` 25, so the broker holds each fetch for
  25 ms (the other way to get fewer fetches, kept for comparison).

What it isolates: kafka-python 3 costs about the same CPU per fetch round
whatever the round brings, so at low rates the consumer's cost follows the
number of fetches, not the number of records. Rate 0 is the idle cost.
Not a timed test.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TOPIC = "bench.consumer"
SIZE = 170

PRODUCER = """
import sys, time
from kafka import KafkaProducer
from subsidy.platform import kafka_clients
bootstrap, topic, rate, seconds, size = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                         **kafka_clients.producer_tuning())
start = time.perf_counter()
sent = 0
while rate and time.perf_counter() - start < seconds:
    delay = start + sent / rate - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
    producer.send(topic, key=str(sent % 400).encode(), value=b"x" * size)
    sent += 1
if not rate:
    time.sleep(seconds)
producer.flush()
print(sent)
"""

STRATEGIES = {
    "loop, paced": ({}, None),
    "loop, unpaced": ({}, 0.0),
    "broker-side wait": ({"fetch_min_bytes": 1 << 20, "fetch_max_wait_ms": 25}, 0.0),
}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(bootstrap: str, strategy: str, rate: float, seconds: float, group: str) -> dict:
    """Run one KafkaRecordLoop under ``strategy`` while ``rate`` records/s arrive."""
    from subsidy.platform.consumer import MIN_POLL_INTERVAL_S, KafkaRecordLoop

    config, interval = STRATEGIES[strategy]
    handled = 0
    lock = threading.Lock()

    def handler(record) -> str:
        nonlocal handled
        with lock:
            handled += 1
        return "ok"

    loop = KafkaRecordLoop(
        f"bench-{group}",
        handler,
        bootstrap,
        topics=[TOPIC],
        group_id=group,
        dlq_topic=f"{TOPIC}.dlq",
        source="bench",
        consumer_config={**config, "auto_offset_reset": "latest"},
        min_poll_interval_s=MIN_POLL_INTERVAL_S if interval is None else interval,
    )
    loop.start()
    loop.consuming.wait(60)
    time.sleep(3)  # joined the group and positioned at the end; the first fetch is in flight
    producer = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, bootstrap, TOPIC, str(rate), str(seconds), str(SIZE)],
        stdout=subprocess.PIPE,
        text=True,
    )
    cpu0, wall0, got0 = _cpu(), time.perf_counter(), handled
    out, _ = producer.communicate(timeout=seconds + 60)
    time.sleep(0.5)  # the last records' fetch
    cpu1, wall1, got1 = _cpu(), time.perf_counter(), handled
    loop.stop()
    records = got1 - got0
    cpu = cpu1 - cpu0
    return {
        "sent": int(out.strip() or 0),
        "records": records,
        "core": cpu / (wall1 - wall0),
        "per_record_ms": cpu / records * 1000 if records else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="0,50,150,400", help="records/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measurement")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]

    from kafka.admin import KafkaAdminClient, NewTopic

    from subsidy_dev.kafka import KafkaBroker

    with (
        tempfile.TemporaryDirectory(prefix="subsidy-bench-consumer-") as tmp,
        KafkaBroker(Path(tmp) / "kafka") as broker,
    ):
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.create_topics([NewTopic(TOPIC, 6, 1), NewTopic(f"{TOPIC}.dlq", 1, 1)])
        admin.close()
        print(f"one consumer group member, {SIZE}-byte records, 6 partitions, {args.seconds:.0f} s each")
        print(f"  {'strategy':<18} {'records/s':>9} {'received':>9} {'CPU, % of a core':>17} {'ms per record':>14}")
        n = 0
        for rate in rates:
            for strategy in STRATEGIES:
                n += 1
                r = measure(broker.bootstrap, strategy, rate, args.seconds, f"g{n}")
                per = f"{r['per_record_ms']:.2f}" if r["records"] else "-"
                print(
                    f"  {strategy:<18} {rate:>9,.0f} {r['records']:>5}/{r['sent']:<4} {r['core']:>16.1%} {per:>14}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
