"""免申即享 proposals (issue 13, item 4): ``intake_proposals``, one row per
proposal (its id derived from the firm, clause and fact, so the same fact
twice inserts nothing), its state (PROPOSED, CONFIRMED, DECLINED, EXPIRED),
the subsidy.v1.Proposal as last published, the window's last day, and the
payee account once confirmed (personal data, never logged). New table only:
the previous release runs unchanged on it. The same SQL on SQLite and
PostgreSQL but for the blob type. Frozen once released.
"""

from alembic import op

revision = "0003"
down_revision = "0002"

_BLOB = {"sqlite": "BLOB", "postgresql": "BYTEA"}

_STATEMENTS = (
    """CREATE TABLE intake_proposals (
        proposal_id    TEXT PRIMARY KEY,
        credit_code    TEXT NOT NULL,
        clause         TEXT NOT NULL,
        fact_reference TEXT NOT NULL,
        state          TEXT NOT NULL,
        proposal       {blob} NOT NULL,
        proposed_on    TEXT NOT NULL,
        expires_on     TEXT NOT NULL,
        payee          TEXT,
        created_at     TEXT NOT NULL,
        updated_at     TEXT NOT NULL
    )""",
    "CREATE INDEX intake_proposals_by_firm ON intake_proposals (credit_code, created_at DESC, proposal_id DESC)",
    "CREATE INDEX intake_proposals_due ON intake_proposals (state, expires_on)",
)


def upgrade() -> None:
    blob = _BLOB[op.get_context().dialect.name]
    for statement in _STATEMENTS:
        op.execute(statement.format(blob=blob))
