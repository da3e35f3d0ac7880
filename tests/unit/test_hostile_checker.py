"""The fault suite's promise about hostile records (tests/faults/hostile.py,
``problems``): each dead-lettered by every consumer that must, once per pass
over it (1 + the full replays of the consumer's service since), each copy
under the letter's derived id, and by no other consumer."""

from __future__ import annotations

import datetime as dt
import types

from faults.hostile import Hostile, Placed, problems

from subsidy.contracts import topics
from subsidy.platform import dead_letters

NOW = dt.datetime(2026, 12, 2, 10, 0, tzinfo=dt.UTC)
POISON = Hostile(
    topic=topics.DECISIONS.name,
    key=b"k",
    value=b"\xff",
    what="garbage",
    dead=frozenset({"payout", "notify"}),
    why="not a Decision",
)
PLACED = Placed(POISON, partition=3, offset=19)


def dlq_record(consumer: str, ce_id: str | None = None) -> types.SimpleNamespace:
    source = types.SimpleNamespace(
        topic=POISON.topic, partition=PLACED.partition, offset=PLACED.offset, key=b"k", value=b"\xff", headers=[]
    )
    letter = dead_letters.encode(
        source, "bad", dlq_topic=topics.DECISIONS_DLQ.name, consumer=consumer, source="test", trace_id=None, now=NOW
    )
    headers = [(k, v) for k, v in letter.headers if k != "ce_id" or ce_id is None]
    if ce_id is not None:
        headers.append(("ce_id", ce_id.encode()))
    return types.SimpleNamespace(value=letter.value, headers=headers)


def found(*records):
    return lambda topic: list(records) if topic == topics.DECISIONS_DLQ.name else []


def test_once_by_each_consumer_that_must_holds():
    assert problems([PLACED], found(dlq_record("payout"), dlq_record("notify"))) == []


def test_twice_in_one_pass_is_a_record_handled_twice():
    (problem,) = problems([PLACED], found(dlq_record("payout"), dlq_record("payout"), dlq_record("notify")))
    assert "more than once by ['payout']" in problem


def test_a_full_replay_of_the_consumers_service_allows_one_more_copy():
    passes = {"payout": 2}
    records = found(dlq_record("payout"), dlq_record("payout"), dlq_record("notify"))
    assert problems([PLACED], records, passes=lambda consumer: passes.get(consumer, 1)) == []
    thrice = found(*[dlq_record("payout")] * 3, dlq_record("notify"))
    assert problems([PLACED], thrice, passes=lambda consumer: passes.get(consumer, 1)) != []


def test_a_copy_under_another_id_could_not_be_folded_and_is_a_problem():
    records = found(dlq_record("payout"), dlq_record("payout", ce_id="payout:elsewhere"), dlq_record("notify"))
    (problem,) = problems([PLACED], records, passes=lambda consumer: 2)
    assert "ce_id not payout:" in problem


def test_a_missing_or_an_unwanted_consumer_is_a_problem():
    assert problems([PLACED], found(dlq_record("payout"))) != []
    assert problems([PLACED], found(dlq_record("payout"), dlq_record("notify"), dlq_record("review"))) != []
