"""The shared kafka-python consumer loop (subsidy/platform/consumer.py), driven with
a fake consumer: batches, one commit per poll, rewinds, dead letters, and
replacing a member that is stuck."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import namedtuple
from types import SimpleNamespace

import pytest
from kafka import TopicPartition
from kafka.errors import CommitFailedError, KafkaTimeoutError

from subsidy.contracts import cloudevents
from subsidy.platform import metrics
from subsidy.platform.consumer import KafkaRecordLoop, RecordRejected
from subsidy.v1 import events_pb2

TOPIC = "subsidy.decisions.v1"
P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
NOW = dt.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=dt.UTC)

Sent = namedtuple("Sent", "topic key value headers")


def record(tp, offset, value=b"ok"):
    return SimpleNamespace(topic=tp.topic, partition=tp.partition, offset=offset, key=b"k", value=value, headers=[])


class FakeConsumer:
    """Polls hand out scripted batches, then nothing; positions follow what was polled and sought."""

    def __init__(self, batches, assigned=(P0, P1), ends=None):
        self.batches = list(batches)
        self.assigned = set(assigned)
        self.ends = dict(ends or {})
        self.commits: list[dict] = []
        self.seeks: list[tuple] = []
        self.positions: dict = {}
        self.closed = False
        self.polled = threading.Event()
        self.poll_times: list[float] = []

    def poll(self, timeout_ms=0, max_records=None):
        self.poll_times.append(time.monotonic())
        if not self.batches:
            self.polled.set()
            time.sleep(0.005)
            return {}
        batch = self.batches.pop(0)
        for tp, records in batch.items():
            self.positions[tp] = records[-1].offset + 1
        return batch

    def commit(self, offsets, timeout_ms=None):
        self.commits.append({tp: meta.offset for tp, meta in offsets.items()})

    def seek(self, tp, offset):
        self.seeks.append((tp, offset))
        self.positions[tp] = offset

    def assignment(self):
        return set(self.assigned)

    def end_offsets(self, tps, timeout_ms=None):
        return {tp: self.ends.get(tp, self.positions.get(tp, 0)) for tp in tps}

    def position(self, tp, timeout_ms=None):
        return self.positions.get(tp, 0)

    def close(self, autocommit=True):
        self.closed = True


def refuse_first_commits(consumer, *errors):
    """The consumer's next commits raise ``errors``, one each; later ones are recorded."""
    refusals = iter(errors)
    commit = consumer.commit

    def refusing(offsets, timeout_ms=None):
        for error in refusals:
            raise error
        commit(offsets, timeout_ms)

    consumer.commit = refusing


class FakeProducer:
    def __init__(self):
        self.sent: list[Sent] = []

    def send(self, topic, key=None, value=None, headers=None):
        self.sent.append(Sent(topic, key, value, headers))
        return SimpleNamespace(get=lambda timeout=None: None)

    def close(self, timeout=None):
        pass


def new_loop(handler, consumers, producer=None, **kwargs):
    made = iter(consumers)
    return KafkaRecordLoop(
        "test-consumer",
        handler,
        "unused",
        topics=[TOPIC],
        group_id="g",
        dlq_topic=f"{TOPIC}.dlq",
        source="/test",
        max_backoff=0.01,
        consumer_factory=lambda: next(made),
        producer_factory=lambda: producer or FakeProducer(),
        **kwargs,
    )


def run_until(loop, condition, timeout=5.0):
    loop.start()
    try:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "condition not reached"
            time.sleep(0.005)
    finally:
        loop.stop()


def test_a_polled_batch_is_committed_once_after_every_record_of_it_was_handled():
    handled = []
    consumer = FakeConsumer([{P0: [record(P0, 5), record(P0, 6)], P1: [record(P1, 9)]}])

    def handler(rec):
        assert consumer.commits == [], "nothing is committed before the whole batch is handled"
        handled.append((rec.partition, rec.offset))
        return "applied"

    loop = new_loop(handler, [consumer])
    run_until(loop, consumer.polled.is_set)
    assert handled == [(0, 5), (0, 6), (1, 9)]
    assert consumer.commits == [{P0: 7, P1: 10}]


def test_a_failure_keeps_what_was_handled_and_rewinds_the_rest_so_nothing_is_skipped():
    attempts = []
    consumer = FakeConsumer([{P0: [record(P0, 0), record(P0, 1), record(P0, 2)], P1: [record(P1, 4)]}])

    def handler(rec):
        attempts.append((rec.partition, rec.offset))
        if (rec.partition, rec.offset) == (0, 1) and attempts.count((0, 1)) == 1:
            raise ConnectionError("database down")
        return "applied"

    # What the broker would hand out again after the seeks.
    consumer.batches.append({P0: [record(P0, 1), record(P0, 2)], P1: [record(P1, 4)]})
    loop = new_loop(handler, [consumer])
    run_until(loop, consumer.polled.is_set)
    assert consumer.commits[0] == {P0: 1}, "the handled record is kept"
    assert (P0, 1) in consumer.seeks and (P1, 4) in consumer.seeks
    assert consumer.commits[-1] == {P0: 3, P1: 5}
    assert attempts.count((0, 0)) == 1


def test_a_commit_that_fails_is_retried_before_the_next_poll_so_lag_returns_to_zero_without_new_records():
    consumer = FakeConsumer([{P0: [record(P0, 3)]}])
    refuse_first_commits(consumer, KafkaTimeoutError("coordinator not available"))
    handled = []
    loop = new_loop(lambda rec: handled.append(rec.offset) or "applied", [consumer])
    run_until(loop, lambda: consumer.commits)
    assert consumer.commits == [{P0: 4}]
    assert handled == [3], "the record is not handled again"


def test_a_commit_refused_by_a_rebalance_is_dropped_and_the_records_are_redone_by_their_next_owner():
    consumer = FakeConsumer([{P0: [record(P0, 3)]}])

    def refused(offsets, timeout_ms=None):
        raise CommitFailedError("the group rebalanced")

    consumer.commit = refused
    loop = new_loop(lambda rec: "applied", [consumer])
    run_until(loop, consumer.polled.is_set)
    assert loop._uncommitted == {}


def test_what_was_handled_on_partitions_being_revoked_is_committed_first():
    consumer = FakeConsumer([{P0: [record(P0, 3)], P1: [record(P1, 8)]}])
    loop = new_loop(lambda rec: "applied", [])
    loop._consumer = consumer
    loop._uncommitted = {P0: 4, P1: 9}
    loop.partitions_revoked({P0, P1})
    assert consumer.commits == [{P0: 4, P1: 9}] and loop._uncommitted == {}


def test_a_commit_the_revoke_listener_cannot_make_is_made_after_the_join_for_the_partitions_that_came_back():
    """kafka-python 3.0 runs the rebalance listener on its I/O thread and
    refuses a blocking commit there. It keeps the position of a partition
    the member holds again, so nothing reads those records again: unless the
    offsets are committed after the join, the group's lag stays above 0
    (the soak's seed 101: lag 1 on subsidy-notify for 4 minutes)."""
    consumer = FakeConsumer([])
    refuse_first_commits(consumer, RuntimeError("Cannot block on net.run() from the IO thread itself"))
    loop = new_loop(lambda rec: "applied", [])
    loop._consumer = consumer
    loop._uncommitted = {P0: 4, P1: 9}
    loop.partitions_revoked({P0, P1})
    assert consumer.commits == [] and loop._uncommitted == {}
    loop.partitions_announced({P0})  # P0 came back (its position kept); P1 went to another member
    assert loop._uncommitted == {P0: 4}
    loop._poll_once()  # the next poll commits it first, though no record follows
    assert consumer.commits == [{P0: 4}] and loop._uncommitted == {}


def test_a_rejected_record_is_dead_lettered_with_its_reason_and_the_partition_moves_on():
    producer = FakeProducer()
    consumer = FakeConsumer([{P0: [record(P0, 0, b"\xff"), record(P0, 1)]}])

    def handler(rec):
        if rec.value == b"\xff":
            raise RecordRejected("not a subsidy.v1.Decision protobuf")
        return "applied"

    before = metrics.DEAD_LETTERS.labels(TOPIC, "test-consumer")._value.get()
    loop = new_loop(handler, [consumer], producer, clock=lambda: NOW)
    run_until(loop, consumer.polled.is_set)
    [sent] = producer.sent
    letter = events_pb2.DeadLetter.FromString(sent.value)
    assert sent.topic == f"{TOPIC}.dlq" and sent.key == b"k"
    assert (letter.source_offset, letter.value, letter.consumer) == (0, b"\xff", "test-consumer")
    assert letter.error == "not a subsidy.v1.Decision protobuf"
    assert consumer.commits == [{P0: 2}]
    assert metrics.DEAD_LETTERS.labels(TOPIC, "test-consumer")._value.get() == before + 1


def test_a_dead_letter_is_the_shared_encoding_with_the_injected_time_and_an_id_naming_the_consumer():
    """Two consumers of one topic share its DLQ (intake's decision projection
    and payout on subsidy.decisions.v1.dlq): their letters about one record
    must not carry the same id."""
    producer = FakeProducer()
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = [("ce_traceparent", f"00-{trace}-00f067aa0ba902b7-01".encode())]
    bad = SimpleNamespace(topic=TOPIC, partition=1, offset=7, key=b"k", value=b"\xff", headers=headers)
    consumer = FakeConsumer([{P1: [bad]}])

    def handler(rec):
        raise RecordRejected("not a subsidy.v1.Decision protobuf")

    loop = new_loop(handler, [consumer], producer, clock=lambda: NOW)
    run_until(loop, consumer.polled.is_set)
    [sent] = producer.sent
    letter = events_pb2.DeadLetter.FromString(sent.value)
    assert letter.failed_at == "2024-05-06T07:08:09.123Z"
    assert [(h.key, h.value) for h in letter.headers] == headers
    ce = cloudevents.as_dict(sent.headers)
    assert ce["ce_id"] == f"test-consumer:{TOPIC}/1/7"
    assert ce["ce_time"] == "2024-05-06T07:08:09.123Z" and ce["ce_source"] == "/test"
    assert cloudevents.trace_id_of(sent.headers) == trace


def test_a_member_left_without_partitions_is_replaced_after_its_limit():
    stuck = FakeConsumer([], assigned=())
    fresh = FakeConsumer([{P0: [record(P0, 0)]}])
    handled = []
    loop = new_loop(lambda rec: handled.append(rec.offset) or "applied", [stuck, fresh], rejoin_after_s=0.05)
    run_until(loop, lambda: handled == [0])
    assert stuck.closed
    assert metrics.KAFKA_CONSUMER_RESTARTS.labels("test-consumer", "unassigned")._value.get() >= 1


def test_a_member_whose_polls_return_nothing_while_it_has_lag_is_starved():
    loop = new_loop(lambda rec: "applied", [], stall_s=10)
    loop._consumer = FakeConsumer([])
    loop.progress.broker_answered(lag=3)
    now = loop.progress.last_broker_contact
    loop._last_records_at = now - 11
    assert loop.stuck_reason(now).startswith("starved: lag 3")
    loop.progress.broker_answered(lag=0)
    assert loop.stuck_reason(now) is None


def test_a_member_that_cannot_reach_the_broker_is_left_to_health_not_replaced():
    loop = new_loop(lambda rec: "applied", [], stall_s=10)
    loop._consumer = FakeConsumer([])
    loop.progress.broker_answered(lag=3)
    later = loop.progress.last_broker_contact + 30
    loop._last_records_at = later - 30
    assert loop.stuck_reason(later) is None


def test_a_rebalance_that_settles_within_the_limit_is_not_stuck():
    loop = new_loop(lambda rec: "applied", [], rejoin_after_s=30)
    consumer = loop._consumer = FakeConsumer([], assigned=())
    assert loop.stuck_reason(100.0) is None
    assert loop.stuck_reason(120.0) is None
    consumer.assigned = {P0}
    assert loop.stuck_reason(140.0) is None
    consumer.assigned = set()
    assert loop.stuck_reason(150.0) is None
    assert loop.stuck_reason(181.0).startswith("unassigned")


@pytest.mark.parametrize("session_ms, stall_s, expected", [(15_000, 60, 45.0), (6_000, 60, 30.0)])
def test_the_rejoin_limit_is_three_session_timeouts_but_not_under_half_the_stall_limit(session_ms, stall_s, expected):
    loop = new_loop(lambda rec: "applied", [], stall_s=stall_s, consumer_config={"session_timeout_ms": session_ms})
    assert loop.rejoin_after_s == expected


class Scope:
    """A batch scope (like a database transaction per poll) that fails to commit ``failures`` times."""

    def __init__(self, failures=0):
        self.failures = failures
        self.entered = 0
        self.committed = 0

    def __call__(self):
        import contextlib

        @contextlib.contextmanager
        def scope():
            self.entered += 1
            yield
            if self.failures:
                self.failures -= 1
                raise ConnectionError("COMMIT failed: database down")
            self.committed += 1

        return scope()


def test_a_batch_whose_scope_fails_to_commit_commits_no_offset_and_is_redone_whole():
    batch = {P0: [record(P0, 0), record(P0, 1)], P1: [record(P1, 4)]}
    consumer = FakeConsumer([batch, dict(batch)])  # the second: what the broker hands out after the seeks
    scope = Scope(failures=1)
    handled = []

    def handler(rec):
        handled.append((rec.partition, rec.offset))
        return "applied"

    loop = new_loop(handler, [consumer], batch_scope=scope)
    run_until(loop, consumer.polled.is_set)
    assert scope.entered == 2 and scope.committed == 1
    assert all(offsets == {} for offsets in consumer.commits[:-1]), "no offset of the failed batch committed"
    assert consumer.commits[-1] == {P0: 2, P1: 5}
    assert (P0, 0) in consumer.seeks and (P1, 4) in consumer.seeks, "rewound to the batch's first records"
    assert handled == [(0, 0), (0, 1), (1, 4)] * 2


def test_a_failure_inside_a_batch_scope_rewinds_the_whole_batch_not_just_the_failed_record():
    attempts = []
    consumer = FakeConsumer([{P0: [record(P0, 0), record(P0, 1), record(P0, 2)]}])

    def handler(rec):
        attempts.append(rec.offset)
        if rec.offset == 1 and attempts.count(1) == 1:
            raise ConnectionError("database down")
        return "applied"

    consumer.batches.append({P0: [record(P0, 0), record(P0, 1), record(P0, 2)]})
    scope = Scope()
    loop = new_loop(handler, [consumer], batch_scope=scope)
    run_until(loop, consumer.polled.is_set)
    assert (P0, 0) in consumer.seeks, "record 0 was handled in the scope that failed: redone"
    assert {P0: 1} not in consumer.commits
    assert consumer.commits[-1] == {P0: 3}
    assert attempts == [0, 1, 0, 1, 2]


def test_a_record_rejected_in_a_batch_is_dead_lettered_once_after_the_scope_committed_even_when_redone():
    producer = FakeProducer()
    batch = {P0: [record(P0, 0, b"\xff"), record(P0, 1)]}
    consumer = FakeConsumer([batch, dict(batch)])
    scope = Scope(failures=1)

    def handler(rec):
        if rec.value == b"\xff":
            assert producer.sent == [], "not sent before the scope committed"
            raise RecordRejected("not a subsidy.v1.Decision protobuf")
        return "applied"

    loop = new_loop(handler, [consumer], producer, batch_scope=scope)
    run_until(loop, consumer.polled.is_set)
    [sent] = producer.sent
    assert events_pb2.DeadLetter.FromString(sent.value).source_offset == 0
    assert consumer.commits[-1] == {P0: 2}


# -- failures nobody foresaw: bounded attempts, then a dead letter (issue 17) ---------


def test_a_record_whose_handler_keeps_failing_unexpectedly_is_dead_lettered_after_its_attempts_and_the_partition_moves_on():
    poison, after = record(P0, 3, b"poison"), record(P0, 4)
    # The loop rewinds to the poison record after each failure: script one redelivery per attempt.
    batches = [{P0: [poison, after]} for _ in range(4)]  # 3 failed attempts, then the dead letter
    consumer = FakeConsumer(batches)
    producer = FakeProducer()
    handled = []

    def handler(rec):
        if rec.value == b"poison":
            raise KeyError("clause")  # a bug: not a rejection, not transient
        handled.append(rec.offset)
        return "applied"

    before = metrics.CONSUMER_UNEXPECTED_ERRORS.labels("test-consumer", "KeyError")._value.get()
    loop = new_loop(handler, [consumer], producer, max_attempts=3)
    run_until(loop, lambda: handled == [4])
    assert len(producer.sent) == 1, "dead-lettered once, after its attempts"
    letter = events_pb2.DeadLetter.FromString(producer.sent[0].value)
    assert letter.error.startswith("unexpected error in 3 attempts: KeyError")
    assert {P0: 5} in consumer.commits
    assert metrics.CONSUMER_UNEXPECTED_ERRORS.labels("test-consumer", "KeyError")._value.get() - before == 3
    assert loop._attempts == {}


def test_an_unexpected_failure_that_passes_on_a_retry_is_not_dead_lettered():
    flaky = record(P0, 0)
    consumer = FakeConsumer([{P0: [flaky]}, {P0: [flaky]}])
    producer = FakeProducer()
    calls = []

    def handler(rec):
        calls.append(rec.offset)
        if len(calls) == 1:
            raise ValueError("a unique key taken by another replica a moment ago")
        return "applied"

    loop = new_loop(handler, [consumer], producer, max_attempts=3)
    run_until(loop, lambda: {P0: 1} in consumer.commits)
    assert calls == [0, 0] and producer.sent == []
    assert loop._attempts == {}


def test_a_transient_failure_is_retried_past_the_attempts_and_never_dead_lettered():
    from subsidy.platform.db import DatabaseUnavailable

    rec = record(P0, 0)
    consumer = FakeConsumer([{P0: [rec]} for _ in range(6)])
    producer = FakeProducer()
    calls = []

    def handler(r):
        calls.append(r.offset)
        if len(calls) < 6:
            raise DatabaseUnavailable("PostgreSQL is not reachable")
        return "applied"

    loop = new_loop(handler, [consumer], producer, max_attempts=2)
    run_until(loop, lambda: {P0: 1} in consumer.commits)
    assert len(calls) == 6 and producer.sent == []


def test_inside_a_batch_scope_the_poison_record_is_dead_lettered_and_the_rest_of_the_batch_kept():
    poison, good = record(P1, 7, b"poison"), record(P1, 8)
    consumer = FakeConsumer([{P1: [poison, good]}, {P1: [poison, good]}])
    producer = FakeProducer()
    scope = Scope()
    handled = []

    def handler(rec):
        if rec.value == b"poison":
            raise TypeError("unsupported operand")
        handled.append(rec.offset)
        return "applied"

    loop = new_loop(handler, [consumer], producer, max_attempts=1, batch_scope=scope)
    run_until(loop, lambda: {P1: 9} in consumer.commits)
    assert handled == [8] and len(producer.sent) == 1


def test_max_attempts_below_one_is_refused():
    with pytest.raises(ValueError, match="max_attempts"):
        new_loop(lambda rec: "applied", [], max_attempts=0)


# -- the watchdog and the first join ----------------------------------------------------


def test_a_consumer_call_that_does_not_return_is_reported_with_its_duration():
    loop = new_loop(lambda rec: "applied", [])
    assert loop.hung_call(100.0) is None
    loop._in_call = ("poll", 10.0)
    assert loop.hung_call(10.0 + loop.hung_call_s - 1) is None
    call, seconds = loop.hung_call(10.0 + loop.hung_call_s + 5)
    assert call == "poll" and seconds == pytest.approx(loop.hung_call_s + 5)


def test_the_watchdog_logs_the_stack_of_a_hung_poll(caplog):
    release = threading.Event()

    class HangingConsumer(FakeConsumer):
        def poll(self, timeout_ms=0, max_records=None):
            release.wait(5)
            return {}

    loop = new_loop(lambda rec: "applied", [HangingConsumer([])])
    loop.hung_call_s = 0.2
    before = metrics.KAFKA_CONSUMER_HUNG_CALLS.labels("test-consumer", "poll")._value.get()
    with caplog.at_level("ERROR", logger="subsidy.platform.consumer"):
        loop.start()
        try:
            deadline = time.monotonic() + 5
            while metrics.KAFKA_CONSUMER_HUNG_CALLS.labels("test-consumer", "poll")._value.get() == before:
                assert time.monotonic() < deadline, "the hung poll was never reported"
                time.sleep(0.02)
        finally:
            release.set()
            loop.stop()
    hung = [r for r in caplog.records if r.getMessage() == "a Kafka consumer call has not returned"]
    assert hung and "release.wait" in hung[0].fields["stack"]


def test_a_member_never_assigned_since_it_joined_is_replaced_after_two_session_timeouts():
    loop = new_loop(lambda rec: "applied", [], stall_s=60, consumer_config={"session_timeout_ms": 10_000})
    consumer = loop._consumer = FakeConsumer([], assigned=())
    assert loop.rejoin_after_s == 30.0 and loop.first_assignment_within_s == 20.0
    assert loop.stuck_reason(0.0) is None
    assert loop.stuck_reason(19.0) is None
    assert loop.stuck_reason(21.0).startswith("unassigned")
    # Once it had partitions, a later rebalance gets the longer limit.
    loop._unassigned_since = None
    consumer.assigned = {P0}
    loop.stuck_reason(30.0)
    consumer.assigned = set()
    assert loop.stuck_reason(31.0) is None
    assert loop.stuck_reason(55.0) is None
    assert loop.stuck_reason(62.0).startswith("unassigned")


def test_a_member_holding_partitions_its_listener_never_announced_is_replaced():
    """kafka-python was seen to hold a second join's partitions without calling
    on_partitions_assigned: no position, no fetch, lag 0. Held but unannounced
    counts as unassigned, so the member is replaced after the same limits."""
    loop = new_loop(lambda rec: "applied", [], stall_s=60, consumer_config={"session_timeout_ms": 10_000})
    consumer = loop._consumer = FakeConsumer([], assigned={P0, P1})
    loop._announced = set()  # the loop's own listener is subscribed
    assert loop.stuck_reason(0.0) is None
    assert loop.stuck_reason(19.0) is None
    assert loop.stuck_reason(21.0) == "unannounced: 2 partitions held but never announced for 21s"
    loop._unassigned_since = None
    loop.partitions_announced({P0, P1})
    assert loop.stuck_reason(30.0) is None and loop._assigned_once
    # A rebalance: revoked, then held again without an announcement -> the longer limit.
    loop.partitions_revoked({P0, P1})
    assert loop.stuck_reason(31.0) is None
    assert loop.stuck_reason(60.0) is None
    assert loop.stuck_reason(62.0).startswith("unannounced")
    # Announced in time: never stuck.
    loop._unassigned_since = None
    loop.partitions_announced({P0, P1})
    consumer.assigned = {P0}
    assert loop.stuck_reason(100.0) is None


def test_a_consumer_without_the_loops_listener_is_judged_by_its_assignment_alone():
    loop = new_loop(lambda rec: "applied", [], stall_s=60, consumer_config={"session_timeout_ms": 10_000})
    loop._consumer = FakeConsumer([], assigned={P0})
    assert loop._announced is None
    assert loop.stuck_reason(0.0) is None and loop.stuck_reason(500.0) is None


def test_the_batch_prelude_sees_every_record_of_the_poll_inside_the_scope_before_any_is_handled():
    events = []
    consumer = FakeConsumer([{P0: [record(P0, 0)], P1: [record(P1, 5), record(P1, 6)]}])

    class Scope:
        def __call__(self):
            import contextlib

            @contextlib.contextmanager
            def scope():
                events.append("begin")
                yield
                events.append("commit")

            return scope()

    loop = new_loop(
        lambda rec: events.append(("handle", rec.offset)) or "applied",
        [consumer],
        batch_scope=Scope(),
        batch_prelude=lambda records: events.append(("prelude", sorted(r.offset for r in records))),
    )
    run_until(loop, lambda: consumer.commits)
    assert events[:6] == ["begin", ("prelude", [0, 5, 6]), ("handle", 0), ("handle", 5), ("handle", 6), "commit"]


def test_with_a_commit_interval_polls_in_quick_succession_share_one_commit_and_stopping_commits_the_rest():
    batches = [{P0: [record(P0, n)]} for n in range(5)]
    consumer = FakeConsumer(batches)
    loop = new_loop(lambda rec: "applied", [consumer], commit_interval_s=60.0)
    run_until(loop, consumer.polled.is_set)
    # The first poll commits (nothing was committed yet); the four after it
    # fall inside the interval; the stop commits what they handled.
    assert consumer.commits == [{P0: 1}, {P0: 5}]


def test_an_idle_loop_commits_what_the_interval_held_back_so_lag_returns_to_zero():
    consumer = FakeConsumer([{P0: [record(P0, 0)]}, {P0: [record(P0, 1)]}])
    loop = new_loop(lambda rec: "applied", [consumer], commit_interval_s=0.2)
    # Not stopped before the check: the commit comes from the idle polls.
    run_until(loop, lambda: consumer.commits and consumer.commits[-1] == {P0: 2}, timeout=3.0)
    assert consumer.commits[0] == {P0: 1}


def test_without_an_interval_every_poll_commits():
    consumer = FakeConsumer([{P0: [record(P0, n)]} for n in range(3)])
    loop = new_loop(lambda rec: "applied", [consumer], commit_interval_s=0.0)
    run_until(loop, consumer.polled.is_set)
    assert consumer.commits == [{P0: 1}, {P0: 2}, {P0: 3}]


# -- adaptive batching: a trickle of records is gathered, a backlog is not held back


def gaps(times):
    return [later - earlier for earlier, later in zip(times, times[1:])]


def test_after_a_poll_that_did_not_fill_max_poll_records_the_next_poll_waits_out_the_interval():
    consumer = FakeConsumer([{P0: [record(P0, n)]} for n in range(3)])
    loop = new_loop(lambda rec: "applied", [consumer], min_poll_interval_s=0.1, commit_interval_s=0.0)
    run_until(loop, consumer.polled.is_set)
    # Polls 2, 3 and the first empty one each follow a poll that brought one record.
    assert all(gap >= 0.095 for gap in gaps(consumer.poll_times[:4])), gaps(consumer.poll_times[:4])
    assert consumer.commits == [{P0: 1}, {P0: 2}, {P0: 3}]


def test_a_poll_that_filled_max_poll_records_is_followed_at_once_so_a_backlog_drains_at_full_speed():
    batches = [{P0: [record(P0, 2 * n), record(P0, 2 * n + 1)]} for n in range(5)]
    consumer = FakeConsumer(batches)
    loop = new_loop(lambda rec: "applied", [consumer], min_poll_interval_s=5.0, max_poll_records=2)
    run_until(loop, consumer.polled.is_set, timeout=2.0)
    assert consumer.positions[P0] == 10


def test_an_idle_loop_is_not_held_back_it_waits_in_the_brokers_long_poll():
    consumer = FakeConsumer([])
    loop = new_loop(lambda rec: "applied", [consumer], min_poll_interval_s=5.0)
    run_until(loop, lambda: len(consumer.poll_times) >= 5, timeout=2.0)


def test_a_stop_during_the_wait_ends_the_loop_at_once_and_commits_what_was_handled():
    consumer = FakeConsumer([{P0: [record(P0, 0)]}, {P0: [record(P0, 1)]}])
    loop = new_loop(lambda rec: "applied", [consumer], min_poll_interval_s=30.0, commit_interval_s=60.0)
    loop.start()
    deadline = time.monotonic() + 5
    while not consumer.commits:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    started = time.monotonic()
    loop.stop()
    assert time.monotonic() - started < 2.0
    assert len(consumer.poll_times) == 1, "the second batch was never polled: the loop was waiting"
    assert consumer.commits == [{P0: 1}]
