"""What registry-sync publishes, pure: a firm's facts as a FirmFacts record
on subsidy.firms.v1 (key the credit code, CloudEvents headers, the derived
event id ``firm:<credit code>/r<revision>``), and a feed change it could not
use as a DeadLetter on subsidy.firms.v1.dlq (the change exactly as received,
the reason naming the field; id ``registry-sync:feed/<sequence>``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import Any

from subsidy.contracts import cloudevents
from subsidy.contracts import topics as contract_topics
from subsidy.core.dates import rfc3339
from subsidy.platform import dead_letters
from subsidy.platform.outbox import OutboxMessage
from subsidy.v1 import firm_facts_pb2

TYPE_FIRM_FACTS = "cn.gov.songjiang.subsidy.firm.facts.v1"
SOURCE = "subsidy/registry-sync"
CONSUMER = "registry-sync"
#: DeadLetter.source_topic of a feed change (it never was on a Kafka topic).
FEED_SOURCE = "data-platform:/changes"


def facts_to_proto(facts: Mapping[str, Any], synced_at: dt.datetime) -> firm_facts_pb2.FirmFacts:
    contacts = facts["contacts"]
    return firm_facts_pb2.FirmFacts(
        credit_code=facts["credit_code"],
        name=facts["name"],
        as_of=facts["as_of"],
        synced_at=rfc3339(synced_at),
        registered_in_district=facts["registered_in_district"],
        tax_registered_in_district=facts["tax_registered_in_district"],
        independent_legal_person=facts["independent_legal_person"],
        kinds=list(facts["kinds"]),
        introduced_on=facts["introduced_on"],
        recognitions=[firm_facts_pb2.Recognition(**r) for r in facts["recognitions"]],
        revenues=[firm_facts_pb2.AnnualRevenue(**r) for r in facts["revenues"]],
        identifier_usage=[firm_facts_pb2.IdentifierUsage(**u) for u in facts["identifier_usage"]],
        contacts=firm_facts_pb2.FirmContacts(**contacts),
        feed_sequence=int(facts["feed_sequence"]),
    )


def firm_event_id(credit_code: str, revision: int) -> str:
    return f"firm:{credit_code}/r{revision}"


def firm_record(facts: Mapping[str, Any], revision: int, now: dt.datetime) -> OutboxMessage:
    code = facts["credit_code"]
    event_id = firm_event_id(code, revision)
    return OutboxMessage(
        topic=contract_topics.FIRMS.name,
        key=code.encode(),
        value=facts_to_proto(facts, now).SerializeToString(deterministic=True),
        headers=tuple(cloudevents.headers(event_id, TYPE_FIRM_FACTS, SOURCE, cloudevents.new_trace_id(), time=now)),
        event_id=event_id,
    )


@dataclasses.dataclass(frozen=True)
class _FeedRecord:
    """A feed change in the shape dead_letters.encode reads (topic, partition, offset, ...)."""

    key: bytes | None
    value: bytes
    offset: int
    topic: str = FEED_SOURCE
    partition: int = 0
    headers: tuple = ()


def dead_letter(raw: bytes, credit_code: str, sequence: int | None, error: str, now: dt.datetime) -> OutboxMessage:
    """A change the feed sent that cannot be used. Its id is its sequence
    (the same change refused again lands on the same id), or, without a
    usable sequence, the digest of its bytes."""
    offset = sequence if sequence is not None else -1
    letter = dead_letters.encode(
        _FeedRecord(credit_code.encode() or None, raw, offset),
        error,
        dlq_topic=contract_topics.FIRMS_DLQ.name,
        consumer=CONSUMER,
        source=SOURCE,
        trace_id=None,
        now=now,
    )
    event_id = (
        letter.event_id if sequence is not None else f"{CONSUMER}:feed/sha256:{hashlib.sha256(raw).hexdigest()[:32]}"
    )
    return OutboxMessage(
        topic=letter.topic,
        key=letter.key or b"",
        value=letter.value,
        headers=tuple(letter.headers),
        event_id=event_id,
    )
