"""Dead letters: how every consumer gives up on a record, in one encoding.

A handler that must not process a record raises ``RecordRejected`` with the
reason. Its consumer -- the kafka-python loop (subsidy/platform/consumer.py)
or eligibility's faust agent (subsidy/services/eligibility/adapters/kafka.py)
-- then sends ``encode(record, reason, ...)`` to the record's dead-letter
topic, counts it in ``subsidy_dead_letters_total`` and logs it, and the
partition moves on. Both consumers build the dead letter here, so a person
reading any DLQ sees one format, and a replay after a crash lands on the
same id whichever consumer wrote it.

The record sent to the DLQ:

- value: a ``subsidy.v1.DeadLetter`` holding the record exactly as received
  (key, value, every header), where it was read (topic, partition, offset),
  the reason, the consumer that gave up and when (RFC 3339 UTC,
  milliseconds, as ``ce_time``);
- key: the record's own key, unchanged (``None`` stays ``None``);
- headers: CloudEvents of type ``cn.gov.songjiang.subsidy.dead_letter.v1``
  with the derived id ``<consumer>:<topic>/<partition>/<offset>``. The
  consumer is part of the id because two consumers of one topic share one
  DLQ (intake's decision projection and payout both dead-letter to
  ``subsidy.decisions.v1.dlq``): without it their two letters about the same
  record would carry the same id, and anything deduplicating by id would
  drop one.

A dead letter always fits on its topic (issue 17): a record too big to be
wrapped whole (its value near the broker's 1 MiB limit, say) keeps the first
bytes of its value, with ``truncated``, the original size and its SHA-256;
header values and the key are cut to a few hundred bytes when even that is
not enough, and the error to ``MAX_ERROR_CHARS``. A letter that could not be
produced would otherwise be retried forever and stall its partition.

No I/O, no clock of its own: the caller passes ``now``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from subsidy.contracts import cloudevents
from subsidy.core.dates import rfc3339

Headers = list[tuple[str, bytes]]

#: What a dead letter may weigh, all told: half the broker's default
#: message.max.bytes (1 MiB), leaving room for the record's own headers.
MAX_DEAD_LETTER_BYTES = 512 * 1024
#: Cut to this when the letter is too big even without the value.
MAX_KEPT_FIELD_BYTES = 256
MAX_ERROR_CHARS = 2000


class RecordRejected(Exception):
    """Raised by a handler: this record must not be processed (undecodable,
    invalid, a delivery that gave up); the message says why, and goes into
    the dead letter."""


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """What to produce to the dead-letter topic."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers
    event_id: str


def header_list(raw: Iterable[tuple[Any, Any]] | Mapping[Any, Any] | None) -> Headers:
    """Kafka headers as ``[(str, bytes)]``, whatever shape the client gave
    them in (kafka-python: a list of ``(str, bytes)``; faust: a list or a
    mapping, keys and values bytes or text; a header value may be None)."""
    if not raw:
        return []
    items = raw.items() if isinstance(raw, Mapping) else raw
    out: Headers = []
    for k, v in items:
        name = k.decode("utf-8", "replace") if isinstance(k, (bytes, bytearray)) else str(k)
        if v is None:
            value = b""
        elif isinstance(v, (bytes, bytearray, memoryview)):
            value = bytes(v)
        else:
            value = str(v).encode()
        out.append((name, value))
    return out


def event_id(consumer: str, topic: str, partition: int, offset: int) -> str:
    """The dead letter's derived id: the same record given up on by the same
    consumer again (after a crash before its offset was committed) lands on
    the same id."""
    return f"{consumer}:{topic}/{partition}/{offset}"


def encode(
    record: Any, error: str, *, dlq_topic: str, consumer: str, source: str, trace_id: str | None, now: dt.datetime
) -> DeadLetterRecord:
    """The dead letter of ``record`` (anything with ``topic``, ``partition``,
    ``offset``, ``key``, ``value`` and ``headers``: a kafka-python
    ConsumerRecord, a faust Message). ``trace_id`` is the record's own (a new
    one when it had none), so the letter is found under the trace it broke."""
    from subsidy.v1 import events_pb2

    key = record.key
    key = bytes(key) if key is not None else None
    value = bytes(record.value) if record.value is not None else b""
    headers = header_list(record.headers)
    if len(error) > MAX_ERROR_CHARS:
        error = error[:MAX_ERROR_CHARS] + f" ... ({len(error)} characters)"
    letter = events_pb2.DeadLetter(
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        key=key or b"",
        value=value,
        headers=[events_pb2.KafkaHeader(key=k, value=v) for k, v in headers],
        error=error,
        consumer=consumer,
        failed_at=rfc3339(now, timespec="milliseconds"),  # the form of ce_time
    )
    body = letter.SerializeToString()
    if len(body) > MAX_DEAD_LETTER_BYTES:
        body, key = _fitted(letter, value, key)
    letter_id = event_id(consumer, record.topic, record.partition, record.offset)
    return DeadLetterRecord(
        topic=dlq_topic,
        key=key,
        value=body,
        headers=cloudevents.headers(
            letter_id, cloudevents.TYPE_DEAD_LETTER, source, trace_id or cloudevents.new_trace_id(), time=now
        ),
        event_id=letter_id,
    )


def _fitted(letter: Any, value: bytes, key: bytes | None) -> tuple[bytes, bytes | None]:
    """The letter cut down to MAX_DEAD_LETTER_BYTES: the value's first bytes
    with its size and digest; then, if still too big, the key and each
    header value cut to MAX_KEPT_FIELD_BYTES."""
    letter.truncated = True
    letter.original_value_size = len(value)
    letter.original_value_sha256 = hashlib.sha256(value).hexdigest()
    letter.value = b""
    if letter.ByteSize() > MAX_DEAD_LETTER_BYTES - 64:
        letter.key = letter.key[:MAX_KEPT_FIELD_BYTES]
        key = key[:MAX_KEPT_FIELD_BYTES] if key is not None else None
        for header in letter.headers:
            header.value = header.value[:MAX_KEPT_FIELD_BYTES]
    room = MAX_DEAD_LETTER_BYTES - letter.ByteSize() - 16  # 16: the value field's tag and length
    letter.value = value[: max(0, room)]
    return letter.SerializeToString(), key
