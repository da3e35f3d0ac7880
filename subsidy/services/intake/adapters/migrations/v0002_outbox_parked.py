"""outbox parking: a row the broker refuses for good is set aside, not retried

``intake_outbox.parked_at`` and ``parked_reason``: the outbox relay
(subsidy/platform/outbox.py) parks a row Kafka rejects permanently (over the
record size limit, an invalid record) with the reason, counts it in
``subsidy_outbox_parked_total`` and goes on with the rows after it; a parked
row is neither pending nor published. Both columns are NULL on every existing
row. The same SQL on SQLite and PostgreSQL. Frozen once released.
"""

from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.execute("ALTER TABLE intake_outbox ADD COLUMN parked_at TEXT")
    op.execute("ALTER TABLE intake_outbox ADD COLUMN parked_reason TEXT")
