"""operations' store: the letters, their audit trail and the outbox, in the
service's own database (SQLite or PostgreSQL, subsidy/platform/db.py). The
relay's side of ``operations_outbox`` is the shared OutboxTable.

A letter's state changes only from PENDING, by a conditional UPDATE (and,
on PostgreSQL, after ``SELECT … FOR UPDATE``): two operators replaying the
same letter at once publish it once; the second is refused."""

from __future__ import annotations

import base64
import contextlib
import json
import zlib
from collections.abc import Callable, Iterator

from subsidy.platform import migrations, outbox
from subsidy.platform.db import Database, Transaction
from subsidy.platform.outbox import OutboxMessage, OutboxRow, OutboxTable, Published
from subsidy.services.operations.adapters.migrations import HISTORY
from subsidy.services.operations.model import PENDING, AuditEntry, StoredLetter

RELAY_LOCK_KEY = zlib.crc32(b"subsidy-operations-relay") & 0x7FFF_FFFF

_COLUMNS = (
    "seq, letter_id, dlq_topic, dlq_partition, dlq_offset, envelope, headers, received_at, "
    "state, handled_by, handled_at, handled_reason, dead_letter_id"
)


def _headers_text(headers: list[tuple[str, bytes]]) -> str:
    # The DLQ record's own headers may hold any bytes: kept as base64.
    return json.dumps([[k, base64.b64encode(v).decode("ascii")] for k, v in headers])


def _headers_of(text: str) -> list[tuple[str, bytes]]:
    return [(k, base64.b64decode(v)) for k, v in json.loads(text)]


def _letter(row: tuple) -> StoredLetter:
    return StoredLetter(
        seq=int(row[0]),
        letter_id=row[1],
        dlq_topic=row[2],
        dlq_partition=int(row[3]),
        dlq_offset=int(row[4]),
        envelope=bytes(row[5]),
        headers=_headers_of(row[6]),
        received_at=row[7],
        state=row[8],
        handled_by=row[9],
        handled_at=row[10],
        handled_reason=row[11],
        dead_letter_id=row[12] or "",
    )


class SqlLettersTx:
    def __init__(self, tx: Transaction):
        self.tx = tx

    def add(self, letter: StoredLetter) -> bool:
        """False (nothing written) when a row is already kept for where it was
        read, or for the letter itself (another copy: its ``dead_letter_id``)."""
        cursor = self.tx.execute(
            "INSERT INTO operations_letters (letter_id, dlq_topic, dlq_partition, dlq_offset, envelope, headers, "
            "received_at, state, dead_letter_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                letter.letter_id,
                letter.dlq_topic,
                letter.dlq_partition,
                letter.dlq_offset,
                letter.envelope,
                _headers_text(letter.headers),
                letter.received_at,
                PENDING,
                letter.dead_letter_id or None,
            ),
        )
        return cursor.rowcount == 1

    def holds_position(self, letter_id: str) -> bool:
        return self.tx.one("SELECT 1 FROM operations_letters WHERE letter_id = ?", (letter_id,)) is not None

    def get(self, letter_id: str, *, for_update: bool = False) -> StoredLetter | None:
        lock = " FOR UPDATE" if for_update and self.tx.dialect == "postgresql" else ""
        row = self.tx.one(f"SELECT {_COLUMNS} FROM operations_letters WHERE letter_id = ?" + lock, (letter_id,))  # nosec B608 - constant columns
        return _letter(row) if row is not None else None

    def page(self, topic: str, state: str, before_seq: int | None, limit: int) -> list[StoredLetter]:
        sql = f"SELECT {_COLUMNS} FROM operations_letters WHERE dlq_topic = ?"  # nosec B608 - constant columns
        params: list = [topic]
        if state:
            sql += " AND state = ?"
            params.append(state)
        if before_seq is not None:
            sql += " AND seq < ?"
            params.append(before_seq)
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(limit)
        return [_letter(r) for r in self.tx.all(sql, params)]

    def counts(self) -> dict[tuple[str, str], int]:
        return {
            (r[0], r[1]): int(r[2])
            for r in self.tx.all("SELECT dlq_topic, state, COUNT(*) FROM operations_letters GROUP BY dlq_topic, state")
        }

    def settle(self, letter_id: str, state: str, subject: str, at: str, reason: str) -> bool:
        cursor = self.tx.execute(
            "UPDATE operations_letters SET state = ?, handled_by = ?, handled_at = ?, handled_reason = ? "
            "WHERE letter_id = ? AND state = ?",
            (state, subject, at, reason, letter_id, PENDING),
        )
        return cursor.rowcount == 1

    def audit(self, entry: AuditEntry) -> None:
        self.tx.execute(
            "INSERT INTO operations_audit (letter_id, action, subject, role, reason, at) VALUES (?, ?, ?, ?, ?, ?)",
            (entry.letter_id, entry.action, entry.subject, entry.role, entry.reason, entry.at),
        )

    def trail(self, letter_id: str) -> list[AuditEntry]:
        return [
            AuditEntry(letter_id, r[0], r[1], r[2], r[3], r[4])
            for r in self.tx.all(
                "SELECT action, subject, role, reason, at FROM operations_audit WHERE letter_id = ? ORDER BY id",
                (letter_id,),
            )
        ]

    def enqueue(self, message: OutboxMessage, at: str) -> None:
        outbox.enqueue(self.tx, "operations_outbox", [message], at)


class SqlStore(migrations.OwnedSchema):
    """ports.Store over the database, and the relay's and metrics' queries."""

    history = HISTORY

    def __init__(self, db: Database):
        self.db = db
        self.outbox_table = OutboxTable(db, "operations_outbox", RELAY_LOCK_KEY)

    @contextlib.contextmanager
    def unit(self) -> Iterator[SqlLettersTx]:
        with self.db.transaction() as tx:
            yield SqlLettersTx(tx)

    def counts(self) -> dict[tuple[str, str], int]:
        with self.db.transaction() as tx:
            return SqlLettersTx(tx).counts()

    def oldest_pending(self) -> dict[str, str]:
        """{DLQ topic: received_at of its oldest PENDING letter} (the metrics' refresh)."""
        with self.db.transaction() as tx:
            return {
                r[0]: r[1]
                for r in tx.all(
                    "SELECT dlq_topic, MIN(received_at) FROM operations_letters WHERE state = ? GROUP BY dlq_topic",
                    (PENDING,),
                )
            }

    # -- the outbox (relay) -------------------------------------------------------------

    def relay_batch(self, publish: Callable[[list[OutboxRow]], Published], limit: int = 100) -> int | None:
        return self.outbox_table.relay_batch(publish, limit)

    def pending_count(self) -> int:
        return self.outbox_table.pending_count()

    def outbox_stats(self) -> tuple[int, str | None]:
        return self.outbox_table.stats()
