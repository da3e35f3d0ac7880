"""One row per dead letter, however often it is sent (issue 19's soak).

A consumer whose group is rewound to the earliest offsets (a full replay)
reads a poison record again and dead-letters it again, under the same derived
id (``subsidy.platform.dead_letters.event_id``: consumer, source topic,
partition, offset), at a new DLQ offset. ``operations_letters`` was unique
only on where a letter was read, so the operator saw it twice. It gains
``dead_letter_id`` (the derived id, read from the envelope; NULL for a record
that is not a DeadLetter), unique: a second copy of a letter is not a second
row. The rows already stored get it from their envelope; of copies already
stored, the first keeps it and the others keep NULL (they stay listed, as
before).

Expand only: a nullable column and a unique index that NULLs do not collide
in, so the previous release runs unchanged on it. Frozen once released.
"""

from alembic import op
from sqlalchemy import text

revision = "0002"
down_revision = "0001"

_BATCH = 500


def upgrade() -> None:
    op.execute("ALTER TABLE operations_letters ADD COLUMN dead_letter_id TEXT")
    backfill(op.get_bind())
    op.execute("CREATE UNIQUE INDEX operations_letters_by_dead_letter ON operations_letters (dead_letter_id)")


def backfill(connection) -> int:  # type: ignore[no-untyped-def]
    """Set ``dead_letter_id`` on the rows without it, oldest first, skipping a
    copy of a letter already given it; returns how many rows it set."""
    from subsidy.services.operations.model import dead_letter_id

    seen = {
        row[0]
        for row in connection.execute(
            text("SELECT dead_letter_id FROM operations_letters WHERE dead_letter_id IS NOT NULL")
        )
    }
    filled, after = 0, 0
    while True:
        rows = connection.execute(
            text(
                "SELECT seq, envelope FROM operations_letters "
                "WHERE dead_letter_id IS NULL AND seq > :after ORDER BY seq LIMIT :n"
            ),
            {"after": after, "n": _BATCH},
        ).fetchall()
        if not rows:
            return filled
        for seq, envelope in rows:
            derived = dead_letter_id(bytes(envelope))
            if derived and derived not in seen:
                seen.add(derived)
                connection.execute(
                    text("UPDATE operations_letters SET dead_letter_id = :id WHERE seq = :seq"),
                    {"id": derived, "seq": seq},
                )
                filled += 1
        after = rows[-1][0]
