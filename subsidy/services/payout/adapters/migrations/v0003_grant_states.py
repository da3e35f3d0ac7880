"""grant states: RESERVED until the public notice closes, then PAYABLE or WITHDRAWN

The notice gate (issue 12, ADR 0013): a grant is recorded RESERVED from its
decision (its cap use counts at once) and gets its tranches only when its
public-notice line becomes payable (LinePayable on subsidy.notices.v1), or is
WITHDRAWN, its reservation released (LineWithdrawn). ``payout_grants`` gains:

- ``state``: RESERVED, PAYABLE or WITHDRAWN;
- ``uses``: what the grant holds per scope, JSON ``[[scope, fen], ...]``
  (released when it is withdrawn);
- ``tranche_shares``: the decision's schedule, JSON ``[percent, ...]``
  (its tranches are scheduled from it when it becomes payable);
- ``notice_id``, ``payable_on``, ``withdrawn_on``, ``withdraw_reason``,
  ``state_changed_at``;

and the index ``payout_grants_by_decision`` (a notice line names its
decision).

Grants recorded before this revision were scheduled at once: they become
PAYABLE, with their tranches exactly as they are (``state`` is set to
PAYABLE on every existing row; their other new columns stay NULL: no uses to
release, since a PAYABLE grant is never withdrawn, and no schedule to make,
since their tranches exist). Expand only: nothing is dropped or renamed, so
the release before this one still runs on the migrated schema (it reads none
of the new columns; new grants it writes get ``state`` NULL, which this
release reads as PAYABLE, what that release did with them). The same SQL on
SQLite and PostgreSQL. Frozen once released.
"""

from alembic import op

revision = "0003"
down_revision = "0002"

_COLUMNS = (
    "state",
    "uses",
    "tranche_shares",
    "notice_id",
    "payable_on",
    "withdrawn_on",
    "withdraw_reason",
    "state_changed_at",
)


def upgrade() -> None:
    for column in _COLUMNS:
        op.execute(f"ALTER TABLE payout_grants ADD COLUMN {column} TEXT")
    op.execute("UPDATE payout_grants SET state = 'PAYABLE'")
    op.execute("CREATE INDEX payout_grants_by_decision ON payout_grants (decision_id)")
