"""The outbox relay keeps intake accepting while Kafka is down and catches
up when the broker is back (on a broker of its own, which it restarts)."""

from __future__ import annotations

import time

import pytest

from subsidy.contracts import topics
from subsidy.platform.db import Database
from subsidy.platform.registry import FileRegistry
from subsidy.services.intake import handlers
from subsidy.services.intake.adapters.directory import FileDirectory
from subsidy.services.intake.adapters.relay import OutboxRelay
from subsidy.services.intake.adapters.store import SqlStore
from subsidy_dev.kafka import KafkaBroker

from .test_intake_support import ROOT, events_with_id, new_id, rent_application, wait_for

pytestmark = pytest.mark.integration


def test_the_relay_keeps_retrying_while_the_broker_is_down_and_catches_up_after_it_returns(tmp_path):
    broker = KafkaBroker(tmp_path / "kafka")
    broker.start()
    db = Database(f"sqlite:///{tmp_path / 'intake.db'}", store="intake")
    store = SqlStore(db)
    store.create_schema()
    deps = handlers.Deps(
        store=store,
        registry=FileRegistry(ROOT / "demo" / "registry.json"),
        directory=FileDirectory(ROOT / "policy" / "directory"),
    )
    relay = OutboxRelay(store, broker.bootstrap, poll_interval=0.1, max_backoff=1.0, delivery_timeout_ms=15000)
    relay.start()
    try:
        first = new_id()
        handlers.submit(deps, rent_application(first))
        relay.wake()
        wait_for(lambda: store.pending_count() == 0, timeout=60)

        broker.stop()
        during = [new_id() for _ in range(3)]
        for app_id in during:  # intake keeps accepting: the rows wait in the outbox
            handlers.submit(deps, rent_application(app_id))
        relay.wake()
        time.sleep(1.0)
        assert store.pending_count() == 3
        assert relay._thread.is_alive()

        broker.start()
        wait_for(lambda: store.pending_count() == 0, timeout=60, interval=0.2)
        for app_id in [first, *during]:
            assert len(events_with_id(broker.bootstrap, topics.APPLICATIONS.name, app_id, timeout=15)) >= 1
    finally:
        relay.stop()
        db.close()
        broker.stop()
