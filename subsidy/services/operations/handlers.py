"""operations' use cases over the ports; no Kafka, gRPC or SQL here.

- ``record_letter``: a record read from a DLQ topic is stored once, by where
  it was read (a redelivery changes nothing);
- ``list_topics``, ``list_letters``, ``get_letter``: the letters per topic,
  newest first, each with its envelope and original value decoded;
- ``replay``: the original record (key, value, headers, plus the header
  ``subsidy_replay_of``) goes into the outbox for its original topic, the
  letter becomes REPLAYED and the step is audited — one transaction; a
  letter that is not PENDING is refused;
- ``discard``: the letter becomes DISCARDED with the reason, audited.

Only an OPERATOR handles letters (the access policy says so at the edge;
the use cases check it again, so a misconfigured policy cannot open them),
and the subject that did is recorded."""

from __future__ import annotations

import dataclasses
from typing import Any

from subsidy.platform import paging
from subsidy.platform.outbox import OutboxMessage
from subsidy.services.operations.model import (
    DISCARDED,
    DLQ_TOPICS,
    PENDING,
    REPLAY_HEADER,
    REPLAYED,
    STATES,
    Actor,
    AuditEntry,
    Decoded,
    Envelope,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    StoredLetter,
    check_letter_id,
    check_reason,
    check_state,
    check_topic,
    dead_letter_id,
    decode_value,
    letter_id,
    not_replayable_reason,
    read_envelope,
)
from subsidy.services.operations.ports import Store

DEFAULT_PAGE = 50
MAX_PAGE = 200


@dataclasses.dataclass(frozen=True)
class LetterView:
    stored: StoredLetter
    envelope: Envelope
    decoded: Decoded
    not_replayable: str


def view(stored: StoredLetter) -> LetterView:
    envelope = read_envelope(stored.envelope)
    if envelope.envelope_error:
        decoded = decode_value("", envelope.value, False)
        decoded = Decoded("", "", envelope.envelope_error, decoded.preview)
    else:
        decoded = decode_value(envelope.source_topic, envelope.value, envelope.truncated)
    return LetterView(stored, envelope, decoded, not_replayable_reason(envelope))


def record_letter(
    store: Store,
    dlq_topic: str,
    partition: int,
    offset: int,
    value: bytes | None,
    headers: list[tuple[str, bytes]],
    now: str,
) -> str:
    """Keep the letter read at (topic, partition, offset): "stored";
    "duplicate" when that record was read before (a redelivery); "copy" when
    it is another copy of a letter already kept (a consumer dead-lettered the
    same record again, e.g. on a full replay of its group: the same derived
    id, model.dead_letter_id), which the operator must not see twice."""
    envelope = bytes(value or b"")
    letter = StoredLetter(
        seq=0,
        letter_id=letter_id(dlq_topic, partition, offset),
        dlq_topic=dlq_topic,
        dlq_partition=partition,
        dlq_offset=offset,
        envelope=envelope,
        headers=list(headers),
        received_at=now,
        dead_letter_id=dead_letter_id(envelope),
    )
    with store.unit() as tx:
        if tx.add(letter):
            return "stored"
        return "duplicate" if tx.holds_position(letter.letter_id) else "copy"


def list_topics(store: Store) -> list[tuple[str, dict[str, int]]]:
    with store.unit() as tx:
        counts = tx.counts()
    return [(topic, {state: counts.get((topic, state), 0) for state in STATES}) for topic in DLQ_TOPICS]


def list_letters(store: Store, topic: str, state: str, page_size: int, page_token: str) -> tuple[list[LetterView], str]:
    topic = check_topic(topic)
    state = check_state(state)
    if page_size < 0:
        raise InvalidArgument("page_size", "must not be negative")
    size = min(page_size or DEFAULT_PAGE, MAX_PAGE)
    before: int | None = None
    if page_token:
        try:
            position = paging.decode(page_token)
        except paging.BadPageToken as exc:
            raise InvalidArgument("page_token", str(exc)) from None
        if (
            not isinstance(position, dict)
            or position.get("topic") != topic
            or position.get("state") != state
            or type(position.get("before")) is not int
        ):
            raise InvalidArgument("page_token", "is not a token of this listing")
        before = position["before"]
    with store.unit() as tx:
        rows = tx.page(topic, state, before, size + 1)
    token = ""
    if len(rows) > size:
        rows = rows[:size]
        token = paging.encode({"topic": topic, "state": state, "before": rows[-1].seq})
    return [view(r) for r in rows], token


def get_letter(store: Store, raw_id: str) -> tuple[LetterView, list[AuditEntry]]:
    wanted = check_letter_id(raw_id)
    with store.unit() as tx:
        stored = tx.get(wanted)
        if stored is None:
            raise NotFound(f"no dead letter {wanted}")
        return view(stored), tx.trail(wanted)


def _operator(actor: Actor) -> None:
    if actor.role != "OPERATOR":
        raise PermissionDenied("only an OPERATOR replays or discards dead letters")
    if not actor.subject:
        raise PermissionDenied("handling a dead letter needs an identified subject (the token's sub)")


def _pending(tx: Any, wanted: str) -> StoredLetter:
    stored = tx.get(wanted, for_update=True)
    if stored is None:
        raise NotFound(f"no dead letter {wanted}")
    if stored.state != PENDING:
        raise FailedPrecondition(
            f"dead letter {wanted} was already {stored.state.lower()} by {stored.handled_by} at {stored.handled_at}"
        )
    return stored


def replay(store: Store, raw_id: str, reason: str, actor: Actor, now: str) -> LetterView:
    """Republish the original record to its original topic (through the
    outbox), in the transaction that marks the letter REPLAYED and audits it."""
    _operator(actor)
    wanted = check_letter_id(raw_id)
    why = check_reason(reason, required=False)
    with store.unit() as tx:
        stored = _pending(tx, wanted)
        envelope = read_envelope(stored.envelope)
        refused = not_replayable_reason(envelope)
        if refused:
            raise FailedPrecondition(f"dead letter {wanted} cannot be replayed: {refused}")
        headers = tuple((k, v) for k, v in envelope.headers if k != REPLAY_HEADER) + (
            (REPLAY_HEADER, wanted.encode("utf-8")),
        )
        tx.enqueue(
            OutboxMessage(
                topic=envelope.source_topic,
                key=envelope.key,
                value=envelope.value,
                headers=headers,
                event_id=f"replay:{wanted}",
            ),
            now,
        )
        if not tx.settle(wanted, REPLAYED, actor.subject, now, why):
            raise FailedPrecondition(f"dead letter {wanted} was handled by someone else just now")
        tx.audit(AuditEntry(wanted, REPLAYED, actor.subject, actor.role, why, now))
        done = tx.get(wanted)
    assert done is not None
    return view(done)


def discard(store: Store, raw_id: str, reason: str, actor: Actor, now: str) -> LetterView:
    _operator(actor)
    wanted = check_letter_id(raw_id)
    why = check_reason(reason, required=True)
    with store.unit() as tx:
        _pending(tx, wanted)
        if not tx.settle(wanted, DISCARDED, actor.subject, now, why):
            raise FailedPrecondition(f"dead letter {wanted} was handled by someone else just now")
        tx.audit(AuditEntry(wanted, DISCARDED, actor.subject, actor.role, why, now))
        done = tx.get(wanted)
    assert done is not None
    return view(done)
