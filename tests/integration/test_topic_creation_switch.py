"""SUBSIDY_KAFKA_TOPIC_CREATION (subsidy/platform/topics.py) on the real
broker: off, a service's ensure_all creates nothing; it answers when every
contract topic exists and raises TopicsMissing naming each missing topic
when one does not (and still creates nothing); on (the default) it creates."""

from __future__ import annotations

import uuid

import pytest
from kafka import KafkaAdminClient

from subsidy.contracts import topics as contract
from subsidy.contracts.topics import TopicSpec
from subsidy.platform import topics

pytestmark = pytest.mark.integration


def existing(bootstrap: str) -> set[str]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def test_creation_off_checks_and_creates_nothing(kafka_bootstrap, monkeypatch):
    topics.ensure_all(kafka_bootstrap, create=True)  # the contract's topics, as KafkaTopics make them in prod
    monkeypatch.setenv(topics.CREATION_VARIABLE, "off")
    assert topics.ensure_all(kafka_bootstrap) == {spec.name: "exists" for spec in contract.ALL}

    absent = TopicSpec(f"subsidy.absent-{uuid.uuid4().hex[:8]}.v1", 3)
    other = TopicSpec(f"subsidy.absent-{uuid.uuid4().hex[:8]}.v1", 3)
    with pytest.raises(topics.TopicsMissing) as caught:
        topics.check_topics(kafka_bootstrap, [contract.DECISIONS, absent, other])
    assert caught.value.missing == sorted([absent.name, other.name])
    assert absent.name in str(caught.value) and "SUBSIDY_KAFKA_TOPIC_CREATION=off" in str(caught.value)
    assert contract.DECISIONS.name not in caught.value.missing
    assert absent.name not in existing(kafka_bootstrap)

    # The same specs with creation on: made.
    assert topics.ensure_topics(kafka_bootstrap, [absent]) == {absent.name: "created"}
    assert absent.name in existing(kafka_bootstrap)


@pytest.mark.parametrize(
    ("value", "enabled"), [("", True), ("on", True), ("ON", True), ("off", False), (" off ", False), ("false", False)]
)
def test_the_switch_reads_on_and_off(value, enabled):
    assert topics.creation_enabled({topics.CREATION_VARIABLE: value}) is enabled
    assert topics.creation_enabled({}) is True


def test_a_value_that_is_neither_is_refused_naming_the_variable():
    with pytest.raises(ValueError, match="SUBSIDY_KAFKA_TOPIC_CREATION: expected on or off, got 'no'"):
        topics.creation_enabled({topics.CREATION_VARIABLE: "no"})


# ------------------------------------------------------------------ a service with creation off


def test_payout_starts_and_serves_with_creation_off_when_the_topics_exist(
    kafka_bootstrap, postgres_url, tmp_path, monkeypatch
):
    from .test_payout_support import RunningPayout, database_url, settings

    topics.ensure_all(kafka_bootstrap, create=True)  # what the KafkaTopics are in prod
    monkeypatch.setenv(topics.CREATION_VARIABLE, "off")
    url = database_url("postgresql", tmp_path, postgres_url)
    with RunningPayout(settings(kafka_bootstrap, url)) as svc:  # waits until SERVING
        assert svc.app.relay.topics_ready.is_set()
        assert svc.app.not_ready_reason() is None


def test_payout_names_a_missing_topic_and_stays_unready(kafka_bootstrap, postgres_url, tmp_path, monkeypatch, caplog):
    from subsidy.services.payout.bootstrap import PayoutApp

    from .running import RunningApp, migrate, wait_for
    from .test_payout_support import database_url, settings

    absent = TopicSpec(f"subsidy.absent-{uuid.uuid4().hex[:8]}.v1", 1)
    monkeypatch.setattr(contract, "ALL", (*contract.ALL, absent))  # the contract names a topic nobody declared
    monkeypatch.setenv(topics.CREATION_VARIABLE, "off")
    url = database_url("postgresql", tmp_path, postgres_url)
    migrate("payout", url)
    caplog.set_level("WARNING", logger="subsidy")
    with RunningApp(lambda: PayoutApp(settings(kafka_bootstrap, url))) as svc:
        wait_for(lambda: svc.app.relay.failing_since is not None, timeout=30)
        assert not svc.app.relay.topics_ready.is_set()
        assert not svc.app.serving()
        # Once its consumers run, the relay is what keeps it unready.
        wait_for(lambda: "outbox relay" in (svc.app.not_ready_reason() or ""), timeout=60)
        errors = [str(getattr(r, "fields", {}).get("error", "")) for r in caplog.records]
        assert any("TopicsMissing" in e and absent.name in e for e in errors), errors
    assert absent.name not in existing(kafka_bootstrap)
