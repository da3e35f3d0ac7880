"""The faust features that are unsafe for eligibility stay off, and the two
places where faust's start and stop go wrong are kept out of the way
(docs/adr/0011-faust-in-eligibility.md). Each assertion reads the app and
agent as the service builds them, not our own constants."""

from __future__ import annotations

import asyncio

from eligibility_support import POLICY
from faust.types.enums import ProcessingGuarantee
from prometheus_client import CollectorRegistry

from subsidy.contracts import topics
from subsidy.services.eligibility.adapters.kafka import faust_settings
from subsidy.services.eligibility.bootstrap import create_app
from subsidy.services.eligibility.config import Settings


def built(tmp_path):
    return create_app(Settings(data_dir=tmp_path / "data"), policy=POLICY, registry=CollectorRegistry())


def test_at_least_once_not_faust_exactly_once(tmp_path):
    app = built(tmp_path).app
    assert app.conf.processing_guarantee is ProcessingGuarantee.AT_LEAST_ONCE
    assert not app.in_transaction, "no Kafka transaction producer per partition"


def test_one_agent_actor_over_shared_partitions_so_a_firm_s_records_stay_in_order(tmp_path):
    agent = built(tmp_path).agent
    assert agent.concurrency == 1
    assert not agent.isolated_partitions


def test_no_table_so_nothing_to_recover_and_no_changelog(tmp_path):
    app = built(tmp_path).app
    assert len(app.tables) == 0 and not app.tables.changelog_topics
    assert str(app.conf.store) == "memory:"


def test_the_agent_reads_raw_bytes_so_faust_never_skips_a_record_it_cannot_decode(tmp_path):
    """A typed topic would let faust acknowledge (and commit past) a value it
    fails to deserialize; raw, every record reaches the handler and, if bad,
    the dead-letter topic."""
    source = built(tmp_path).applications
    assert source.get_topic_name() == topics.APPLICATIONS.name
    assert (source.key_type, source.value_type) == (bytes, bytes)
    assert (source.key_serializer, source.value_serializer) == ("raw", "raw")
    assert source.allow_empty, "a tombstone reaches the handler (and the DLQ)"


def test_outputs_are_produced_now_and_a_stop_or_rebalance_waits_for_what_was_taken(tmp_path):
    app = built(tmp_path).app
    assert app.conf.stream_publish_on_commit is False
    assert app.conf.stream_wait_empty is True


def test_the_settings_for_a_one_node_development_broker(tmp_path):
    conf = faust_settings(Settings(bootstrap_servers="a:1,b:2", topic_replication_factor=1, data_dir=tmp_path))
    assert conf["broker"] == ["kafka://a:1", "kafka://b:2"]
    assert conf["topic_replication_factor"] == 1 and conf["topic_disable_leader"] is True
    assert conf["web_enabled"] is False
    assert conf["consumer_auto_offset_reset"] == "earliest"
    assert conf["producer_acks"] == -1
    assert built(tmp_path).app.conf.id == "subsidy-eligibility"


def test_a_rebalance_reaching_a_stopping_app_leaves_the_consumer_to_its_own_stop(tmp_path, monkeypatch):
    """faust's own handling closes the aiokafka consumer from the app's event
    loop, not the consumer thread's: the SIGTERM hang of the e2e test."""
    import faust

    app = built(tmp_path).app

    async def main():
        closed = []
        monkeypatch.setattr(type(app.consumer), "close", lambda consumer: closed.append(consumer))
        app._stopped.set()
        await app._on_partitions_assigned(set())
        await app._on_partitions_revoked(set())
        assert closed == []
        faust.App._on_rebalance_when_stopped(app)
        assert closed == [app.consumer]

    asyncio.run(main())


def test_not_serving_until_the_consumer_has_joined_the_group(tmp_path):
    """faust's services count as started as soon as they begin starting;
    SERVING before the first rebalance completed invites a SIGTERM into the
    middle of the start."""
    service = built(tmp_path)
    app = service.app

    async def main():
        app._started.set()
        app.consumer._started.set()
        assert not service.ready()
        assert service.not_ready_reason() == "faust consumer has not joined the group yet"
        await app.on_rebalance_complete.send()
        assert service.ready(), service.not_ready_reason()
        app._stopped.set()
        assert service.not_ready_reason() == "faust consumer not running"

    asyncio.run(main())
