"""operations' letter gauges, what SubsidyDeadLettersUnhandled reads
(deploy/k8s/base/monitoring/prometheus-rules.yaml): per DLQ topic, the
letters per state and the age of the oldest one neither replayed nor
discarded, from a real store (SQLite) after letters are recorded and
handled, aged by the clock the service is given."""

from __future__ import annotations

import datetime as dt

from prometheus_client import REGISTRY

from subsidy.contracts import topics
from subsidy.services.operations import handlers, metrics
from subsidy.services.operations.model import DLQ_TOPICS
from tests.unit.operations.test_operations import OPERATOR, application, letter, store  # noqa: F401 - fixture

APPLICATIONS_DLQ = topics.APPLICATIONS_DLQ.name
DECISIONS_DLQ = topics.DECISIONS_DLQ.name


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def record(store, topic: str, offset: int, received_at: str) -> str:  # noqa: F811 - the fixture's store
    built = letter(application().SerializeToString(), offset=offset)
    assert handlers.record_letter(store, topic, 0, offset, built.value, built.headers, received_at) == "stored"
    return f"{topic}/0/{offset}"


def refresh(store, now: dt.datetime) -> None:  # noqa: F811
    metrics.refresh_letters(store.counts(), store.oldest_pending(), now)


def test_the_oldest_pending_letter_ages_by_topic_and_handled_letters_do_not_count(store):  # noqa: F811
    first = record(store, APPLICATIONS_DLQ, 1, "2026-12-01T08:00:00Z")
    record(store, APPLICATIONS_DLQ, 2, "2026-12-01T20:00:00Z")
    only = record(store, DECISIONS_DLQ, 3, "2026-12-01T12:00:00Z")
    now = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)

    refresh(store, now)
    age = "subsidy_operations_dead_letters_oldest_pending_age_seconds"
    assert gauge(age, topic=APPLICATIONS_DLQ) == 25 * 3600  # since 08:00 the day before
    assert gauge(age, topic=DECISIONS_DLQ) == 21 * 3600
    assert gauge("subsidy_operations_dead_letters", topic=APPLICATIONS_DLQ, state="PENDING") == 2

    # The oldest discarded: the next one is the oldest now.
    handlers.discard(store, first, "已核实为测试数据", OPERATOR, "2026-12-02T08:59:00Z")
    refresh(store, now)
    assert gauge(age, topic=APPLICATIONS_DLQ) == 13 * 3600
    assert gauge("subsidy_operations_dead_letters", topic=APPLICATIONS_DLQ, state="PENDING") == 1
    assert gauge("subsidy_operations_dead_letters", topic=APPLICATIONS_DLQ, state="DISCARDED") == 1

    # A topic's last pending letter handled: 0, not its last value.
    handlers.discard(store, only, "重复", OPERATOR, "2026-12-02T08:59:00Z")
    refresh(store, now)
    assert gauge(age, topic=DECISIONS_DLQ) == 0
    assert gauge("subsidy_operations_dead_letters", topic=DECISIONS_DLQ, state="PENDING") == 0


def test_every_dlq_topic_has_its_series_from_the_first_refresh(store):  # noqa: F811
    refresh(store, dt.datetime(2026, 12, 2, tzinfo=dt.UTC))
    for topic in DLQ_TOPICS:
        assert gauge("subsidy_operations_dead_letters_oldest_pending_age_seconds", topic=topic) == 0
        for state in ("PENDING", "REPLAYED", "DISCARDED"):
            assert gauge("subsidy_operations_dead_letters", topic=topic, state=state) == 0
