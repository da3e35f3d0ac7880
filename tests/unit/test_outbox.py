"""subsidy/platform/outbox.py: the relay sends a whole batch before waiting, marks the
acknowledged prefix in one transaction, and stops at the first failure so
the order of the outbox is the order on Kafka."""

from __future__ import annotations

import time

import kafka.errors as kafka_errors
import pytest

from subsidy.platform import metrics as shared
from subsidy.platform.db import Database
from subsidy.platform.outbox import OutboxRelay, OutboxTable, encode_headers


class Counter:
    def __init__(self):
        self.value = 0

    def inc(self, n=1):
        self.value += n


class Future:
    def __init__(self, error=None):
        self.is_done = False
        self.exception = None
        self._error = error

    def resolve(self):
        self.is_done = True
        self.exception = self._error

    def get(self, timeout=None):
        self.resolve()
        if self.exception:
            raise self.exception


class Producer:
    """Records sends; a future resolves only when the relay waits on it."""

    def __init__(self, fail_at=None, refuse_at=None, error=None, refusal=None):
        self.sent: list[bytes] = []
        self.events: list[str] = []
        self.fail_at, self.refuse_at = fail_at, refuse_at
        self.error = error or RuntimeError("broker said no")
        self.refusal = refusal or RuntimeError("metadata not available")
        self.closed = False

    def close(self, timeout=None):
        self.closed = True

    def send(self, topic, key, value, headers):
        if len(self.sent) == self.refuse_at:
            raise self.refusal
        self.sent.append(value)
        self.events.append(f"send {value.decode()}")
        future = Future(self.error if len(self.sent) - 1 == self.fail_at else None)
        original = future.get

        def get(timeout=None, _value=value.decode()):
            self.events.append(f"wait {_value}")
            return original(timeout)

        future.get = get
        return future


class CountingDatabase(Database):
    transactions = 0

    def transaction(self):
        self.transactions += 1
        return super().transaction()


@pytest.fixture
def table(tmp_path):
    db = CountingDatabase(f"sqlite:///{tmp_path / 'outbox.db'}", store="test")
    with db.transaction() as tx:
        tx.execute(
            "CREATE TABLE t_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, key BLOB NOT NULL,"
            " value BLOB NOT NULL, headers TEXT NOT NULL, created_at TEXT NOT NULL, published_at TEXT,"
            " parked_at TEXT, parked_reason TEXT)"
        )
        for n in range(5):
            tx.execute(
                "INSERT INTO t_outbox (topic, key, value, headers, created_at) VALUES (?, ?, ?, ?, ?)",
                (
                    "t",
                    b"k",
                    f"r{n}".encode(),
                    encode_headers([("ce_id", f"r{n}".encode())]),
                    "2025-03-01T08:00:00.000000Z",
                ),
            )
    yield OutboxTable(db, "t_outbox", lock_key=1)
    db.close()


def relay(table, producer):
    r = OutboxRelay(
        table, "unused:9092", service="test", published=Counter(), failures=Counter(), producer_factory=lambda: producer
    )
    r._producer = producer
    return r


def test_a_batch_is_sent_whole_before_any_acknowledgement_is_awaited_and_marked_in_one_transaction(table):
    producer = Producer()
    r = relay(table, producer)
    table.db.transactions = 0
    assert r.publish_once() == 5
    assert producer.events[:5] == [f"send r{n}" for n in range(5)]
    assert table.pending_count() == 0
    assert table.db.transactions == 1 + 1 + 1  # read the batch, mark it, count
    assert r._published.value == 5


def test_only_the_prefix_before_a_failed_send_is_marked_and_the_error_is_raised(table):
    producer = Producer(fail_at=2)
    r = relay(table, producer)
    with pytest.raises(RuntimeError, match="broker said no"):
        r.publish_once()
    assert [row.value for row in table.pending()] == [b"r2", b"r3", b"r4"]


def test_a_send_refused_outright_ends_the_batch_after_the_rows_already_sent(table):
    producer = Producer(refuse_at=3)
    r = relay(table, producer)
    with pytest.raises(RuntimeError, match="metadata"):
        r.publish_once()
    assert [row.value for row in table.pending()] == [b"r3", b"r4"]
    assert producer.sent == [b"r0", b"r1", b"r2"]


def test_nothing_pending_publishes_nothing(table):
    producer = Producer()
    r = relay(table, producer)
    assert r.publish_once() == 5
    assert r.publish_once() == 0
    assert len(producer.sent) == 5


def test_the_table_name_must_be_an_identifier(table):
    with pytest.raises(ValueError):
        OutboxTable(table.db, "t_outbox; DROP TABLE x", lock_key=1)


class StuckProducer(Producer):
    """Takes sends and never settles them: what kafka-python's idempotent
    producer was seen doing after a hard broker restart."""

    closed = False

    def send(self, topic, key, value, headers):
        self.sent.append(value)
        future = Future()
        future.get = lambda timeout=None: None  # never done, never failed
        return future

    def close(self, timeout=None):
        self.closed = True


def test_a_send_that_never_settles_fails_the_batch_after_the_delivery_timeout_and_marks_nothing(table):
    r = relay(table, StuckProducer())
    r.delivery_timeout_ms = 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("subsidy.platform.outbox.ACK_MARGIN_S", 0.05)
        with pytest.raises(RuntimeError, match="no acknowledgement and no error"):
            r.publish_once()
    assert table.pending_count() == 5


def test_after_a_stuck_producer_the_relay_makes_a_new_one_which_publishes_the_batch(table):
    stuck, fresh = StuckProducer(), Producer()
    made = iter([stuck, fresh])
    r = OutboxRelay(
        table,
        "unused:9092",
        service="test",
        published=Counter(),
        failures=Counter(),
        producer_factory=lambda: next(made),
        ensure_topics=lambda bootstrap: None,
    )
    r.delivery_timeout_ms = 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("subsidy.platform.outbox.ACK_MARGIN_S", 0.05)
        r.start()
        try:
            deadline = time.monotonic() + 10
            while table.pending_count() and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            r.stop(2)
    assert stuck.closed and len(stuck.sent) == 5
    assert table.pending_count() == 0 and fresh.sent == [f"r{n}".encode() for n in range(5)]
    assert r._failures.value == 1


def test_health_names_a_relay_that_is_not_running_or_keeps_failing(table):
    r = relay(table, Producer())
    assert r.not_ready_reason(60) == "outbox relay: Kafka producer not running or publishing failing"
    r.producer_ready.set()
    assert r.not_ready_reason(60) is None
    r.failing_since = time.monotonic() - 61
    assert r.not_ready_reason(60) == "outbox relay: Kafka producer not running or publishing failing"


def parked(table):
    with table.db.transaction() as tx:
        return tx.all("SELECT value, parked_reason FROM t_outbox WHERE parked_at IS NOT NULL ORDER BY id")


@pytest.mark.parametrize(
    "error",
    [
        kafka_errors.MessageSizeTooLargeError("the broker's message.max.bytes"),
        kafka_errors.RecordListTooLargeError(),
        kafka_errors.InvalidRecordError(),
    ],
)
def test_a_record_the_broker_rejects_for_good_is_parked_with_its_reason_and_the_rows_after_it_go_on(table, error):
    producer = Producer(fail_at=2, error=error)
    r = relay(table, producer)
    before = shared.OUTBOX_PARKED.labels("test", type(error).__name__)._value.get()
    assert r.publish_once() == 3  # r0, r1 acknowledged, r2 parked: no exception, no retry
    assert [(bytes(v), reason.split(":")[0]) for v, reason in parked(table)] == [(b"r2", type(error).__name__)]
    assert shared.OUTBOX_PARKED.labels("test", type(error).__name__)._value.get() == before + 1
    assert producer.closed  # a new producer for the rest
    fresh = Producer()
    r._producer = fresh
    assert r.publish_once() == 2
    assert fresh.sent == [b"r3", b"r4"]
    assert table.pending_count() == 0 and table.stats()[0] == 0
    assert r.publish_once() == 0 and r._failures.value == 0


def test_a_record_over_the_producers_max_request_size_refused_at_send_is_parked(table):
    producer = Producer(
        refuse_at=1,
        refusal=kafka_errors.MessageSizeTooLargeError("larger than the maximum request size (max_request_size)"),
    )
    r = relay(table, producer)
    assert r.publish_once() == 2
    assert [bytes(v) for v, _ in parked(table)] == [b"r1"]
    assert "max_request_size" in parked(table)[0][1]
    assert [row.value for row in table.pending()] == [b"r2", b"r3", b"r4"]


def test_a_passing_failure_is_still_retried_not_parked(table):
    producer = Producer(fail_at=0, error=kafka_errors.KafkaTimeoutError("request timed out"))
    r = relay(table, producer)
    with pytest.raises(kafka_errors.KafkaTimeoutError):
        r.publish_once()
    assert parked(table) == [] and table.pending_count() == 5
