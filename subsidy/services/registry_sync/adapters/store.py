"""registry-sync's tables (adapters/migrations/v0001_baseline.py) in SQL:
``unit()`` is one transaction over them (ports.SyncTx); the relay's side of
``registry_sync_outbox`` is the shared OutboxTable (subsidy/platform/outbox.py).

On PostgreSQL the state row is read ``FOR UPDATE`` inside a unit of work, so
two replicas never fold the same page at once (the second waits, then sees
the cursor moved and reads on)."""

from __future__ import annotations

import contextlib
import json
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from subsidy.platform import migrations, outbox
from subsidy.platform.db import Database, Transaction
from subsidy.platform.outbox import OutboxMessage, OutboxRow, OutboxTable, Published
from subsidy.services.registry_sync.adapters.migrations import HISTORY
from subsidy.services.registry_sync.ports import HeldChange, StoredFirm, SyncState

RELAY_LOCK_KEY = zlib.crc32(b"subsidy-registry-sync-relay") & 0x7FFF_FFFF


class SqlSyncTx:
    def __init__(self, tx: Transaction):
        self.tx = tx

    def state(self) -> SyncState:
        lock = " FOR UPDATE" if self.tx.dialect == "postgresql" else ""
        row = self.tx.one(
            "SELECT feed_cursor, last_sequence, high_water, last_success_at, resyncs FROM registry_sync_state WHERE id = 1"
            + lock
        )
        if row is None:
            return SyncState("", 0, 0, None, 0)
        return SyncState(row[0], int(row[1]), int(row[2]), row[3], int(row[4]))

    def set_state(self, state: SyncState) -> None:
        self.tx.execute(
            "INSERT INTO registry_sync_state (id, feed_cursor, last_sequence, high_water, last_success_at, resyncs) "
            "VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET feed_cursor = excluded.feed_cursor, "
            "last_sequence = excluded.last_sequence, high_water = excluded.high_water, "
            "last_success_at = excluded.last_success_at, resyncs = excluded.resyncs",
            (state.cursor, state.last_sequence, state.high_water, state.last_success_at, state.resyncs),
        )

    def firm(self, credit_code: str) -> StoredFirm | None:
        row = self.tx.one(
            "SELECT facts, feed_sequence, revision FROM registry_sync_firms WHERE credit_code = ?", (credit_code,)
        )
        if row is None:
            return None
        return StoredFirm(json.loads(row[0]), row[0], int(row[1]), int(row[2]))

    def put_firm(self, credit_code: str, canonical: str, feed_sequence: int, revision: int, at: str) -> None:
        self.tx.execute(
            "INSERT INTO registry_sync_firms (credit_code, facts, feed_sequence, revision, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (credit_code) DO UPDATE SET facts = excluded.facts, "
            "feed_sequence = excluded.feed_sequence, revision = excluded.revision, updated_at = excluded.updated_at",
            (credit_code, canonical, feed_sequence, revision, at),
        )

    def hold(self, held: HeldChange, at: str) -> None:
        self.tx.execute(
            "INSERT INTO registry_sync_held (sequence, credit_code, effective_on, change, held_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (sequence) DO NOTHING",
            (held.sequence, held.credit_code, held.effective_on, held.change, at),
        )

    def held_due(self, day: str) -> list[HeldChange]:
        return [
            HeldChange(int(r[0]), r[1], r[2], r[3])
            for r in self.tx.all(
                "SELECT sequence, credit_code, effective_on, change FROM registry_sync_held "
                "WHERE effective_on <= ? ORDER BY sequence",
                (day,),
            )
        ]

    def drop_held(self, sequence: int) -> None:
        self.tx.execute("DELETE FROM registry_sync_held WHERE sequence = ?", (sequence,))

    def enqueue(self, message: OutboxMessage, at: str) -> None:
        outbox.enqueue(self.tx, "registry_sync_outbox", [message], at)


class SqlStore(migrations.OwnedSchema):
    """ports.Store over the database, and the relay's and metrics' queries."""

    history = HISTORY

    def __init__(self, db: Database):
        self.db = db
        self.outbox_table = OutboxTable(db, "registry_sync_outbox", RELAY_LOCK_KEY)

    @contextlib.contextmanager
    def unit(self) -> Iterator[SqlSyncTx]:
        with self.db.transaction() as tx:
            yield SqlSyncTx(tx)

    def state(self) -> SyncState:
        with self.db.transaction() as tx:
            return SqlSyncTx(tx).state()

    def held_count(self) -> int:
        with self.db.transaction() as tx:
            return int(tx.one("SELECT COUNT(*) FROM registry_sync_held")[0])  # type: ignore[index]

    def firm_count(self) -> int:
        with self.db.transaction() as tx:
            return int(tx.one("SELECT COUNT(*) FROM registry_sync_firms")[0])  # type: ignore[index]

    def facts(self, credit_code: str) -> dict[str, Any] | None:
        with self.db.transaction() as tx:
            stored = SqlSyncTx(tx).firm(credit_code)
        return stored.facts if stored is not None else None

    # -- the outbox (relay) -------------------------------------------------------------

    def relay_batch(self, publish: Callable[[list[OutboxRow]], Published], limit: int = 100) -> int | None:
        return self.outbox_table.relay_batch(publish, limit)

    def pending_count(self) -> int:
        return self.outbox_table.pending_count()

    def outbox_stats(self) -> tuple[int, str | None]:
        return self.outbox_table.stats()
