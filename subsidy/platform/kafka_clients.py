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
