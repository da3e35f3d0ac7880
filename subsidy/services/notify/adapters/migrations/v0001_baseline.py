"""baseline: the schema notify created at start-up before versioned migrations

Exactly the tables and index of subsidy/services/notify/adapters/store.py's
``create_schema`` (commit 1bd4a06), statement for statement, without ``IF NOT
EXISTS``: a database that already has them is adopted at this revision by
``subsidy migrate`` (subsidy.platform.migrations), never run through it.
Frozen: a later change is a new revision, never an edit here. The same SQL on
both databases.
"""

from alembic import op

revision = "0001"
down_revision = None

_STATEMENTS = (
    """CREATE TABLE notify_log (
        notification_id TEXT PRIMARY KEY,
        event_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        kind TEXT NOT NULL,
        credit_code TEXT NOT NULL,
        trace_id TEXT,
        sent_at TEXT NOT NULL
    )""",
    "CREATE INDEX notify_log_event ON notify_log (event_id)",
    """CREATE TABLE notify_tranches (
        tranche_id TEXT PRIMARY KEY,
        application_id TEXT NOT NULL,
        clause TEXT NOT NULL,
        number INTEGER NOT NULL,
        budget_year INTEGER NOT NULL
    )""",
)


def upgrade() -> None:
    for statement in _STATEMENTS:
        op.execute(statement)
