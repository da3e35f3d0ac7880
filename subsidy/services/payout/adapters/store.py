"""The payout ledger's tables on subsidy.platform.db.Database (SQLite, the
default, or PostgreSQL): ``SqlStore`` is the unit of work of ports.py — the
use cases (handlers.py) decide, this only reads and writes rows — plus what
the relay and the metrics read.

Tables (created and changed by the versioned migrations in adapters/migrations/,
never at start-up; names carry the service so several services may share one
PostgreSQL database): ``payout_firms`` (one row per
firm: the row every write for that firm locks), ``payout_inbox`` (decision ids
applied, held for review or duplicate), ``payout_grants`` (each with its
state: RESERVED, PAYABLE, WITHDRAWN), ``payout_tranches`` (only of PAYABLE grants), ``payout_usage`` (used, cap
and limit per firm and scope), ``payout_payments`` (payment ids applied) and
``payout_outbox`` (events to publish, in ``id`` order, one per event id).

A unit of work (``with store:`` … ``store.commit()``) is one
``Database.transaction()`` of the calling thread: COMMIT on ``commit()``,
ROLLBACK when it is left without. The open unit of work is the thread's own,
so one store serves the consumers', the scheduler's and the gRPC workers'
threads at once.

Locking a firm (``firms.lock``) holds the firm's row until the transaction
ends (PostgreSQL ``SELECT … FOR UPDATE``; SQLite's ``BEGIN IMMEDIATE``
already serialises all writers), so two replicas applying claims of the same
firm take turns: the cap check and the grant it leads to are one atomic step,
and one firm's outbox ids increase in the order its transactions commit.

``batch()``: the decisions consumer applies all the decisions of a poll in
one transaction (one commit, one fsync); each unit of work inside is a
savepoint of it (subsidy.platform.db): ``commit()`` releases the savepoint,
leaving without it rolls back to it, and the firm locks taken are held until
the batch commits. Decisions are applied in poll order, so one firm's
decisions (one partition, keyed by credit code) still take turns in order.
On PostgreSQL a batch holds several firm locks taken in poll order, so it can
deadlock with the scheduler (which locks firms in credit-code order) or with
another replica's batch while a partition moves; PostgreSQL then aborts one
of them, and an aborted batch is redone whole (no offset of it committed).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager as ContextManager
from typing import Any

from subsidy.core.domain import Decision
from subsidy.core.release import FirmStanding
from subsidy.platform import migrations, outbox
from subsidy.platform.db import Database, Transaction
from subsidy.platform.outbox import OutboxMessage, OutboxRow, OutboxTable, Published
from subsidy.platform.unit_of_work import ThreadUnitOfWork
from subsidy.services.payout import events
from subsidy.services.payout.adapters.migrations import HISTORY
from subsidy.services.payout.model import (
    CANCELLED,
    DUE,
    HELD,
    PAID,
    SCHEDULED,
    GrantRow,
    GrantState,
    InboxRow,
    Payment,
    RecoveryConfirmation,
    RecoveryRow,
    TrancheQuery,
    TrancheRow,
    UsageRow,
)

# Only one relay (of all replicas) publishes at a time: PostgreSQL advisory
# lock key, taken per batch with pg_try_advisory_xact_lock.
RELAY_LOCK_KEY = 0x5042_4F55  # "PBOU"

# The last column is the grant's policy version (payout_tranches has none):
# a tranche's amount was decided under its grant's decision, and a grant
# with tranches (PAYABLE) is never superseded. Every query below reads
# payout_tranches unaliased, so the sub-select is correlated by table name;
# it also works in mark_due's RETURNING (SQLite and PostgreSQL).
_TRANCHE_COLUMNS = (
    "tranche_id, application_id, credit_code, clause, number, amount_fen, due_on, budget_year, status, "
    "paid_on, payment_id, held_on, hold_until, hold_reason, hold_count, "
    "(SELECT g.policy_version FROM payout_grants g WHERE g.application_id = payout_tranches.application_id)"
)


def _tranche(raw: tuple) -> TrancheRow:
    return TrancheRow(
        tranche_id=raw[0],
        application_id=raw[1],
        credit_code=raw[2],
        clause=raw[3],
        number=int(raw[4]),
        amount_fen=int(raw[5]),
        due_on=raw[6],
        budget_year=int(raw[7]),
        status=raw[8],
        paid_on=raw[9] or "",
        payment_id=raw[10] or "",
        held_on=raw[11] or "",
        hold_until=raw[12] or "",
        hold_reason=raw[13] or "",
        hold_count=int(raw[14] or 0),
        policy_version=raw[15] or "",
    )


# -- the tables, inside one transaction ------------------------------------------------------


class SqlFirms:
    def __init__(self, tx: Transaction):
        self.tx = tx

    def lock(self, credit_code: str, at: str) -> None:
        self.tx.execute(
            "INSERT INTO payout_firms (credit_code, created_at) VALUES (?, ?) ON CONFLICT (credit_code) DO NOTHING",
            (credit_code, at),
        )
        if self.tx.dialect == "postgresql":
            self.tx.execute("SELECT credit_code FROM payout_firms WHERE credit_code = ? FOR UPDATE", (credit_code,))


class SqlInbox:
    def __init__(self, tx: Transaction):
        self.tx = tx

    def has(self, decision_id: str) -> bool:
        return self.tx.one("SELECT 1 FROM payout_inbox WHERE decision_id = ?", (decision_id,)) is not None

    def get(self, decision_id: str) -> InboxRow | None:
        raw = self.tx.one(
            "SELECT decision_id, application_id, credit_code, result FROM payout_inbox WHERE decision_id = ?",
            (decision_id,),
        )
        return InboxRow(raw[0], raw[1], raw[2], raw[3]) if raw else None

    def add(self, decision: Decision, result: str, at: str) -> None:
        self.tx.execute(
            "INSERT INTO payout_inbox (decision_id, application_id, credit_code, result, applied_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (decision.decision_id, decision.application_id, decision.credit_code, result, at),
        )


_GRANT_COLUMNS = (
    "application_id, decision_id, credit_code, clause, outcome, policy_version, max_award_fen, granted_fen, "
    "decision_year, reasons, trace_id, state, uses, tranche_shares, submitted_on, notice_id, payable_on, "
    "withdrawn_on, withdraw_reason, void, cap_released_fen"
)


def _grant(r: tuple) -> GrantRow:
    return GrantRow(
        application_id=r[0],
        decision_id=r[1],
        credit_code=r[2],
        clause=r[3],
        outcome=r[4],
        policy_version=r[5],
        max_award_fen=int(r[6]),
        granted_fen=int(r[7]),
        decision_year=int(r[8]),
        reasons=events.reasons_from_plain(json.loads(r[9])),
        trace_id=r[10],
        # NULL: recorded before grant states (migration 0003), scheduled at once.
        state=GrantState(r[11]) if r[11] else GrantState.PAYABLE,
        uses=tuple((str(scope), int(fen)) for scope, fen in json.loads(r[12])) if r[12] else (),
        tranche_shares_percent=tuple(int(p) for p in json.loads(r[13])) if r[13] else (),
        submitted_on=r[14] or "",
        notice_id=r[15] or "",
        payable_on=r[16] or "",
        withdrawn_on=r[17] or "",
        withdraw_reason=r[18] or "",
        void=r[19] == "1",
        cap_released_fen=int(r[20] or 0),
    )


class SqlGrants:
    def __init__(self, tx: Transaction):
        self.tx = tx

    def is_applied(self, application_id: str) -> bool:
        return self.tx.one("SELECT 1 FROM payout_grants WHERE application_id = ?", (application_id,)) is not None

    def trace_id(self, application_id: str) -> str:
        raw = self.tx.one("SELECT trace_id FROM payout_grants WHERE application_id = ?", (application_id,))
        return raw[0] if raw and raw[0] else ""

    def add(self, grant: GrantRow, submitted_on: dt.date, at: str) -> None:
        self.tx.execute(
            "INSERT INTO payout_grants (application_id, decision_id, credit_code, clause, outcome, "
            "policy_version, max_award_fen, granted_fen, decision_year, submitted_on, reasons, trace_id, "
            "recorded_at, state, uses, tranche_shares, state_changed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                grant.application_id,
                grant.decision_id,
                grant.credit_code,
                grant.clause,
                grant.outcome,
                grant.policy_version,
                grant.max_award_fen,
                grant.granted_fen,
                grant.decision_year,
                submitted_on.isoformat(),
                json.dumps(events.reasons_to_plain(grant.reasons), ensure_ascii=False),
                grant.trace_id,
                at,
                grant.state.value,
                json.dumps([list(use) for use in grant.uses], ensure_ascii=False),
                json.dumps(list(grant.tranche_shares_percent)),
                at,
            ),
        )

    def replace(self, grant: GrantRow, at: str) -> None:
        self.tx.execute(
            "UPDATE payout_grants SET decision_id = ?, outcome = ?, policy_version = ?, max_award_fen = ?, "
            "granted_fen = ?, decision_year = ?, reasons = ?, uses = ?, tranche_shares = ?, state_changed_at = ? "
            "WHERE application_id = ? AND state = ?",
            (
                grant.decision_id,
                grant.outcome,
                grant.policy_version,
                grant.max_award_fen,
                grant.granted_fen,
                grant.decision_year,
                json.dumps(events.reasons_to_plain(grant.reasons), ensure_ascii=False),
                json.dumps([list(use) for use in grant.uses], ensure_ascii=False),
                json.dumps(list(grant.tranche_shares_percent)),
                at,
                grant.application_id,
                GrantState.RESERVED.value,
            ),
        )

    def by_decision(self, decision_id: str) -> GrantRow | None:
        raw = self.tx.one(f"SELECT {_GRANT_COLUMNS} FROM payout_grants WHERE decision_id = ?", (decision_id,))
        return _grant(raw) if raw else None

    def set_state(self, application_id: str, state: GrantState, notice_id: str, day: str, reason: str, at: str) -> None:
        column = "payable_on" if state == GrantState.PAYABLE else "withdrawn_on"
        self.tx.execute(
            f"UPDATE payout_grants SET state = ?, notice_id = ?, {column} = ?, withdraw_reason = ?, "  # nosec B608 - the column is one of two constants, values bound
            "state_changed_at = ? WHERE application_id = ?",
            (state.value, notice_id, day, reason or None, at, application_id),
        )

    def of_firm(self, credit_code: str) -> list[GrantRow]:
        return [
            _grant(r)
            for r in self.tx.all(
                f"SELECT {_GRANT_COLUMNS} FROM payout_grants WHERE credit_code = ? "
                "ORDER BY decision_year, application_id",
                (credit_code,),
            )
        ]

    def get(self, application_id: str) -> GrantRow | None:
        raw = self.tx.one(f"SELECT {_GRANT_COLUMNS} FROM payout_grants WHERE application_id = ?", (application_id,))
        return _grant(raw) if raw else None

    def declare_void(self, application_id: str, at: str) -> None:
        self.tx.execute(
            "UPDATE payout_grants SET void = '1', state_changed_at = ? WHERE application_id = ?", (at, application_id)
        )

    def add_cap_released(self, application_id: str, fen: int, at: str) -> None:
        self.tx.execute(
            "UPDATE payout_grants SET cap_released_fen = COALESCE(cap_released_fen, 0) + ?, state_changed_at = ? "
            "WHERE application_id = ?",
            (fen, at, application_id),
        )


class SqlTranches:
    def __init__(self, tx: Transaction):
        self.tx = tx

    def get(self, tranche_id: str) -> TrancheRow | None:
        raw = self.tx.one(f"SELECT {_TRANCHE_COLUMNS} FROM payout_tranches WHERE tranche_id = ?", (tranche_id,))
        return _tranche(raw) if raw else None

    def add(self, t: TrancheRow, at: str) -> None:
        self.tx.execute(
            "INSERT INTO payout_tranches (tranche_id, application_id, credit_code, clause, number, "
            "amount_fen, due_on, budget_year, status, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                t.tranche_id,
                t.application_id,
                t.credit_code,
                t.clause,
                t.number,
                t.amount_fen,
                t.due_on,
                t.budget_year,
                t.status,
                at,
            ),
        )

    def firms_due(self, day: str) -> list[str]:
        return [
            r[0]
            for r in self.tx.all(
                "SELECT DISTINCT credit_code FROM payout_tranches WHERE status = ? AND due_on <= ? "
                "ORDER BY credit_code",
                (SCHEDULED, day),
            )
        ]

    def mark_due(self, credit_code: str, day: str, at: str) -> list[TrancheRow]:
        return [
            _tranche(r)
            for r in self.tx.all(
                f"UPDATE payout_tranches SET status = ?, updated_at = ? "
                f"WHERE credit_code = ? AND status = ? AND due_on <= ? RETURNING {_TRANCHE_COLUMNS}",
                (DUE, at, credit_code, SCHEDULED, day),
            )
        ]

    def mark_paid(self, tranche_id: str, paid_on: str, payment_id: str, at: str) -> None:
        self.tx.execute(
            "UPDATE payout_tranches SET status = ?, paid_on = ?, payment_id = ?, updated_at = ? WHERE tranche_id = ?",
            (PAID, paid_on, payment_id, at, tranche_id),
        )

    def mark_cancelled(self, tranche_id: str, cancelled_on: str, reason: str, at: str) -> None:
        self.tx.execute(
            "UPDATE payout_tranches SET status = ?, cancelled_on = ?, cancel_reason = ?, updated_at = ? "
            "WHERE tranche_id = ?",
            (CANCELLED, cancelled_on, reason, at, tranche_id),
        )

    def of_firm(self, credit_code: str) -> list[TrancheRow]:
        return [
            _tranche(r)
            for r in self.tx.all(
                f"SELECT {_TRANCHE_COLUMNS} FROM payout_tranches WHERE credit_code = ? ORDER BY application_id, number",
                (credit_code,),
            )
        ]

    def firms_held(self) -> list[str]:
        return [
            r[0]
            for r in self.tx.all(
                "SELECT DISTINCT credit_code FROM payout_tranches WHERE status = ? ORDER BY credit_code", (HELD,)
            )
        ]

    def of_firm_in(self, credit_code: str, statuses: tuple[str, ...], due_by: str = "") -> list[TrancheRow]:
        sql = (
            f"SELECT {_TRANCHE_COLUMNS} FROM payout_tranches WHERE credit_code = ? "
            f"AND status IN ({', '.join('?' for _ in statuses)})"
        )
        params: list[Any] = [credit_code, *statuses]
        if due_by:
            sql += " AND due_on <= ?"
            params.append(due_by)
        return [_tranche(r) for r in self.tx.all(sql + " ORDER BY due_on, tranche_id", params)]

    def mark_held(self, tranche_id: str, held_on: str, hold_until: str, reason: str, at: str) -> None:
        self.tx.execute(
            "UPDATE payout_tranches SET status = ?, held_on = ?, hold_until = ?, hold_reason = ?, "
            "hold_count = COALESCE(hold_count, 0) + 1, updated_at = ? WHERE tranche_id = ?",
            (HELD, held_on, hold_until, reason, at, tranche_id),
        )

    def mark_released(self, tranche_id: str, at: str) -> None:
        self.tx.execute(
            "UPDATE payout_tranches SET status = ?, updated_at = ? WHERE tranche_id = ? AND status = ?",
            (DUE, at, tranche_id, HELD),
        )

    def of_application(self, application_id: str) -> list[TrancheRow]:
        return [
            _tranche(r)
            for r in self.tx.all(
                f"SELECT {_TRANCHE_COLUMNS} FROM payout_tranches WHERE application_id = ? ORDER BY number",
                (application_id,),
            )
        ]

    def page(self, query: TrancheQuery, limit: int) -> list[TrancheRow]:
        sql = f"SELECT {_TRANCHE_COLUMNS} FROM payout_tranches WHERE 1 = 1"
        params: list[Any] = []
        if query.due_from:
            sql += " AND due_on >= ?"
            params.append(query.due_from)
        if query.due_to:
            sql += " AND due_on <= ?"
            params.append(query.due_to)
        if query.statuses:
            sql += f" AND status IN ({', '.join('?' for _ in query.statuses)})"
            params += list(query.statuses)
        if query.after is not None:
            sql += " AND (due_on > ? OR (due_on = ? AND tranche_id > ?))"
            params += [query.after[0], query.after[0], query.after[1]]
        sql += " ORDER BY due_on, tranche_id LIMIT ?"
        params.append(limit)
        return [_tranche(r) for r in self.tx.all(sql, params)]

    def of_budget_year(self, year: int) -> list[TrancheRow]:
        return [
            _tranche(r)
            for r in self.tx.all(
                f"SELECT {_TRANCHE_COLUMNS} FROM payout_tranches WHERE budget_year = ? ORDER BY due_on, tranche_id",
                (year,),
            )
        ]


class SqlUsage:
    def __init__(self, tx: Transaction):
        self.tx = tx

    def used_fen(self, credit_code: str, scope: str) -> int:
        raw = self.tx.one("SELECT used_fen FROM payout_usage WHERE credit_code = ? AND scope = ?", (credit_code, scope))
        return int(raw[0]) if raw else 0

    def add(self, credit_code: str, scope: str, limit: str, cap_fen: int, granted_fen: int) -> None:
        self.tx.execute(
            "INSERT INTO payout_usage (credit_code, scope, limit_kind, cap_fen, used_fen) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (credit_code, scope) DO UPDATE SET "
            "used_fen = payout_usage.used_fen + excluded.used_fen, "
            "cap_fen = excluded.cap_fen, limit_kind = excluded.limit_kind",
            (credit_code, scope, limit, cap_fen, granted_fen),
        )

    def release(self, credit_code: str, scope: str, fen: int) -> None:
        self.tx.execute(
            "UPDATE payout_usage SET used_fen = CASE WHEN used_fen > ? THEN used_fen - ? ELSE 0 END "
            "WHERE credit_code = ? AND scope = ?",
            (fen, fen, credit_code, scope),
        )

    def of_firm(self, credit_code: str) -> list[UsageRow]:
        return [
            UsageRow(r[0], r[1], int(r[2]), int(r[3]))
            for r in self.tx.all(
                "SELECT scope, limit_kind, used_fen, cap_fen FROM payout_usage WHERE credit_code = ? ORDER BY scope",
                (credit_code,),
            )
        ]


class SqlPayments:
    def __init__(self, tx: Transaction):
        self.tx = tx

    def has(self, payment_id: str) -> bool:
        return self.tx.one("SELECT 1 FROM payout_payments WHERE payment_id = ?", (payment_id,)) is not None

    def add(self, payment: Payment, at: str) -> None:
        self.tx.execute(
            "INSERT INTO payout_payments (payment_id, tranche_id, credit_code, amount_fen, paid_on, applied_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (payment.payment_id, payment.tranche_id, payment.credit_code, payment.amount_fen, payment.paid_on, at),
        )


class SqlFacts:
    def __init__(self, tx: Transaction):
        self.tx = tx

    def get(self, credit_code: str) -> FirmStanding | None:
        raw = self.tx.one(
            "SELECT credit_code, known, registered_in_district, tax_registered_in_district, "
            "independent_legal_person, as_of, feed_sequence FROM payout_firm_facts WHERE credit_code = ?",
            (credit_code,),
        )
        if raw is None:
            return None
        return FirmStanding(
            credit_code=raw[0],
            known=bool(raw[1]),
            as_of=dt.date.fromisoformat(raw[5]) if raw[5] else None,
            registered_in_district=bool(raw[2]),
            tax_registered_in_district=bool(raw[3]),
            independent_legal_person=bool(raw[4]),
            feed_sequence=int(raw[6]),
        )

    def put(self, standing: FirmStanding, name: str, at: str) -> None:
        self.tx.execute(
            "INSERT INTO payout_firm_facts (credit_code, known, registered_in_district, tax_registered_in_district, "
            "independent_legal_person, as_of, feed_sequence, name, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (credit_code) DO UPDATE SET known = excluded.known, "
            "registered_in_district = excluded.registered_in_district, "
            "tax_registered_in_district = excluded.tax_registered_in_district, "
            "independent_legal_person = excluded.independent_legal_person, as_of = excluded.as_of, "
            "feed_sequence = excluded.feed_sequence, name = excluded.name, updated_at = excluded.updated_at",
            (
                standing.credit_code,
                int(standing.known),
                int(standing.registered_in_district),
                int(standing.tax_registered_in_district),
                int(standing.independent_legal_person),
                standing.as_of.isoformat() if standing.as_of else None,
                standing.feed_sequence,
                name,
                at,
            ),
        )


_RECOVERY_COLUMNS = (
    "recovery_id, application_id, credit_code, clause, amount_fen, recovered_fen, reason, void_award, "
    "opened_on, opened_by, status"
)


class SqlRecoveries:
    def __init__(self, tx: Transaction):
        self.tx = tx

    def _rows(self, where: str, params: tuple) -> list[RecoveryRow]:
        rows = self.tx.all(
            f"SELECT {_RECOVERY_COLUMNS} FROM payout_recoveries WHERE {where} "
            "ORDER BY application_id, opened_on, recovery_id",
            params,
        )
        out = []
        for r in rows:
            allocations = tuple(
                (str(t), int(f))
                for t, f in self.tx.all(
                    "SELECT tranche_id, amount_fen FROM payout_recovery_tranches WHERE recovery_id = ? "
                    "ORDER BY position",
                    (r[0],),
                )
            )
            out.append(
                RecoveryRow(
                    recovery_id=r[0],
                    application_id=r[1],
                    credit_code=r[2],
                    clause=r[3],
                    allocations=allocations,
                    amount_fen=int(r[4]),
                    recovered_fen=int(r[5]),
                    reason=r[6],
                    void_award=bool(r[7]),
                    opened_on=r[8],
                    opened_by=r[9],
                    status=r[10],
                )
            )
        return out

    def get(self, recovery_id: str) -> RecoveryRow | None:
        rows = self._rows("recovery_id = ?", (recovery_id,))
        return rows[0] if rows else None

    def add(self, recovery: RecoveryRow, at: str) -> None:
        self.tx.execute(
            f"INSERT INTO payout_recoveries ({_RECOVERY_COLUMNS}, created_at, updated_at) "  # nosec B608 - a constant column list, values bound
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                recovery.recovery_id,
                recovery.application_id,
                recovery.credit_code,
                recovery.clause,
                recovery.amount_fen,
                recovery.recovered_fen,
                recovery.reason,
                int(recovery.void_award),
                recovery.opened_on,
                recovery.opened_by,
                recovery.status,
                at,
                at,
            ),
        )
        for position, (tranche_id, fen) in enumerate(recovery.allocations):
            self.tx.execute(
                "INSERT INTO payout_recovery_tranches (recovery_id, tranche_id, position, amount_fen) "
                "VALUES (?, ?, ?, ?)",
                (recovery.recovery_id, tranche_id, position, fen),
            )

    def claimed_fen(self, application_id: str) -> dict[str, int]:
        return {
            str(t): int(f)
            for t, f in self.tx.all(
                "SELECT rt.tranche_id, SUM(rt.amount_fen) FROM payout_recovery_tranches rt "
                "JOIN payout_recoveries r ON r.recovery_id = rt.recovery_id WHERE r.application_id = ? "
                "GROUP BY rt.tranche_id",
                (application_id,),
            )
        }

    def of_firm(self, credit_code: str) -> list[RecoveryRow]:
        return self._rows("credit_code = ?", (credit_code,))

    def add_recovered(self, recovery_id: str, fen: int, status: str, at: str) -> None:
        self.tx.execute(
            "UPDATE payout_recoveries SET recovered_fen = recovered_fen + ?, status = ?, updated_at = ? "
            "WHERE recovery_id = ?",
            (fen, status, at, recovery_id),
        )


class SqlConfirmations:
    def __init__(self, tx: Transaction):
        self.tx = tx

    def has(self, confirmation_id: str) -> bool:
        return (
            self.tx.one("SELECT 1 FROM payout_recovery_confirmations WHERE confirmation_id = ?", (confirmation_id,))
            is not None
        )

    def add(self, c: RecoveryConfirmation, at: str) -> None:
        self.tx.execute(
            "INSERT INTO payout_recovery_confirmations (confirmation_id, recovery_id, credit_code, amount_fen, "
            "recovered_on, applied_at) VALUES (?, ?, ?, ?, ?, ?)",
            (c.confirmation_id, c.recovery_id, c.credit_code, c.amount_fen, c.recovered_on, at),
        )


class SqlOutbox:
    def __init__(self, tx: Transaction):
        self.tx = tx

    def add(self, messages: Iterable[OutboxMessage], at: str) -> None:
        outbox.enqueue(self.tx, "payout_outbox", messages, at)


@dataclasses.dataclass
class _Tables:
    """The ledger's tables inside one open transaction."""

    firms: SqlFirms
    inbox: SqlInbox
    grants: SqlGrants
    tranches: SqlTranches
    usage: SqlUsage
    payments: SqlPayments
    outbox: SqlOutbox
    facts: SqlFacts
    recoveries: SqlRecoveries
    confirmations: SqlConfirmations


class SqlStore(ThreadUnitOfWork[_Tables], migrations.OwnedSchema):
    """ports.UnitOfWork over the database (see the module doc), and the
    outbox and metrics queries the relay and bootstrap.py need (create_schema
    and ping: migrations.OwnedSchema)."""

    history = HISTORY
    tables_owner = "the ledger"

    def __init__(self, db: Database):
        super().__init__(db)
        #: The relay's side of ``payout_outbox`` (subsidy/platform/outbox.py).
        self.outbox_table = OutboxTable(db, "payout_outbox", RELAY_LOCK_KEY)

    # -- the unit of work (subsidy/platform/unit_of_work.py) -------------------------------------

    def batch(self) -> ContextManager[Transaction]:
        """One transaction for every unit of work this thread opens inside (see the module docstring)."""
        return self.db.batch()

    def open_tables(self, tx: Transaction) -> _Tables:
        return _Tables(
            SqlFirms(tx),
            SqlInbox(tx),
            SqlGrants(tx),
            SqlTranches(tx),
            SqlUsage(tx),
            SqlPayments(tx),
            SqlOutbox(tx),
            SqlFacts(tx),
            SqlRecoveries(tx),
            SqlConfirmations(tx),
        )

    @property
    def firms(self) -> SqlFirms:
        return self.tables().firms

    @property
    def inbox(self) -> SqlInbox:
        return self.tables().inbox

    @property
    def grants(self) -> SqlGrants:
        return self.tables().grants

    @property
    def tranches(self) -> SqlTranches:
        return self.tables().tranches

    @property
    def usage(self) -> SqlUsage:
        return self.tables().usage

    @property
    def payments(self) -> SqlPayments:
        return self.tables().payments

    @property
    def outbox(self) -> SqlOutbox:
        return self.tables().outbox

    @property
    def facts(self) -> SqlFacts:
        return self.tables().facts

    @property
    def recoveries(self) -> SqlRecoveries:
        return self.tables().recoveries

    @property
    def confirmations(self) -> SqlConfirmations:
        return self.tables().confirmations

    # -- the outbox (relay) ------------------------------------------------------------------

    def relay_batch(self, publish: Callable[[list[OutboxRow]], Published], limit: int = 100) -> int | None:
        """Publish one batch of pending rows in id order and mark the
        acknowledged ones; None when another replica's relay holds the turn
        (subsidy/platform/outbox.py: OutboxTable)."""
        return self.outbox_table.relay_batch(publish, limit)

    def pending_count(self) -> int:
        return self.outbox_table.pending_count()

    # -- operations (metrics) ------------------------------------------------------------------

    def outbox_stats(self) -> tuple[int, str | None]:
        """(unpublished rows, created_at of the oldest of them or None)."""
        return self.outbox_table.stats()

    def tranche_stats(self, overdue_before: str) -> tuple[dict[str, int], int]:
        """(tranches per status, DUE tranches due before ``overdue_before`` (YYYY-MM-DD))."""
        with self.db.transaction() as tx:
            by_status = {
                str(s): int(n) for s, n in tx.all("SELECT status, COUNT(*) FROM payout_tranches GROUP BY status")
            }
            overdue = int(
                tx.one("SELECT COUNT(*) FROM payout_tranches WHERE status = 'DUE' AND due_on < ?", (overdue_before,))[0]
            )
        return by_status, overdue

    def recoveries_open(self) -> int:
        """Recoveries not yet fully recovered (the gauge)."""
        with self.db.transaction() as tx:
            return int(tx.one("SELECT COUNT(*) FROM payout_recoveries WHERE status = 'OPEN'")[0])
