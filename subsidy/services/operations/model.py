"""operations' values and rules, no I/O: a dead letter as stored, its
envelope decoded (subsidy/platform/dead_letters.py's ``subsidy.v1.DeadLetter``),
the original value decoded for a person by the type its topic carries, and
the refusals (each naming the field).

A letter is identified by where operations read it: ``<dlq topic>/<partition>/<offset>``,
so a redelivered record lands on the same row (idempotent)."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from subsidy.contracts import topics

SOURCE = "subsidy/operations"

PENDING, REPLAYED, DISCARDED = "PENDING", "REPLAYED", "DISCARDED"
STATES = (PENDING, REPLAYED, DISCARDED)

#: The dead-letter topics operations reads: every ``*.dlq`` of the contract.
DLQ_TOPICS = tuple(spec.name for spec in topics.ALL if spec.name.endswith(".dlq"))
#: Topics no replay may publish to, whatever a letter names as its source: only
#: finance confirms payments, only payout writes its events (the money), only
#: eligibility writes the policy adoption trail (ADR 0019, "Kafka access"; the
#: operations service's Kafka user may not write them either, so a replay there
#: would sit in its outbox for ever). Such letters are discarded, with a reason.
NEVER_REPLAYED = frozenset({topics.PAYMENTS.name, topics.PAYOUTS.name, topics.POLICY_ADOPTIONS.name})
#: The topics a replay may publish to: the contract's topics that are not
#: dead-letter topics, less those above.
REPLAY_TOPICS = frozenset(
    spec.name for spec in topics.ALL if not spec.name.endswith(".dlq") and spec.name not in NEVER_REPLAYED
)

MAX_REASON = 500
MAX_LETTER_ID = 300
PREVIEW_BYTES = 256
#: The header a replayed record carries beside its own: which letter it came from.
REPLAY_HEADER = "subsidy_replay_of"

_ATTEMPTS = re.compile(r"\b(?:in|after) (\d{1,6}) attempts?\b")


class InvalidArgument(ValueError):
    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFound(LookupError):
    pass


class FailedPrecondition(RuntimeError):
    pass


class PermissionDenied(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class Actor:
    subject: str
    role: str


@dataclasses.dataclass(frozen=True)
class StoredLetter:
    """A dead letter as operations keeps it: where it was read, the DLQ
    record's own key, value (the envelope) and headers, and its handling."""

    seq: int
    letter_id: str
    dlq_topic: str
    dlq_partition: int
    dlq_offset: int
    envelope: bytes
    headers: list[tuple[str, bytes]]
    received_at: str
    state: str = PENDING
    #: The letter's derived id (``dead_letter_id``): one row per letter,
    #: however many copies of it the DLQ holds. "" for a record that is not one.
    dead_letter_id: str = ""
    handled_by: str = ""
    handled_at: str = ""
    handled_reason: str = ""


@dataclasses.dataclass(frozen=True)
class AuditEntry:
    letter_id: str
    action: str
    subject: str
    role: str
    reason: str
    at: str


@dataclasses.dataclass(frozen=True)
class Envelope:
    """The DeadLetter's fields (or what could be read of them)."""

    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    reason: str
    consumer: str
    failed_at: str
    truncated: bool
    original_value_size: int
    original_value_sha256: str
    #: Empty when the envelope was read; else why not (the letter is kept all the same).
    envelope_error: str = ""


def letter_id(dlq_topic: str, partition: int, offset: int) -> str:
    return f"{dlq_topic}/{partition}/{offset}"


def check_letter_id(value: str) -> str:
    value = (value or "").strip()
    if not value:
        raise InvalidArgument("letter_id", "is required")
    if len(value) > MAX_LETTER_ID:
        raise InvalidArgument("letter_id", f"is longer than {MAX_LETTER_ID} characters")
    return value


def check_reason(value: str, *, required: bool) -> str:
    value = (value or "").strip()
    if required and not value:
        raise InvalidArgument("reason", "is required")
    if len(value) > MAX_REASON:
        raise InvalidArgument("reason", f"is longer than {MAX_REASON} characters")
    return value


def check_topic(value: str) -> str:
    if value not in DLQ_TOPICS:
        raise InvalidArgument("topic", f"must be one of the dead-letter topics {', '.join(DLQ_TOPICS)}")
    return value


def check_state(value: str) -> str:
    if value and value not in STATES:
        raise InvalidArgument("state", f"must be one of {', '.join(STATES)} or empty")
    return value


def read_envelope(raw: bytes) -> Envelope:
    """The DeadLetter in ``raw``; a record that is not one is kept with the
    reason, its bytes as the value (never dropped: a person sees it)."""
    from google.protobuf.message import DecodeError

    from subsidy.v1 import events_pb2

    try:
        letter = events_pb2.DeadLetter.FromString(raw)
    except DecodeError as exc:
        return Envelope("", 0, 0, b"", raw, [], "", "", "", False, 0, "", f"not a DeadLetter: {exc}")
    if not letter.source_topic:
        return Envelope("", 0, 0, b"", raw, [], "", "", "", False, 0, "", "not a DeadLetter: no source_topic")
    return Envelope(
        source_topic=letter.source_topic,
        source_partition=letter.source_partition,
        source_offset=letter.source_offset,
        key=bytes(letter.key),
        value=bytes(letter.value),
        headers=[(h.key, bytes(h.value)) for h in letter.headers],
        reason=letter.error,
        consumer=letter.consumer,
        failed_at=letter.failed_at,
        truncated=letter.truncated,
        original_value_size=letter.original_value_size,
        original_value_sha256=letter.original_value_sha256,
    )


def dead_letter_id(raw: bytes) -> str:
    """The letter's derived id (dead_letters.event_id: the consumer and the
    record it gave up on), the same for every copy a consumer sends of it;
    "" for a record that is not a DeadLetter."""
    from subsidy.platform.dead_letters import event_id

    envelope = read_envelope(raw)
    if envelope.envelope_error:
        return ""
    return event_id(envelope.consumer, envelope.source_topic, envelope.source_partition, envelope.source_offset)


def attempts_of(reason: str) -> int:
    """The attempts the consumer reported in its reason ("unexpected error in
    5 attempts: ...", notify's "... after 4 attempts"); 1 when it gave up at once."""
    found = _ATTEMPTS.search(reason or "")
    return max(1, int(found.group(1))) if found else 1


def text_of(raw: bytes) -> str:
    """A key or header for a person: the text, or hex when it is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + raw.hex()


def _message_types() -> dict[str, Any]:
    from subsidy.v1 import (
        application_pb2,
        decision_pb2,
        firm_facts_pb2,
        notice_pb2,
        payout_pb2,
        proposal_pb2,
        review_pb2,
    )

    return {
        topics.APPLICATIONS.name: application_pb2.Application,
        topics.DECISIONS.name: decision_pb2.Decision,
        topics.SHADOW_DECISIONS.name: decision_pb2.Decision,
        topics.PAYOUTS.name: payout_pb2.PayoutEvent,
        topics.PAYMENTS.name: payout_pb2.PaymentConfirmed,
        topics.FIRMS.name: firm_facts_pb2.FirmFacts,
        topics.PROPOSALS.name: proposal_pb2.ProposalEvent,
        topics.REVIEWS.name: review_pb2.ReviewEvent,
        topics.NOTICES.name: notice_pb2.NoticeEvent,
    }


@dataclasses.dataclass(frozen=True)
class Decoded:
    value_type: str
    value_json: str
    error: str
    preview: str


def decode_value(source_topic: str, value: bytes, truncated: bool) -> Decoded:
    """The original value for a person: the topic's protobuf message as JSON
    (unknown fields refused, so bytes of another type are not passed off as
    this one), JSON text as it was (the data platform's feed changes), else
    the error and the first bytes."""
    from google.protobuf import json_format, unknown_fields
    from google.protobuf.message import DecodeError

    preview = text_of(value[:PREVIEW_BYTES]) if value else ""
    if truncated:
        return Decoded("", "", "the value was cut to fit the dead-letter topic: not decoded", preview)
    if not value:
        return Decoded("", "", "the value is empty (a tombstone or nothing)", "")
    kind = _message_types().get(source_topic)
    problems = []
    if kind is not None:
        try:
            message = kind.FromString(value)
            if len(unknown_fields.UnknownFieldSet(message)):
                raise DecodeError("fields this message does not have")
            text = json_format.MessageToJson(
                message, preserving_proto_field_name=True, ensure_ascii=False, indent=2, sort_keys=True
            )
            if text.strip() not in ("", "{}"):
                return Decoded(kind.DESCRIPTOR.full_name, text, "", "")
            problems.append(f"not a {kind.DESCRIPTOR.full_name}: no known field")
        except (DecodeError, ValueError, RuntimeError) as exc:
            problems.append(f"not a {kind.DESCRIPTOR.full_name}: {exc}"[:300])
    try:
        obj = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        problems.append("not JSON text")
    else:
        return Decoded("JSON", json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True), "", "")
    if kind is None:
        problems.insert(0, f"no decoder for the topic {source_topic or '(none)'}")
    return Decoded("", "", "; ".join(problems), preview)


def not_replayable_reason(envelope: Envelope) -> str:
    """Why the letter cannot be replayed as it is, or "" when it can."""
    if envelope.envelope_error:
        return f"the dead letter itself could not be read ({envelope.envelope_error})"
    if envelope.source_topic in NEVER_REPLAYED:
        return f"{envelope.source_topic} is written by its owner only (a replay from here is refused; discard it)"
    if envelope.source_topic not in REPLAY_TOPICS:
        return f"{envelope.source_topic} is not a topic of the contract (nothing to publish to)"
    if envelope.truncated:
        return "the value was cut to fit the dead-letter topic; the original is on the source topic at its offset"
    for name, value in envelope.headers:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return f"the header {name} is not text"
    return ""
