"""One dead-letter encoding (subsidy/platform/dead_letters.py) for every
consumer: the kafka-python loop and eligibility's faust agent give up on the
same record with the same bytes."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry

from subsidy.contracts import cloudevents
from subsidy.core.dates import rfc3339
from subsidy.core.policy import load_policy
from subsidy.platform import dead_letters
from subsidy.platform.consumer import KafkaRecordLoop, RecordRejected
from subsidy.services.eligibility.bootstrap import create_app
from subsidy.services.eligibility.config import Settings
from subsidy.v1 import events_pb2

NOW = dt.datetime(2024, 5, 6, 15, 8, 9, 123456, tzinfo=dt.timezone(dt.timedelta(hours=8)))
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
HEADERS = [("ce_id", b"x-1"), ("ce_traceparent", f"00-{TRACE}-00f067aa0ba902b7-01".encode())]


def rec(**overrides):
    fields = dict(
        topic="subsidy.applications.v1",
        partition=2,
        offset=17,
        key=b"913101170BCJ72CC83",
        value=b"\xff\xfe",
        headers=HEADERS,
    )
    return SimpleNamespace(**{**fields, **overrides})


def encode(record, **overrides):
    kwargs = dict(
        dlq_topic="subsidy.applications.v1.dlq",
        consumer="eligibility",
        source="/songjiang/subsidy/eligibility",
        trace_id=TRACE,
        now=NOW,
    )
    return dead_letters.encode(record, "not a subsidy.v1.Application protobuf", **{**kwargs, **overrides})


def test_the_letter_holds_the_record_as_received_where_it_was_why_who_and_when_in_utc():
    out = encode(rec())
    letter = events_pb2.DeadLetter.FromString(out.value)
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("subsidy.applications.v1", 2, 17)
    assert (letter.key, letter.value) == (b"913101170BCJ72CC83", b"\xff\xfe")
    assert [(h.key, h.value) for h in letter.headers] == HEADERS
    assert letter.error == "not a subsidy.v1.Application protobuf" and letter.consumer == "eligibility"
    assert letter.failed_at == "2024-05-06T07:08:09.123Z"
    assert (out.topic, out.key) == ("subsidy.applications.v1.dlq", b"913101170BCJ72CC83")


def test_the_record_is_a_cloudevent_whose_id_names_the_consumer_and_where_the_record_was():
    out = encode(rec())
    ce = cloudevents.as_dict(out.headers)
    assert out.event_id == ce["ce_id"] == "eligibility:subsidy.applications.v1/2/17"
    assert ce["ce_type"] == cloudevents.TYPE_DEAD_LETTER
    assert ce["ce_source"] == "/songjiang/subsidy/eligibility"
    assert ce["ce_time"] == "2024-05-06T07:08:09.123Z"
    assert cloudevents.trace_id_of(out.headers) == TRACE


MOMENTS = [
    NOW,
    dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.timezone(dt.timedelta(hours=8))),
    dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
    dt.datetime(1999, 12, 31, 16, 0, 0, 999, tzinfo=dt.timezone(dt.timedelta(hours=-5, minutes=-30))),
    dt.datetime(2025, 6, 1, 12, 0, 0, 1000, tzinfo=dt.UTC),
]


@pytest.mark.parametrize("moment", MOMENTS, ids=str)
def test_the_letters_failed_at_is_its_ce_time_the_one_helper_in_milliseconds(moment):
    out = encode(rec(), now=moment)
    failed_at = events_pb2.DeadLetter.FromString(out.value).failed_at
    assert failed_at == cloudevents.as_dict(out.headers)["ce_time"] == rfc3339(moment, timespec="milliseconds")


def test_a_replay_lands_on_the_same_id_and_two_consumers_of_one_record_do_not():
    assert encode(rec()).event_id == encode(rec()).event_id
    assert encode(rec(), consumer="payout").event_id != encode(rec(), consumer="intake-projection").event_id


def test_a_tombstone_keeps_its_absent_key_and_an_empty_value():
    out = encode(rec(key=None, value=None, headers=None))
    letter = events_pb2.DeadLetter.FromString(out.value)
    assert out.key is None and (letter.key, letter.value, list(letter.headers)) == (b"", b"", [])


def test_headers_in_any_shape_a_client_gives_are_kept_as_text_names_and_bytes():
    shapes = [
        {"a": "1", "b": None},
        [(b"a", b"1"), ("b", None)],
        [("a", memoryview(b"1")), ("b", b"")],
    ]
    for raw in shapes:
        assert dead_letters.header_list(raw) == [("a", b"1"), ("b", b"")]


def test_without_a_trace_id_the_letter_starts_a_new_trace():
    out = encode(rec(headers=None), trace_id=None)
    trace = cloudevents.trace_id_of(out.headers)
    assert trace and len(trace) == 32


class Producer:
    def __init__(self):
        self.sent = []

    def send(self, topic, key=None, value=None, headers=None):
        self.sent.append((topic, key, value, headers))
        return SimpleNamespace(get=lambda timeout=None: None)


def test_the_kafka_python_loop_and_the_eligibility_agent_write_the_same_dead_letter(tmp_path):
    record = rec(topic="subsidy.applications.v1")
    producer = Producer()
    loop = KafkaRecordLoop(
        "eligibility",
        lambda r: "unused",
        "unused",
        topics=[record.topic],
        group_id="g",
        dlq_topic="subsidy.applications.v1.dlq",
        source="/songjiang/subsidy/eligibility",
        producer_factory=lambda: producer,
        clock=lambda: NOW,
    )
    loop.dead_letter(record, "not a subsidy.v1.Application protobuf", TRACE)
    [(topic, key, value, headers)] = producer.sent

    service = create_app(
        Settings(data_dir=tmp_path), policy=load_policy(), registry=CollectorRegistry(), clock=lambda: NOW
    )
    outcome = service.dead_letter(record, RecordRejected("not a subsidy.v1.Application protobuf"))

    def without_span(raw):  # the traceparent's span id is new for every event
        return {k: v for k, v in cloudevents.as_dict(raw).items() if k != "ce_traceparent"}

    assert (outcome.topic, outcome.key, outcome.value) == (topic, key, value)
    assert without_span(outcome.headers) == without_span(headers)
    assert cloudevents.trace_id_of(outcome.headers) == cloudevents.trace_id_of(headers) == TRACE


def test_a_record_too_big_to_wrap_keeps_its_first_bytes_its_size_and_its_digest_and_fits():
    import hashlib

    huge = b"\x00" * (1024 * 1024 - 100)  # just under the broker's limit on the source topic
    letter = encode(rec(value=huge))
    assert len(letter.value) <= dead_letters.MAX_DEAD_LETTER_BYTES
    decoded = events_pb2.DeadLetter.FromString(letter.value)
    assert decoded.truncated and decoded.original_value_size == len(huge)
    assert decoded.original_value_sha256 == hashlib.sha256(huge).hexdigest()
    assert huge.startswith(decoded.value) and len(decoded.value) > 400_000


def test_huge_headers_and_key_are_cut_so_the_letter_still_fits():
    big = b"h" * (700 * 1024)
    letter = encode(rec(key=b"k" * 10_000, value=b"v" * 1000, headers=[("x-big", big)]))
    assert len(letter.value) <= dead_letters.MAX_DEAD_LETTER_BYTES
    decoded = events_pb2.DeadLetter.FromString(letter.value)
    assert decoded.truncated and len(decoded.key) == dead_letters.MAX_KEPT_FIELD_BYTES
    assert letter.key == b"k" * dead_letters.MAX_KEPT_FIELD_BYTES
    assert [h.value for h in decoded.headers if h.key == "x-big"] == [big[: dead_letters.MAX_KEPT_FIELD_BYTES]]


def test_a_record_that_fits_is_kept_whole_and_a_long_error_is_cut():
    letter = dead_letters.encode(
        rec(value=b"v" * 1000), "e" * 10_000, dlq_topic="t.dlq", consumer="c", source="/s", trace_id=None, now=NOW
    )
    decoded = events_pb2.DeadLetter.FromString(letter.value)
    assert not decoded.truncated and decoded.value == b"v" * 1000
    assert len(decoded.error) < 2100 and decoded.error.endswith("(10000 characters)")
