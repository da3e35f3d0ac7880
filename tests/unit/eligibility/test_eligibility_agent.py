"""The faust agent, in faust's test context (memory channel, no broker): it
reads, hands each record to the handler, gives the decision or dead letter
to the producer, and acknowledges each record to faust (Stream.ack) only
once the broker has its output and that of every record read before it."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging

import faust
import pytest
from eligibility_support import POLICY, application_record, demo_applications, record
from prometheus_client import CollectorRegistry

from subsidy.contracts import cloudevents, topics
from subsidy.platform import logs
from subsidy.services.eligibility import handlers
from subsidy.services.eligibility.adapters import kafka as adapter
from subsidy.services.eligibility.bootstrap import create_app
from subsidy.services.eligibility.config import Settings
from subsidy.v1 import decision_pb2, events_pb2

DEMO = demo_applications()
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
NOW = dt.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=dt.UTC)


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
    return create_app(settings, policy=POLICY, registry=CollectorRegistry(), sink=sink, clock=lambda: NOW)


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


class StreamEventsOut(faust.Sensor):
    """What faust's Stream.ack reports: each event a stream is done with."""

    def __init__(self):
        super().__init__()
        self.offsets = []

    def on_stream_event_out(self, tp, offset, stream, event, state=None):
        self.offsets.append(offset)


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
    assert letter.error.startswith("not a subsidy.v1.Application protobuf")
    assert sent[0][1] == b"k", "the dead letter keeps the record's key"


def test_a_dead_letter_is_the_shared_encoding_with_an_id_derived_from_where_the_record_was(tmp_path):
    service = build(tmp_path, [])
    headers = [("ce_id", b"x-1"), ("ce_traceparent", f"00-{TRACE}-00f067aa0ba902b7-01".encode())]
    message = record(b"913101170BCJ72CC83", b"\xff\xfe not protobuf", headers)
    with pytest.raises(handlers.Rejected) as refused:
        service.handler(message)
    outcome = service.dead_letter(message, refused.value)
    assert outcome.topic == topics.APPLICATIONS_DLQ.name and outcome.key == b"913101170BCJ72CC83"
    letter = events_pb2.DeadLetter.FromString(outcome.value)
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (topics.APPLICATIONS.name, 3, 41)
    assert (letter.key, letter.value) == (b"913101170BCJ72CC83", b"\xff\xfe not protobuf")
    assert [(h.key, h.value) for h in letter.headers] == headers
    assert letter.consumer == "eligibility" and letter.failed_at == "2024-05-06T07:08:09.123Z"
    ce = cloudevents.as_dict(outcome.headers)
    assert ce["ce_id"] == "eligibility:subsidy.applications.v1/3/41"
    assert ce["ce_type"] == cloudevents.TYPE_DEAD_LETTER and ce["ce_time"] == "2024-05-06T07:08:09.123Z"
    assert cloudevents.trace_id_of(outcome.headers) == TRACE, "the letter keeps the trace of the record it holds"
    assert outcome.source == (topics.APPLICATIONS.name, 3, 41) and not outcome.unexpected


def test_a_tombstone_is_dead_lettered_with_no_key_and_an_empty_value(tmp_path):
    service = build(tmp_path, [])
    message = record(None, None)
    with pytest.raises(handlers.Rejected) as refused:
        service.handler(message)
    outcome = service.dead_letter(message, refused.value)
    assert outcome.key is None and events_pb2.DeadLetter.FromString(outcome.value).value == b""


def test_a_handler_that_fails_with_anything_but_a_rejection_still_dead_letters_the_record_as_unexpected(tmp_path):
    sent = []
    service = build(tmp_path, sent)
    calls = []

    def flaky(message):
        calls.append(message.offset)
        if len(calls) == 1:
            raise KeyError("a bug outside the handler's own guards")
        return handlers.Handler(POLICY, clock=lambda: NOW)(message)

    service.handler = flaky
    run_in_test_context(service, [application_record(DEMO[0]), application_record(DEMO[1])])
    assert [s[0] for s in sent] == [topics.APPLICATIONS_DLQ.name, topics.DECISIONS.name]
    assert events_pb2.DeadLetter.FromString(sent[0][2]).error == (
        'handling failed unexpectedly: KeyError: "a bug outside the handler\'s own guards"'
    )


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
    d0 = handlers.rules.evaluate(DEMO[0], POLICY)
    assert m.value("subsidy_decisions_total", clause=d0.clause, outcome=d0.outcome) >= 1


def test_the_agent_logs_each_decision_with_its_trace_id_and_no_firm_name(tmp_path, caplog):
    sent = []
    service = build(tmp_path, sent)
    formatter = logs.JsonFormatter("eligibility")
    with caplog.at_level(logging.INFO, logger="subsidy.eligibility"):
        run_in_test_context(service, [application_record(DEMO[0], TRACE)])
    lines = [json.loads(formatter.format(r)) for r in caplog.records if r.name == "subsidy.eligibility"]
    [line] = [entry for entry in lines if entry["message"].startswith("decided")]
    d = handlers.rules.evaluate(DEMO[0], POLICY)
    assert line["message"] == f"decided application {d.application_id} clause {d.clause} outcome {d.outcome}"
    assert line["trace_id"] == TRACE
    assert DEMO[0].firm.name not in json.dumps(lines, ensure_ascii=False)


def test_an_unexpected_failure_is_logged_at_error_with_the_cause_and_the_partition_moves_on(
    tmp_path, caplog, monkeypatch
):
    def broken(app, policy, on=None):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(handlers.rules, "evaluate", broken)
    sent = []
    service = build(tmp_path, sent)
    with caplog.at_level(logging.INFO, logger="subsidy.eligibility"):
        run_in_test_context(service, [application_record(DEMO[0]), application_record(DEMO[1])])
    assert [s[0] for s in sent] == [topics.APPLICATIONS_DLQ.name] * 2
    errors = [r for r in caplog.records if r.name == "subsidy.eligibility" and r.levelno == logging.ERROR]
    assert len(errors) == 2 and all(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in errors)


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


def test_a_bug_in_the_reading_loop_crashes_the_app_instead_of_letting_faust_restart_the_agent(tmp_path):
    sent, deliveries = [], []
    service = build(tmp_path, sent, deliveries=deliveries)
    submit = service.submit
    calls = []

    async def second_fails(message):
        calls.append(message.offset)
        if len(calls) == 2:
            raise RuntimeError("a bug in the agent")
        return await submit(message)

    service.submit = second_fails
    records = [application_record(DEMO[n]) for n in (0, 1, 2)]

    async def main():
        async with service.agent.test_context() as agent:
            for key, value, headers in records:
                await agent.put(value=value, key=key, headers=headers, wait=False)
            await until(lambda: service.app.crashed)
            # Restarted, the agent would take the third record and could have
            # it acknowledged (and committed) past the second.
            for _ in range(200):
                await asyncio.sleep(0)
            assert len(calls) == 2 and len(sent) == 1

    asyncio.run(main())
    assert isinstance(service.app.crash_reason, RuntimeError)


def test_a_process_whose_crash_does_not_stop_it_exits_after_its_limit(tmp_path, monkeypatch):
    exits = []
    monkeypatch.setattr(adapter, "_exit_after_crash", lambda after_s: exits.append(after_s))
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
    sent, deliveries = [], []
    service = build(tmp_path, sent, deliveries=deliveries)
    records = [application_record(DEMO[n]) for n in (0, 1, 2)]

    async def main():
        async with service.agent.test_context() as agent:
            for key, value, headers in records:
                await agent.put(value=value, key=key, headers=headers, wait=False)
            # All three are with the producer while the broker has acknowledged none.
            await until(lambda: len(deliveries) == 3)
            in_flight = service.in_flight
            messages = [s.event.message for s in in_flight._queue]
            assert len(in_flight) == 3 and produced(service) == 0
            assert not any(m.acked for m in messages)
            # The broker acknowledges the third, then the first: only the
            # first is acknowledged to faust; the third waits for the second.
            deliveries[2].set_result(None)
            deliveries[0].set_result(None)
            await until(lambda: len(in_flight) == 2)
            for _ in range(50):
                await asyncio.sleep(0)
            assert [m.acked for m in messages] == [True, False, False]
            assert produced(service) == 1
            deliveries[1].set_result(None)
            await in_flight.drained()
            assert all(m.acked for m in messages)
            assert produced(service) == 3
            # Through faust's own Stream.ack: its sensors saw each event out, in read order.
            assert acks.offsets == [m.offset for m in messages]

    acks = StreamEventsOut()
    service.app.sensors.add(acks)
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


def test_records_in_flight_when_the_agent_is_cancelled_are_still_acknowledged_once_delivered(tmp_path):
    """faust cancels an agent's actor (and restarts it) outside a stop too;
    what that actor handed to the producer must still be acknowledged, or
    faust's wait for every stream to acknowledge what it took (at the next
    rebalance or stop) would never end."""
    sent, deliveries = [], []
    service = build(tmp_path, sent, deliveries=deliveries)
    records = [application_record(DEMO[n]) for n in (0, 1)]

    async def main():
        async with service.agent.test_context() as agent:
            for key, value, headers in records:
                await agent.put(value=value, key=key, headers=headers, wait=False)
            await until(lambda: len(deliveries) == 2)
            in_flight = service.in_flight
            messages = [s.event.message for s in in_flight._queue]
            [actor] = agent._actors
            task = actor.actor_task
            task.cancel()
            await until(task.done)
            assert not any(m.acked for m in messages)
            for delivery in deliveries:
                delivery.set_result(None)
            await until(lambda: all(m.acked for m in messages))
            assert len(in_flight) == 0 and produced(service) == 2

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
