"""The operations service's use cases over a real SQLite store: letters
stored once per place read, decoded for a person, replayed through the
outbox (once: a second replay is refused), discarded with a reason, audited
with the operator's subject, and refused to anyone but an OPERATOR."""

from __future__ import annotations

import datetime as dt
import json
import types

import pytest

from subsidy.contracts import cloudevents, topics
from subsidy.platform import dead_letters
from subsidy.platform.db import Database
from subsidy.platform.outbox import decode_headers
from subsidy.services.operations import handlers
from subsidy.services.operations.adapters.grpc import letter_to_proto
from subsidy.services.operations.adapters.store import SqlStore
from subsidy.services.operations.model import (
    Actor,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    attempts_of,
)
from subsidy.v1 import application_pb2

NOW = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)
OPERATOR = Actor("ops-zhao", "OPERATOR")
FIRM = "91310117313Q6C3D6G"


@pytest.fixture
def store(tmp_path):
    s = SqlStore(Database(f"sqlite:///{tmp_path / 'ops.db'}", store="operations"))
    s.create_schema()
    yield s
    s.db.close()


def application() -> application_pb2.Application:
    app = application_pb2.Application(application_id="A-2026-0042", submitted_on="2026-11-20")
    app.firm.credit_code = FIRM
    app.firm.name = "松江示例科技有限公司"
    return app


def letter(value: bytes, *, topic=topics.APPLICATIONS.name, offset=7, error="bad", headers=None, now=NOW):
    record = types.SimpleNamespace(
        topic=topic,
        partition=2,
        offset=offset,
        key=FIRM.encode(),
        value=value,
        headers=headers
        if headers is not None
        else cloudevents.headers(
            f"ev-{offset}", "cn.gov.songjiang.subsidy.application.v1", "intake", "t" * 32, time=now
        ),
    )
    dlq = topic + ".dlq" if not topic.endswith(".dlq") else topic
    return dead_letters.encode(
        record, error, dlq_topic=dlq, consumer="eligibility", source="eligibility", trace_id=None, now=now
    )


def store_letter(store, built, offset=0) -> str:
    assert (
        handlers.record_letter(store, built.topic, 0, offset, built.value, built.headers, "2026-12-01T09:31:00Z")
        == "stored"
    )
    return f"{built.topic}/0/{offset}"


def outbox(store):
    with store.db.transaction() as tx:
        return tx.all("SELECT event_id, topic, key, value, headers FROM operations_outbox ORDER BY id")


def test_a_letter_is_stored_once_per_place_read(store):
    built = letter(application().SerializeToString())
    store_letter(store, built)
    again = handlers.record_letter(store, built.topic, 0, 0, built.value, built.headers, "2026-12-01T10:00:00Z")
    assert again == "duplicate"
    views, token = handlers.list_letters(store, built.topic, "", 0, "")
    assert len(views) == 1 and token == ""
    assert dict(handlers.list_topics(store))[built.topic]["PENDING"] == 1


def test_another_copy_of_a_letter_is_not_a_second_row(store):
    """A full replay of a consumer's group reads a poison record again and
    dead-letters it again: the same derived id at a new DLQ offset. The
    operator sees it once (issue 19's soak found the copies)."""
    first = letter(application().SerializeToString())
    store_letter(store, first, offset=0)
    copy = letter(application().SerializeToString(), now=NOW + dt.timedelta(hours=1))
    assert copy.event_id == first.event_id and copy.value != first.value  # failed_at differs
    outcome = handlers.record_letter(store, copy.topic, 0, 5, copy.value, copy.headers, "2026-12-01T10:31:00Z")
    assert outcome == "copy"
    views, _ = handlers.list_letters(store, first.topic, "", 0, "")
    assert [v.stored.letter_id for v in views] == [f"{first.topic}/0/0"]
    assert views[0].stored.dead_letter_id == first.event_id


def test_the_same_record_given_up_by_two_consumers_or_records_that_are_not_letters_are_kept_apart(store):
    mine = letter(application().SerializeToString())
    record = types.SimpleNamespace(
        topic=topics.APPLICATIONS.name, partition=2, offset=7, key=b"", value=b"x", headers=[]
    )
    theirs = dead_letters.encode(
        record, "bad", dlq_topic=mine.topic, consumer="review-applications", source="review", trace_id=None, now=NOW
    )
    store_letter(store, mine, offset=0)
    store_letter(store, theirs, offset=1)
    store_letter(store, types.SimpleNamespace(topic=mine.topic, value=b"not a letter", headers=[]), offset=2)
    store_letter(store, types.SimpleNamespace(topic=mine.topic, value=b"not a letter", headers=[]), offset=3)
    views, _ = handlers.list_letters(store, mine.topic, "", 0, "")
    assert len(views) == 4


def test_the_migration_gives_stored_letters_their_id_and_leaves_copies_already_kept_listed(store):
    import sqlalchemy

    from subsidy.services.operations.adapters.migrations import v0002_one_row_per_letter as v0002

    built = letter(application().SerializeToString())
    for offset in (0, 1):  # two copies, kept before the revision (no dead_letter_id then)
        store_letter(store, built, offset=offset)
        with store.db.transaction() as tx:
            tx.execute("UPDATE operations_letters SET dead_letter_id = NULL")
    engine = sqlalchemy.create_engine(store.db.url)
    with engine.begin() as connection:
        assert v0002.backfill(connection) == 1
    with store.db.transaction() as tx:
        rows = tx.all("SELECT letter_id, dead_letter_id FROM operations_letters ORDER BY seq")
    assert rows == [(f"{built.topic}/0/0", built.event_id), (f"{built.topic}/0/1", None)]


def test_the_letter_is_decoded_for_a_person(store):
    built = letter(application().SerializeToString(), error="unexpected error in 5 attempts: boom")
    store_letter(store, built)
    view = handlers.list_letters(store, built.topic, "", 0, "")[0][0]
    shown = letter_to_proto(view)
    assert shown.source_topic == topics.APPLICATIONS.name and shown.source_partition == 2 and shown.source_offset == 7
    assert shown.key == FIRM and shown.consumer == "eligibility" and shown.attempts == 5
    assert shown.failed_at == "2026-12-01T09:30:00.000Z"
    assert shown.event_id == "eligibility:subsidy.applications.v1/2/7"
    assert shown.value_type == "subsidy.v1.Application"
    decoded = json.loads(shown.value_json)
    assert decoded["application_id"] == "A-2026-0042" and decoded["firm"]["name"] == "松江示例科技有限公司"
    assert shown.replayable and shown.state == "PENDING"


def test_undecodable_values_and_envelopes_are_kept_with_the_reason(store):
    garbage = letter(b"\xff\xfe not protobuf \x00\x01", offset=8)
    store_letter(store, garbage, 0)
    feed = letter(json.dumps({"sequence": 4, "kind": "FIRM"}).encode(), topic="data-platform:/changes", offset=9)
    feed = dead_letters.DeadLetterRecord(topics.FIRMS_DLQ.name, feed.key, feed.value, feed.headers, feed.event_id)
    store_letter(store, feed, 1)
    # A record on a DLQ that is no DeadLetter at all is kept, never dropped.
    handlers.record_letter(store, topics.PAYMENTS_DLQ.name, 0, 3, b"\x0a\x05hello\xff", [], "2026-12-01T09:31:00Z")

    bad = letter_to_proto(handlers.list_letters(store, topics.APPLICATIONS_DLQ.name, "", 0, "")[0][0])
    assert bad.value_type == "" and "not a subsidy.v1.Application" in bad.decode_error and bad.value_preview
    shown = letter_to_proto(handlers.list_letters(store, topics.FIRMS_DLQ.name, "", 0, "")[0][0])
    assert shown.value_type == "JSON" and json.loads(shown.value_json)["kind"] == "FIRM"
    assert not shown.replayable and "not a topic of the contract" in shown.not_replayable_reason
    raw = letter_to_proto(handlers.list_letters(store, topics.PAYMENTS_DLQ.name, "", 0, "")[0][0])
    assert not raw.replayable and "could not be read" in raw.not_replayable_reason


def test_replay_publishes_the_original_through_the_outbox_once(store):
    built = letter(application().SerializeToString())
    lid = store_letter(store, built)
    view = handlers.replay(store, lid, "规则已修正", OPERATOR, "2026-12-01T10:00:00Z")
    assert view.stored.state == "REPLAYED" and view.stored.handled_by == "ops-zhao"
    (row,) = outbox(store)
    assert row[0] == f"replay:{lid}" and row[1] == topics.APPLICATIONS.name
    assert bytes(row[2]) == FIRM.encode() and bytes(row[3]) == application().SerializeToString()
    headers = dict(decode_headers(row[4]))
    assert headers["ce_id"] == b"ev-7"  # the original's own id: consumers that had it skip it
    assert headers["subsidy_replay_of"] == lid.encode()
    with pytest.raises(FailedPrecondition, match="already replayed by ops-zhao"):
        handlers.replay(store, lid, "", OPERATOR, "2026-12-01T10:01:00Z")
    with pytest.raises(FailedPrecondition):
        handlers.discard(store, lid, "重复", OPERATOR, "2026-12-01T10:01:00Z")
    assert len(outbox(store)) == 1
    _, trail = handlers.get_letter(store, lid)
    assert [(a.action, a.subject, a.role, a.reason) for a in trail] == [
        ("REPLAYED", "ops-zhao", "OPERATOR", "规则已修正")
    ]


def test_discard_needs_a_reason_and_is_audited(store):
    lid = store_letter(store, letter(b"junk"))
    with pytest.raises(InvalidArgument) as missing:
        handlers.discard(store, lid, "  ", OPERATOR, "2026-12-01T10:00:00Z")
    assert missing.value.field == "reason"
    with pytest.raises(InvalidArgument) as long:
        handlers.discard(store, lid, "长" * 501, OPERATOR, "2026-12-01T10:00:00Z")
    assert long.value.field == "reason"
    assert handlers.get_letter(store, lid)[0].stored.state == "PENDING"
    view = handlers.discard(store, lid, "测试数据，无需处理", OPERATOR, "2026-12-01T10:00:00Z")
    assert view.stored.state == "DISCARDED" and view.stored.handled_reason == "测试数据，无需处理"
    assert outbox(store) == []
    assert handlers.list_letters(store, topics.APPLICATIONS_DLQ.name, "PENDING", 0, "")[0] == []
    assert len(handlers.list_letters(store, topics.APPLICATIONS_DLQ.name, "DISCARDED", 0, "")[0]) == 1


@pytest.mark.parametrize("who", [Actor("rev-li", "REVIEWER"), Actor("", "OPERATOR"), Actor("fin-wang", "FINANCE")])
def test_only_an_identified_operator_handles_letters(store, who):
    lid = store_letter(store, letter(application().SerializeToString()))
    with pytest.raises(PermissionDenied):
        handlers.replay(store, lid, "", who, "2026-12-01T10:00:00Z")
    with pytest.raises(PermissionDenied):
        handlers.discard(store, lid, "x", who, "2026-12-01T10:00:00Z")
    assert outbox(store) == [] and handlers.get_letter(store, lid)[0].stored.state == "PENDING"


def test_a_truncated_letter_is_not_replayed(store):
    big = b"\x0a" + b"x" * (dead_letters.MAX_DEAD_LETTER_BYTES + 10)
    lid = store_letter(store, letter(big))
    with pytest.raises(FailedPrecondition, match="cut to fit"):
        handlers.replay(store, lid, "", OPERATOR, "2026-12-01T10:00:00Z")
    assert outbox(store) == []


@pytest.mark.parametrize("topic", [topics.PAYMENTS.name, topics.PAYOUTS.name, topics.POLICY_ADOPTIONS.name])
def test_letters_of_the_money_topics_and_the_adoption_trail_are_never_replayed(store, topic):
    """Only finance confirms payments, only payout writes its events, only
    eligibility writes the adoption trail; the operations service's Kafka user
    may write none of them, so a replay would sit in its outbox for ever."""
    lid = store_letter(store, letter(b"\x0a\x03abc", topic=topic))
    shown = letter_to_proto(handlers.get_letter(store, lid)[0])
    assert not shown.replayable and "written by its owner only" in shown.not_replayable_reason
    with pytest.raises(FailedPrecondition, match="written by its owner only"):
        handlers.replay(store, lid, "", OPERATOR, "2026-12-01T10:00:00Z")
    assert outbox(store) == [] and handlers.get_letter(store, lid)[0].stored.state == "PENDING"
    handlers.discard(store, lid, "由财政/账本重新发送", OPERATOR, "2026-12-01T10:00:00Z")


def test_listing_pages_newest_first_and_checks_its_input(store):
    for i in range(5):
        store_letter(store, letter(b"junk", offset=i), i)
    first, token = handlers.list_letters(store, topics.APPLICATIONS_DLQ.name, "", 2, "")
    second, token2 = handlers.list_letters(store, topics.APPLICATIONS_DLQ.name, "", 2, token)
    third, token3 = handlers.list_letters(store, topics.APPLICATIONS_DLQ.name, "", 2, token2)
    offsets = [v.stored.dlq_offset for v in first + second + third]
    assert offsets == [4, 3, 2, 1, 0] and token3 == ""
    with pytest.raises(InvalidArgument) as wrong:
        handlers.list_letters(store, topics.DECISIONS_DLQ.name, "", 2, token)
    assert wrong.value.field == "page_token"
    with pytest.raises(InvalidArgument) as topic:
        handlers.list_letters(store, "subsidy.applications.v1", "", 2, "")
    assert topic.value.field == "topic"
    with pytest.raises(InvalidArgument) as state:
        handlers.list_letters(store, topics.APPLICATIONS_DLQ.name, "LOST", 2, "")
    assert state.value.field == "state"
    with pytest.raises(NotFound):
        handlers.get_letter(store, "subsidy.applications.v1.dlq/0/99")


def test_attempts_from_the_reason():
    assert attempts_of("unexpected error in 5 attempts: KeyError") == 5
    assert attempts_of("delivery failed after 4 attempts") == 4
    assert attempts_of("not a Decision") == 1
