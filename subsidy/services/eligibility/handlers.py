"""One Kafka record in, one Kafka record out: the eligibility stream step.

``process(key, value, headers, policy=..., source=...)`` turns the raw bytes
of one record of ``subsidy.applications.v1`` into either

- ``Decided``: a ``subsidy.v1.Decision`` for ``subsidy.decisions.v1``, keyed by
  the firm's credit code, with CloudEvents headers carrying the same trace id
  as the application (a new one if the application had none); or
- ``DeadLettered``: a ``subsidy.v1.DeadLetter`` for
  ``subsidy.applications.v1.dlq`` holding the record exactly as received and
  what was wrong with it.

It does no I/O, keeps no state and never raises: bytes that do not decode,
an application that breaks the contract, and even a bug in the rules all end
as a dead letter, so the partition keeps moving. Logging, metrics and the
actual producing are the caller's (``subsidy/services/eligibility/adapters/kafka.py``), driven by
what this returns.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from google.protobuf.message import DecodeError

from subsidy.core import eligibility as rules
from subsidy.contracts import cloudevents, codec, topics
from subsidy.contracts.codec import BadInput
from subsidy.core.domain import Decision
from subsidy.core.policy import Policy

CONSUMER = "eligibility"
SOURCE = "/songjiang/subsidy/eligibility"

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a record was read from."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Decided:
    """A decision to produce. ``decision`` is the domain value, for logs and metrics."""

    key: bytes
    value: bytes
    headers: Headers
    decision: Decision
    trace_id: str
    topic: str = topics.DECISIONS.name


@dataclass(frozen=True, slots=True)
class DeadLettered:
    """A record given up on. ``unexpected`` is True when the record was fine
    as far as the contract goes but evaluating it failed (a bug)."""

    key: bytes | None
    value: bytes
    headers: Headers
    error: str
    origin: Origin
    trace_id: str
    unexpected: bool = False
    application_id: str | None = None
    exception: BaseException | None = field(default=None, compare=False)
    topic: str = topics.APPLICATIONS_DLQ.name


Outcome = Decided | DeadLettered


def normalize_headers(raw: Iterable[tuple[Any, Any]] | Mapping[Any, Any] | None) -> Headers:
    """Kafka headers as ``[(str, bytes)]``, whatever shape the client gave them in."""
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


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _pb():
    from subsidy.v1 import application_pb2, events_pb2

    return application_pb2, events_pb2


def process(
    key: bytes | None,
    value: bytes | None,
    headers: Iterable[tuple[Any, Any]] | Mapping[Any, Any] | None,
    *,
    policy: Policy,
    origin: Origin,
    now: dt.datetime | None = None,
) -> Outcome:
    """Decide one application record, or dead-letter it. Never raises."""
    now = now or dt.datetime.now(dt.timezone.utc)
    header_list = normalize_headers(headers)
    trace_id = cloudevents.trace_id_of(header_list) or cloudevents.new_trace_id()
    application_pb2, _ = _pb()

    def dead(error: str, *, unexpected: bool = False, application_id: str | None = None,
             exception: BaseException | None = None) -> DeadLettered:
        return dead_letter(key, value, header_list, error, origin=origin, trace_id=trace_id, now=now,
                           unexpected=unexpected, application_id=application_id, exception=exception)

    if value is None:
        return dead("no value (a tombstone): expected a subsidy.v1.Application")
    if len(value) == 0:
        return dead("empty value: expected a subsidy.v1.Application")
    try:
        message = application_pb2.Application.FromString(bytes(value))
    except (DecodeError, ValueError, TypeError) as exc:
        return dead(f"not a subsidy.v1.Application protobuf: {exc}")
    try:
        application = codec.application_from_proto(message)
    except BadInput as exc:
        return dead(f"invalid application: {exc}", application_id=message.application_id[:64] or None)
    except Exception as exc:  # noqa: BLE001 - a codec bug must not stall the partition
        return dead(f"validating failed unexpectedly: {type(exc).__name__}: {exc}", unexpected=True,
                    application_id=message.application_id[:64] or None, exception=exc)
    try:
        decision = rules.evaluate(application, policy)
        decision_message = codec.decision_to_proto(decision)
        decision_bytes = decision_message.SerializeToString()
    except Exception as exc:  # noqa: BLE001 - a rules bug must not stall the partition
        return dead(f"evaluating failed unexpectedly: {type(exc).__name__}: {exc}", unexpected=True,
                    application_id=application.application_id, exception=exc)
    out_headers = cloudevents.headers(
        decision.decision_id, cloudevents.TYPE_DECISION_MADE, SOURCE, trace_id, time=now
    )
    return Decided(
        key=decision.credit_code.encode(),
        value=decision_bytes,
        headers=out_headers,
        decision=decision,
        trace_id=trace_id,
    )


def dead_letter(
    key: bytes | None,
    value: bytes | None,
    headers: Headers,
    error: str,
    *,
    origin: Origin,
    trace_id: str,
    now: dt.datetime,
    unexpected: bool = False,
    application_id: str | None = None,
    exception: BaseException | None = None,
) -> DeadLettered:
    """The DeadLetter record for a record that could not be processed."""
    _, events_pb2 = _pb()
    letter = events_pb2.DeadLetter(
        source_topic=origin.topic,
        source_partition=origin.partition,
        source_offset=origin.offset,
        key=key or b"",
        value=value or b"",
        headers=[events_pb2.KafkaHeader(key=k, value=v) for k, v in headers],
        error=error,
        consumer=CONSUMER,
        failed_at=_rfc3339(now),
    )
    # Derived id: a replayed failure lands on the same dead letter id.
    event_id = f"{CONSUMER}:{origin.topic}/{origin.partition}/{origin.offset}"
    return DeadLettered(
        key=key,
        value=letter.SerializeToString(),
        headers=cloudevents.headers(event_id, cloudevents.TYPE_DEAD_LETTER, SOURCE, trace_id, time=now),
        error=error,
        origin=origin,
        trace_id=trace_id,
        unexpected=unexpected,
        application_id=application_id,
        exception=exception,
    )
