"""subsidy/platform/process.py: the service skeleton intake, payout and
notify run on — the health watch that keeps their gRPC health answers true,
and the order of start and stop."""

from __future__ import annotations

import asyncio
import logging

import pytest

from subsidy.platform import migrations
from subsidy.platform.db import Database
from subsidy.platform.grpc.server import NOT_SERVING, SERVING
from subsidy.platform.process import Readiness, ServiceApp, stalled, watch_health
from subsidy.services.notify.adapters.migrations import HISTORY

LOG = logging.getLogger("test.process")


class Answers:
    """Records what the watch sets (the one call it makes on grpc's health servicer)."""

    def __init__(self):
        self.set_calls: list[tuple[str, int]] = []

    async def set(self, name, status):
        self.set_calls.append((name, status))

    async def enter_graceful_shutdown(self):
        self.set_calls.append(("*", NOT_SERVING))


def run_watch(readiness_steps, refresh=None, refresh_s=0.0, rounds=None):
    answers = Answers()
    steps = iter(readiness_steps)
    rounds = rounds or len(readiness_steps)
    seen = []

    def readiness():
        seen.append(1)
        return next(steps)

    async def scenario():
        task = asyncio.create_task(watch_health(answers, readiness, 0.001, LOG, refresh=refresh, refresh_s=refresh_s))
        while len(seen) < rounds:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    return answers.set_calls


def test_the_answers_follow_readiness_and_are_set_only_when_they_change(caplog):
    down = Readiness("database unreachable", {"": False, "svc": False})
    up = Readiness(None, {"": True, "svc": True})
    half = Readiness("relay failing", {"": False, "svc": True}, {"accepting_submissions": True})
    with caplog.at_level(logging.INFO, logger="test.process"):
        calls = run_watch([down, down, up, up, half, half])
    assert calls == [
        ("", NOT_SERVING),
        ("svc", NOT_SERVING),
        ("", SERVING),
        ("svc", SERVING),
        ("", NOT_SERVING),
        ("svc", SERVING),
    ]
    logged = [r.fields for r in caplog.records if r.getMessage() == "health"]
    assert logged == [
        {"status": "NOT_SERVING", "reason": "database unreachable"},
        {"status": "SERVING", "reason": None},
        {"status": "NOT_SERVING", "accepting_submissions": True, "reason": "relay failing"},
    ]
    assert list(logged[2]) == ["status", "accepting_submissions", "reason"]


def test_gauges_are_refreshed_on_the_way_and_a_failed_refresh_does_not_stop_the_watch():
    refreshed = []

    def refresh():
        refreshed.append(1)
        if len(refreshed) == 1:
            raise ConnectionError("database down")

    up = Readiness(None, {"": True})
    run_watch([up] * 4, refresh=refresh, refresh_s=0.0, rounds=4)
    assert len(refreshed) >= 3
    refreshed.clear()
    run_watch([up] * 4, refresh=refresh, refresh_s=3600.0, rounds=4)
    assert len(refreshed) == 1, "at most once per refresh_s"


class FakeServer:
    def __init__(self, events):
        self.events = events

    async def start(self):
        self.events.append("server started")

    async def stop(self, grace):
        self.events.append(f"server stopped ({grace}s)")


class Settings:
    metrics_address = ""
    health_interval_s = 0.01
    grace_s = 2.0


class Toy(ServiceApp):
    name = "toy"
    health_names = ("", "toy.v1.Toy")

    def __init__(self, db):
        super().__init__(Settings(), db, HISTORY, LOG)
        self.events: list[str] = []

    def build_server(self):
        self.events.append("server built")
        return FakeServer(self.events), 4242

    async def start_work(self):
        self.events.append("work started")

    async def stop_work(self):
        self.events.append("work stopped")
        await self.stop_server(self.settings.grace_s)

    def not_ready_reason(self):
        return None

    def started_fields(self):
        return {"grpc_port": self.port}


def test_a_service_checks_its_schema_first_and_refuses_to_start_on_an_old_one():
    toy = Toy(Database("sqlite:///:memory:", store="toy"))
    with pytest.raises(migrations.SchemaNotReady):
        asyncio.run(toy.start())
    assert toy.events == [], "nothing started before the schema was checked"


def test_a_service_starts_and_stops_its_parts_in_order(caplog):
    db = Database("sqlite:///:memory:", store="toy")
    migrations.upgrade(db, HISTORY)
    toy = Toy(db)

    async def scenario():
        await toy.start()
        for _ in range(100):  # the watch's first round
            if any(r.getMessage() == "health" for r in caplog.records):
                break
            await asyncio.sleep(0.01)
        await toy.stop()

    with caplog.at_level(logging.INFO, logger="test.process"):
        asyncio.run(scenario())
    assert toy.events == ["server built", "server started", "work started", "work stopped", "server stopped (2.0s)"]
    messages = [r.getMessage() for r in caplog.records if r.name == "test.process"]
    assert messages == ["database schema is current", "toy listening", "health", "toy shutting down", "toy stopped"]
    assert [r.fields for r in caplog.records if r.getMessage() == "toy listening"] == [{"grpc_port": 4242}]


def test_the_first_stalled_consumer_is_named_with_its_reason():
    class Progress:
        def __init__(self, reason):
            self.reason = reason

        def stall_reason(self):
            return self.reason

    class Consumer:
        def __init__(self, name, reason):
            self.name, self.progress = name, Progress(reason)

    assert stalled(Consumer("a", None), Consumer("b", None)) is None
    assert (
        stalled(Consumer("a", None), Consumer("b", "not polled within 60s"), Consumer("c", "x"))
        == "b: not polled within 60s"
    )
