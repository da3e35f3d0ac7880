"""release gates and recovery: firm facts, held tranches, recoveries (追回)

Issue 13, ADR 0017. Expand only: new tables and new nullable columns, nothing
dropped or renamed, so the release before this one still runs on the
migrated schema (it reads none of them; it never writes HELD).

- ``payout_firm_facts``: the latest firm facts payout heard on
  subsidy.firms.v1 (per firm the record with the highest ``feed_sequence``;
  ``known`` 0 after a tombstone). Only what the release gate reads, the name
  and the days: no contacts (personal data stays with the platform).
- ``payout_tranches`` gains ``held_on``, ``hold_until``, ``hold_reason``
  (the latest hold) and ``hold_count`` (NULL = 0): a tranche may now be
  HELD (the status column is TEXT: no change needed).
- ``payout_grants`` gains ``void`` (the award declared void: '1') and
  ``cap_released_fen`` (cap room freed since).
- ``payout_recoveries``, ``payout_recovery_tranches`` (what each recovery
  claims on each tranche) and ``payout_recovery_confirmations`` (finance's
  confirmation ids applied). Money is BIGINT fen.

The same SQL on SQLite and PostgreSQL. Frozen once released.
"""

from alembic import op

revision = "0004"
down_revision = "0003"

_STATEMENTS = (
    """CREATE TABLE payout_firm_facts (
        credit_code                TEXT PRIMARY KEY,
        known                      INTEGER NOT NULL,
        registered_in_district     INTEGER NOT NULL,
        tax_registered_in_district INTEGER NOT NULL,
        independent_legal_person   INTEGER NOT NULL,
        as_of                      TEXT,
        feed_sequence              BIGINT NOT NULL,
        name                       TEXT NOT NULL,
        updated_at                 TEXT NOT NULL
    )""",
    "ALTER TABLE payout_tranches ADD COLUMN held_on TEXT",
    "ALTER TABLE payout_tranches ADD COLUMN hold_until TEXT",
    "ALTER TABLE payout_tranches ADD COLUMN hold_reason TEXT",
    "ALTER TABLE payout_tranches ADD COLUMN hold_count INTEGER",
    "ALTER TABLE payout_grants ADD COLUMN void TEXT",
    "ALTER TABLE payout_grants ADD COLUMN cap_released_fen BIGINT",
    """CREATE TABLE payout_recoveries (
        recovery_id    TEXT PRIMARY KEY,
        application_id TEXT NOT NULL REFERENCES payout_grants (application_id),
        credit_code    TEXT NOT NULL,
        clause         TEXT NOT NULL,
        amount_fen     BIGINT NOT NULL,
        recovered_fen  BIGINT NOT NULL,
        reason         TEXT NOT NULL,
        void_award     INTEGER NOT NULL,
        opened_on      TEXT NOT NULL,
        opened_by      TEXT NOT NULL,
        status         TEXT NOT NULL,
        created_at     TEXT NOT NULL,
        updated_at     TEXT NOT NULL
    )""",
    "CREATE INDEX payout_recoveries_by_firm ON payout_recoveries (credit_code, application_id)",
    """CREATE TABLE payout_recovery_tranches (
        recovery_id TEXT NOT NULL REFERENCES payout_recoveries (recovery_id),
        tranche_id  TEXT NOT NULL REFERENCES payout_tranches (tranche_id),
        position    INTEGER NOT NULL,
        amount_fen  BIGINT NOT NULL,
        PRIMARY KEY (recovery_id, tranche_id)
    )""",
    "CREATE INDEX payout_recovery_tranches_by_tranche ON payout_recovery_tranches (tranche_id)",
    """CREATE TABLE payout_recovery_confirmations (
        confirmation_id TEXT PRIMARY KEY,
        recovery_id     TEXT NOT NULL REFERENCES payout_recoveries (recovery_id),
        credit_code     TEXT NOT NULL,
        amount_fen      BIGINT NOT NULL,
        recovered_on    TEXT NOT NULL,
        applied_at      TEXT NOT NULL
    )""",
)


def upgrade() -> None:
    for statement in _STATEMENTS:
        op.execute(statement)
