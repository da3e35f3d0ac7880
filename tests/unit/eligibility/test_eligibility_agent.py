"""The faust agent, in faust's test context (memory channel, no broker): it
only moves bytes from the applications topic to the decisions or dead-letter
topic, counting and logging on the way."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from eligibility_support import POLICY, application_record, demo_applications
from prometheus_client import CollectorRegistry

from subsidy.services.eligibility import handlers as processor
from subsidy.services.eligibility.adapters.kafka import create_app, faust_settings
from subsidy.services.eligibility.config import Settings
from subsidy.contracts import cloudevents, topics
from subsidy.platform import logs
from subsidy.v1 import decision_pb2, events_pb2

DEMO = demo_applications()
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def build(tmp_path, sent, fail=False, deliveries=None, max_in_flight=1000):
    """The service with a sink recording what it is given. Each record is
    acknowledged by the "broker" at once, unless ``deliveries`` (a list) is
    given: then the sink appends each record's pending delivery future there,
    for the test to resolve."""
    async def sink(topic, key, value, headers):
        if fail:
            raise ConnectionError("broker gone")
        sent.append((topic, key, value, headers))
        future = asyncio.get_running_loop().create_future()
        if deliveries is None:
            future.set_result(None)
        else:
            deliveries.append(future)
        return future

    settings = Settings(data_dir=tmp_path / "data", max_in_flight=max_in_flight)
    return create_app(settings, policy=POLICY, registry=CollectorRegistry(), sink=sink)


def run_in_test_context(service, records):
    async def main():
        async with service.agent.test_context() as agent:
            for key, value, headers in records:
                await agent.put(value=value, key=key, headers=headers)
            await service.in_flight.drained()

    asyncio.run(main())


async def until(condition, timeout=10.0):
    """Wait (bounded) for a condition the event loop will make true."""
    async def poll():
        while not condition():
            await asyncio.sleep(0)
    await asyncio.wait_for(poll(), timeout)


def produced(service, topic=topics.DECISIONS.name):
    return service.metrics.value("subsidy_messages_produced_total", topic=topic)


def test_the_agent_turns_an_application_into_a_decision_on_the_decisions_topic(tmp_path):
    sent = []
    service = build(tmp_path, sent)
    run_in_test_context(service, [application_record(DEMO[0], TRACE)])
    [(topic, key, value, headers)] = sent
    assert topic == topics.DECISIONS.name
    assert key == DEMO[0].firm.credit_code.encode()
    assert decision_pb2.Decision.FromString(value).application_id == DEMO[0].application_id
    assert cloudevents.trace_id_of(headers) == TRACE


def test_the_agent_dead_letters_garbage_and_keeps_going(tmp_path):
    sent = []
    service = build(tmp_path, sent)
    run_in_test_context(service, [(b"k", b"\xff\xfe", []), application_record(DEMO[1])])
    assert [s[0] for s in sent] == [topics.APPLICATIONS_DLQ.name, topics.DECISIONS.name]
    letter = events_pb2.DeadLetter.FromString(sent[0][2])
    assert letter.value == b"\xff\xfe" and letter.consumer == "eligibility"


def test_the_agent_counts_what_it_consumes_decides_dead_letters_and_produces(tmp_path):
    sent = []
    service = build(tmp_path, sent)
    run_in_test_context(service, [application_record(DEMO[0]), (b"k", b"", []), application_record(DEMO[3])])
    m = service.metrics
    # faust names the test channel's topic; what matters is one count per record.
    consumed = sum(s.value for s in m.consumed.collect()[0].samples if s.name.endswith("_total"))
    assert consumed == 3
    assert m.value("subsidy_messages_produced_total", topic=topics.DECISIONS.name) == 2
    assert m.value("subsidy_messages_produced_total", topic=topics.APPLICATIONS_DLQ.name) == 1
    dead = sum(s.value for s in m.dead_letters.collect()[0].samples if s.name.endswith("_total"))
    assert dead == 1
    d0 = processor.rules.evaluate(DEMO[0], POLICY)
    assert m.value("subsidy_decisions_total", clause=d0.clause, outcome=d0.outcome) >= 1


def test_the_agent_logs_each_decision_with_its_trace_id_and_no_firm_name(tmp_path, caplog):
    sent = []
    service = build(tmp_path, sent)
    formatter = logs.JsonFormatter("eligibility")
    with caplog.at_level(logging.INFO, logger="subsidy.eligibility"):
        run_in_test_context(service, [application_record(DEMO[0], TRACE)])
    lines = [json.loads(formatter.format(r)) for r in caplog.records if r.name == "subsidy.eligibility"]
    [line] = [entry for entry in lines if entry["message"].startswith("decided")]
    d = processor.rules.evaluate(DEMO[0], POLICY)
    assert line["message"] == f"decided application {d.application_id} clause {d.clause} outcome {d.outcome}"
    assert line["trace_id"] == TRACE
    assert DEMO[0].firm.name not in json.dumps(lines, ensure_ascii=False)


def test_a_failed_produce_crashes_the_app_rather_than_skipping_the_record(tmp_path):
    sent = []
    service = build(tmp_path, sent, fail=True)
    key, value, headers = application_record(DEMO[0])

    async def main():
        async with service.agent.test_context() as agent:
            event = await agent.put(value=value, key=key, headers=headers, wait=False)
            await until(lambda: service.app.crashed)
            assert not event.message.acked

    asyncio.run(main())
    assert isinstance(service.app.crash_reason, ConnectionError)
    assert produced(service) == 0


def test_a_process_whose_crash_does_not_stop_it_exits_after_its_limit(tmp_path, monkeypatch):
    import subsidy.services.eligibility.adapters.kafka as eligibility_app

    exits = []
    monkeypatch.setattr(eligibility_app, "_exit_after_crash", lambda after_s: exits.append(after_s))
    sent = []
    service = build(tmp_path, sent, fail=True)
    service.exit_after_crash_s = 0.05
    key, value, headers = application_record(DEMO[0])

    async def main():
        async with service.agent.test_context() as agent:
            await agent.put(value=value, key=key, headers=headers, wait=False)
            await until(lambda: service.app.crashed)
            await until(lambda: exits)

    asyncio.run(main())
    assert exits == [0.05]


def test_the_agent_hands_records_to_the_producer_without_waiting_and_acks_each_only_once_delivered(tmp_path):
    sent, deliveries, acked = [], [], []
    service = build(tmp_path, sent, deliveries=deliveries)
    records = [application_record(DEMO[n]) for n in (0, 1, 2)]

    async def main():
        async with service.agent.test_context() as agent:
            original = service.delivered
            service.delivered = lambda s: (acked.append(s.event.message.offset), original(s))
            for key, value, headers in records:
                await agent.put(value=value, key=key, headers=headers, wait=False)
            # All three are with the producer while the broker has acknowledged none.
            await until(lambda: len(deliveries) == 3)
            in_flight = service.in_flight
            assert len(in_flight) == 3 and acked == [] and produced(service) == 0
            messages = [s.event.message for s in in_flight._queue]
            assert not any(m.acked for m in messages)
            # The broker acknowledges the third, then the first: only the
            # first is acknowledged to faust; the third waits for the second.
            deliveries[2].set_result(None)
            deliveries[0].set_result(None)
            await until(lambda: len(in_flight) == 2)
            assert acked == [0] and [m.acked for m in messages] == [True, False, False]
            assert produced(service) == 1
            deliveries[1].set_result(None)
            await in_flight.drained()
            assert acked == [0, 1, 2] and all(m.acked for m in messages)
            assert produced(service) == 3

    asyncio.run(main())


def test_a_delivery_the_producer_gives_up_on_crashes_the_app_and_nothing_after_it_is_acknowledged(tmp_path):
    sent, deliveries = [], []
    service = build(tmp_path, sent, deliveries=deliveries)
    records = [application_record(DEMO[n]) for n in (0, 1, 2)]

    async def main():
        async with service.agent.test_context() as agent:
            for key, value, headers in records:
                await agent.put(value=value, key=key, headers=headers, wait=False)
            await until(lambda: len(deliveries) == 3)
            in_flight = service.in_flight
            messages = [s.event.message for s in in_flight._queue]
            deliveries[0].set_result(None)
            deliveries[2].set_result(None)
            deliveries[1].set_exception(ConnectionError("broker gone"))
            with pytest.raises(ConnectionError):
                await in_flight.drained()
            await until(lambda: service.app.crashed)
            # The failed record and the one after it stay unacknowledged: their
            # offsets can never be committed, so both are decided again.
            assert [m.acked for m in messages] == [True, False, False]
            assert produced(service) == 1

    asyncio.run(main())


def test_reading_waits_while_max_in_flight_outputs_are_unacknowledged(tmp_path):
    sent, deliveries = [], []
    service = build(tmp_path, sent, deliveries=deliveries, max_in_flight=2)
    records = [application_record(DEMO[n]) for n in (0, 1, 2, 3)]

    async def main():
        async with service.agent.test_context() as agent:
            for key, value, headers in records:
                await agent.put(value=value, key=key, headers=headers, wait=False)
            await until(lambda: len(deliveries) == 2)
            # The agent is blocked in InFlight.add: no third record is taken
            # while two wait for the broker (the loop gets many turns to try).
            for _ in range(200):
                await asyncio.sleep(0)
            assert len(sent) == 2 and len(service.in_flight) == 2
            deliveries[0].set_result(None)
            await until(lambda: len(deliveries) == 3)
            deliveries[1].set_result(None)
            await until(lambda: len(deliveries) == 4)
            for d in deliveries[2:]:
                d.set_result(None)
            await service.in_flight.drained()
            assert produced(service) == 4

    asyncio.run(main())


def test_faust_is_configured_for_at_least_once_on_a_one_node_broker(tmp_path):
    conf = faust_settings(Settings(bootstrap_servers="a:1,b:2", topic_replication_factor=1, data_dir=tmp_path))
    assert conf["broker"] == ["kafka://a:1", "kafka://b:2"]
    assert conf["processing_guarantee"] == "at_least_once"
    assert conf["store"] == "memory://"
    assert conf["topic_replication_factor"] == 1 and conf["topic_disable_leader"] is True
    assert conf["web_enabled"] is False
    service = build(tmp_path, [])
    assert service.app.conf.id == "subsidy-eligibility"
    assert service.agent.concurrency == 1  # more instances would share one queue: no order per partition
    assert str(service.app.conf.processing_guarantee).endswith("at_least_once") or service.app.conf.processing_guarantee.value == "at_least_once"
