"""How the system's Kafka clients batch, compress and fetch: one place, so
every producer (the outbox relays, the dead-letter producers, eligibility's
faust app, the adoption log) sends the same way. The figures behind each
choice are in docs/benchmarks.md ("Kafka clients").

- **Compression: lz4.** The cheapest codec to compress and decompress, read
  by every Kafka client the platform and finance teams use (Java, librdkafka,
  kcat). kafka-python reads and writes it with the ``lz4`` package,
  faust's aiokafka with ``cramjam``; both are runtime dependencies, so a
  consumer of ours can read every topic. Records are compressed per batch,
  so the gain grows with the batch: a burst's batches shrink to about a
  third on the wire and on the broker's disk.
- **Linger: 5 ms.** A producer waits up to 5 ms for more records to the same
  partition before sending, so a paced load of a few hundred a second goes
  out in batches rather than one produce request per record; 5 ms is small
  beside the pipeline's latency goals (p99 200 ms at half load).
- **Batch size: 64 KiB** (default 16 KiB): a relay batch of 500 rows of
  about 200 bytes fits one batch per partition.

Consumers keep kafka-python's fetch defaults (``fetch_min_bytes`` 1,
``fetch_max_wait_ms`` 500: a fetch returns as soon as one record is there,
and an idle one waits half a second, which costs an idle consumer almost
nothing). What keeps a trickle of records from costing a fetch each is the
consumer loop's own pacing (subsidy/platform/consumer.py, "Adaptive
batching": while records flow it polls at most every 20 ms). Asking the
broker to hold every fetch instead (``fetch_min_bytes`` 1 MiB,
``fetch_max_wait_ms`` 25) gathers as well while records flow, but makes an
idle consumer fetch 40 times a second, about 5% of a core each
(bench/kafka_consumer.py).
``max_poll_records`` stays 100 per loop (notify: 50): a poll's records are
applied in one database transaction, and a bigger poll holds it longer
without fewer polls in a steady load, which rarely fills one. Offsets are
committed at most once a second (``KafkaRecordLoop.commit_interval_s``).
"""

from __future__ import annotations

from typing import Any

COMPRESSION = "lz4"
LINGER_MS = 5
BATCH_BYTES = 64 * 1024


def producer_tuning() -> dict[str, Any]:
    """kafka-python ``KafkaProducer`` keyword arguments."""
    return dict(compression_type=COMPRESSION, linger_ms=LINGER_MS, batch_size=BATCH_BYTES)


def faust_producer_tuning() -> dict[str, Any]:
    """The same for faust's App settings (aiokafka underneath)."""
    return dict(
        producer_compression_type=COMPRESSION,
        producer_linger=LINGER_MS / 1000,
        producer_max_batch_size=BATCH_BYTES,
    )
