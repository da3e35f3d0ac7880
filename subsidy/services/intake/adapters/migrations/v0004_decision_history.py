"""The history of an application's decisions (issue 14): ``intake_decisions``,
one row per decision intake has read for an application (computed, reviewed,
or a re-decision made when a policy version was adopted): the
subsidy.v1.Decision as read (its policy_version names the version), whether or not it is the one
``intake_applications`` shows. GetApplication lists them in the order read.
The decisions already shown are copied in (their ``read_at`` is when they were
decided), so an application decided before this revision has its history
too. New table only: the previous release runs unchanged on it. The same SQL
on SQLite and PostgreSQL but for the blob type. Frozen once released.
"""

from alembic import op

revision = "0004"
down_revision = "0003"

_BLOB = {"sqlite": "BLOB", "postgresql": "BYTEA"}

_STATEMENTS = (
    """CREATE TABLE intake_decisions (
        application_id TEXT NOT NULL,
        decision_id    TEXT NOT NULL,
        decision       {blob} NOT NULL,
        read_at        TEXT NOT NULL,
        PRIMARY KEY (application_id, decision_id)
    )""",
    """INSERT INTO intake_decisions (application_id, decision_id, decision, read_at)
        SELECT application_id, decision_id, decision, COALESCE(decided_at, updated_at, received_at)
        FROM intake_applications WHERE decision IS NOT NULL AND decision_id IS NOT NULL""",
)


def upgrade() -> None:
    blob = _BLOB[op.get_context().dialect.name]
    for statement in _STATEMENTS:
        op.execute(statement.format(blob=blob))
