"""Search across firms (issue 15): ``intake_applications`` gains
``firm_name`` (the registry's name as accepted), ``firm_name_key`` (the same
name case-folded, what a firm-name search matches with ``LIKE``, so SQLite
and PostgreSQL compare the same way) and ``clause`` (the claim's clause id,
e.g. ``1.rent``), written by the store with each new application; the rows
already stored are filled in here from their payload (the subsidy.v1.Application
they hold). Indexes for the staff's listings across firms, newest first:
all applications, by clause, by state; and the proposals by state.

Expand only: nullable columns and new indexes, so the previous release runs
unchanged on it (its rows, written without the columns, are found by every
filter but the firm name and the clause until this revision runs again: it
fills any row whose ``clause`` is NULL). Frozen once released.
"""

from alembic import op
from sqlalchemy import text

revision = "0005"
down_revision = "0004"

_STATEMENTS = (
    "ALTER TABLE intake_applications ADD COLUMN firm_name TEXT",
    "ALTER TABLE intake_applications ADD COLUMN firm_name_key TEXT",
    "ALTER TABLE intake_applications ADD COLUMN clause TEXT",
    "CREATE INDEX intake_applications_by_time ON intake_applications (received_at DESC, application_id DESC)",
    "CREATE INDEX intake_applications_by_clause ON intake_applications (clause, received_at DESC, application_id DESC)",
    "CREATE INDEX intake_applications_by_state ON intake_applications (state, received_at DESC, application_id DESC)",
    "CREATE INDEX intake_proposals_by_time ON intake_proposals (created_at DESC, proposal_id DESC)",
    "CREATE INDEX intake_proposals_by_state ON intake_proposals (state, created_at DESC, proposal_id DESC)",
)

_BATCH = 500


def upgrade() -> None:
    for statement in _STATEMENTS:
        op.execute(statement)
    backfill(op.get_bind())


def backfill(connection) -> int:  # type: ignore[no-untyped-def]
    """Fill the search columns of the rows without them, in batches of
    application ids; returns how many rows it filled."""
    from subsidy.services.intake.search import search_columns

    filled, after = 0, ""
    while True:
        rows = connection.execute(
            text(
                "SELECT application_id, payload FROM intake_applications "
                "WHERE clause IS NULL AND application_id > :after ORDER BY application_id LIMIT :n"
            ),
            {"after": after, "n": _BATCH},
        ).fetchall()
        if not rows:
            return filled
        for application_id, payload in rows:
            name, key, clause = search_columns(bytes(payload))
            connection.execute(
                text(
                    "UPDATE intake_applications SET firm_name = :name, firm_name_key = :key, clause = :clause "
                    "WHERE application_id = :id"
                ),
                {"name": name, "key": key, "clause": clause, "id": application_id},
            )
            filled += 1
        after = rows[-1][0]
