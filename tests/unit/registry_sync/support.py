"""registry-sync over the FakeDataPlatform test double (HTTP on loopback) and an in-memory SQLite store."""

from __future__ import annotations

import dataclasses
import datetime as dt

from subsidy.platform.clock import FixedClock
from subsidy.platform.db import Database
from subsidy.platform.outbox import decode_headers
from subsidy.services.registry_sync import handlers
from subsidy.services.registry_sync.adapters.feed import HttpFeed
from subsidy.services.registry_sync.adapters.store import SqlStore
from subsidy.v1 import events_pb2, firm_facts_pb2
from subsidy_dev.platform_fake import FakeDataPlatform

TOKEN = "s3cret-feed-token"
FIRM_A = "91310117313Q6C3D6G"
FIRM_B = "913101171K0HG2QW66"


@dataclasses.dataclass
class Rig:
    platform: FakeDataPlatform
    store: SqlStore
    clock: FixedClock
    feed: HttpFeed
    deps: handlers.Deps

    def outbox(self, topic: str = "") -> list[tuple[str, str, bytes, bytes, dict]]:
        with self.store.db.transaction() as tx:
            rows = tx.all("SELECT event_id, topic, key, value, headers FROM registry_sync_outbox ORDER BY id")
        return [
            (r[0], r[1], bytes(r[2]), bytes(r[3]), dict((k, v.decode()) for k, v in decode_headers(r[4])))
            for r in rows
            if not topic or r[1] == topic
        ]

    def facts_records(self) -> list[firm_facts_pb2.FirmFacts]:
        out = []
        for _, _, _, value, _ in self.outbox("subsidy.firms.v1"):
            facts = firm_facts_pb2.FirmFacts()
            facts.ParseFromString(value)
            out.append(facts)
        return out

    def dead_letters(self) -> list[events_pb2.DeadLetter]:
        out = []
        for _, _, _, value, _ in self.outbox("subsidy.firms.v1.dlq"):
            letter = events_pb2.DeadLetter()
            letter.ParseFromString(value)
            out.append(letter)
        return out

    def close(self) -> None:
        self.platform.stop()
        self.store.db.close()


def make_rig(*, day: dt.date = dt.date(2026, 3, 1), page_size: int = 5, attempts: int = 3, timeout: float = 2.0) -> Rig:
    clock = FixedClock(day)
    platform = FakeDataPlatform.from_file("demo/registry.json", token=TOKEN, today=clock.today)
    url = platform.start()
    store = SqlStore(Database("sqlite:///:memory:", store="registry_sync_test"))
    store.create_schema()
    feed = HttpFeed(url, TOKEN, timeout=timeout, attempts=attempts, backoff=0.01, max_backoff=0.05)
    return Rig(platform, store, clock, feed, handlers.Deps(feed, store, clock, page_size=page_size))
