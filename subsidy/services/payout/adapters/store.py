"""The payout ledger on subsidy.platform.db.Database: SQLite (default) or PostgreSQL.

Tables (created and changed by the versioned migrations in adapters/migrations/,
never at start-up; names carry the service so several services may share one
PostgreSQL database): ``payout_firms`` (one row per
firm: the row every write for that firm locks), ``payout_inbox`` (decision ids
applied), ``payout_grants``, ``payout_tranches``, ``payout_usage`` (used, cap
and limit per firm and scope), ``payout_payments`` (payment ids applied) and
``payout_outbox`` (events to publish, in ``id`` order, one per event id).

Every write that concerns a firm first locks the firm's row (PostgreSQL
``SELECT … FOR UPDATE``; SQLite's ``BEGIN IMMEDIATE`` already serialises all
writers), so two replicas applying claims of the same firm take turns: the
cap check and the grant it leads to are one atomic step, and one firm's outbox
ids increase in the order its transactions commit.

``batch()``: the decisions consumer applies all the decisions of a poll in
one transaction (one commit, one fsync); each ``apply_decision`` inside is a
savepoint of it (subsidy.platform.db), and the firm locks it takes are held until the
batch commits. Decisions are applied in poll order, so one firm's decisions
(one partition, keyed by credit code) still take turns in order. On
PostgreSQL a batch holds several firm locks taken in poll order, so it can
deadlock with the scheduler (which locks firms in credit-code order) or with
another replica's batch while a partition moves; PostgreSQL then aborts one
of them, and an aborted batch is redone whole (no offset of it committed).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Callable, ContextManager

from subsidy.platform import migrations
from subsidy.platform.db import Database, Transaction
from subsidy.platform.outbox import OutboxMessage, OutboxRow, OutboxTable, Published, encode_headers
from subsidy.core.domain import Decision
from subsidy.services.payout import events, handlers
from subsidy.services.payout.adapters.migrations import HISTORY
from subsidy.core.ledger import GrantPlan, plan_grant
from subsidy.services.payout.model import (
    CANCELLED,
    DUE,
    OPEN,
    PAID,
    SCHEDULED,
    FailedPrecondition,
    GrantRow,
    Ledger,
    NotFound,
    TrancheRow,
    UsageRow,
    rfc3339,
    utcnow,
)

# Only one relay (of all replicas) publishes at a time: PostgreSQL advisory
# lock key, taken per batch with pg_try_advisory_xact_lock.
RELAY_LOCK_KEY = 0x5042_4F55  # "PBOU"

_TRANCHE_COLUMNS = (
    "tranche_id, application_id, credit_code, clause, number, amount_fen, due_on, budget_year, status, "
    "paid_on, payment_id"
)


def _tranche(raw: tuple) -> TrancheRow:
    return TrancheRow(
        tranche_id=raw[0], application_id=raw[1], credit_code=raw[2], clause=raw[3], number=int(raw[4]),
        amount_fen=int(raw[5]), due_on=raw[6], budget_year=int(raw[7]), status=raw[8],
        paid_on=raw[9] or "", payment_id=raw[10] or "",
    )


@dataclass(frozen=True)
class Applied:
    """What applying one decision did: ``result`` is applied, replayed (decision
    id already in the inbox: nothing written) or duplicate (application id
    already granted under another decision id: a GrantRecorded of 0)."""

    result: str
    plan: GrantPlan | None = None


class DbLedgerView:
    """subsidy.core.ledger.LedgerView inside one transaction."""

    def __init__(self, tx: Transaction):
        self.tx = tx

    def is_applied(self, application_id: str) -> bool:
        return self.tx.one("SELECT 1 FROM payout_grants WHERE application_id = ?", (application_id,)) is not None

    def used_fen(self, credit_code: str, scope: str) -> int:
        raw = self.tx.one(
            "SELECT used_fen FROM payout_usage WHERE credit_code = ? AND scope = ?", (credit_code, scope)
        )
        return int(raw[0]) if raw else 0


class SqlStore:
    def __init__(self, db: Database):
        self.db = db
        self.outbox = OutboxTable(db, "payout_outbox", RELAY_LOCK_KEY)

    # -- schema ---------------------------------------------------------------

    def create_schema(self) -> None:
        """Bring this database to payout's newest schema through its migrations
        (adapters/migrations/), as ``subsidy migrate --service payout`` does: for
        tests and tools that make a store of their own. The service never calls
        it: at start it only checks the version (bootstrap.py)."""
        migrations.upgrade(self.db, HISTORY)

    def ping(self) -> bool:
        return self.db.ping()

    def batch(self) -> ContextManager[Transaction]:
        """One transaction for every write this thread makes inside (see the module docstring)."""
        return self.db.batch()

    # -- locking and writing ------------------------------------------------------

    def _lock_firm(self, tx: Transaction, credit_code: str, now: str) -> None:
        """Hold the firm's row until the transaction ends (created if missing)."""
        tx.execute(
            "INSERT INTO payout_firms (credit_code, created_at) VALUES (?, ?) ON CONFLICT (credit_code) DO NOTHING",
            (credit_code, now),
        )
        if tx.dialect == "postgresql":
            tx.execute("SELECT credit_code FROM payout_firms WHERE credit_code = ? FOR UPDATE", (credit_code,))

    @staticmethod
    def _outbox(tx: Transaction, messages: list[OutboxMessage], now: str) -> None:
        for m in messages:
            tx.execute(
                "INSERT INTO payout_outbox (event_id, topic, key, value, headers, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
                (m.event_id, m.topic, m.key, m.value, encode_headers(m.headers), now),
            )

    @staticmethod
    def _get_tranche(tx: Transaction, tranche_id: str) -> TrancheRow | None:
        raw = tx.one(f"SELECT {_TRANCHE_COLUMNS} FROM payout_tranches WHERE tranche_id = ?", (tranche_id,))
        return _tranche(raw) if raw else None

    @staticmethod
    def _trace_of(tx: Transaction, application_id: str) -> str:
        from subsidy.contracts import cloudevents

        raw = tx.one("SELECT trace_id FROM payout_grants WHERE application_id = ?", (application_id,))
        return raw[0] if raw and raw[0] else cloudevents.new_trace_id()

    # -- decisions --------------------------------------------------------------------

    def apply_decision(self, decision: Decision, trace_id: str, at: dt.datetime | None = None) -> Applied:
        """One transaction: inbox check, the firm locked, the plan over the
        ledger as it is now, then the grant, tranches, usage and outbox."""
        at = at or utcnow()
        now = rfc3339(at)
        with self.db.transaction() as tx:
            self._lock_firm(tx, decision.credit_code, now)
            if tx.one("SELECT 1 FROM payout_inbox WHERE decision_id = ?", (decision.decision_id,)):
                return Applied("replayed")
            plan = plan_grant(decision, DbLedgerView(tx))
            result = "duplicate" if plan.duplicate else "applied"
            tx.execute(
                "INSERT INTO payout_inbox (decision_id, application_id, credit_code, result, applied_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (decision.decision_id, decision.application_id, decision.credit_code, result, now),
            )
            grant, tranches = handlers.plan_rows(decision, plan, trace_id)
            if not plan.duplicate:
                tx.execute(
                    "INSERT INTO payout_grants (application_id, decision_id, credit_code, clause, outcome, "
                    "policy_version, max_award_fen, granted_fen, decision_year, submitted_on, reasons, trace_id, "
                    "recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (grant.application_id, grant.decision_id, grant.credit_code, grant.clause, grant.outcome,
                     grant.policy_version, grant.max_award_fen, grant.granted_fen, grant.decision_year,
                     decision.submitted_on.isoformat(), json.dumps(events.reasons_to_plain(grant.reasons),
                                                                   ensure_ascii=False),
                     trace_id, now),
                )
                for t in tranches:
                    tx.execute(
                        "INSERT INTO payout_tranches (tranche_id, application_id, credit_code, clause, number, "
                        "amount_fen, due_on, budget_year, status, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (t.tranche_id, t.application_id, t.credit_code, t.clause, t.number, t.amount_fen,
                         t.due_on, t.budget_year, t.status, now),
                    )
                if plan.outcome == "ELIGIBLE":
                    for scope, limit, cap_fen, granted in handlers.scope_additions(decision, plan):
                        tx.execute(
                            "INSERT INTO payout_usage (credit_code, scope, limit_kind, cap_fen, used_fen) "
                            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (credit_code, scope) DO UPDATE SET "
                            "used_fen = payout_usage.used_fen + excluded.used_fen, "
                            "cap_fen = excluded.cap_fen, limit_kind = excluded.limit_kind",
                            (decision.credit_code, scope, limit, cap_fen, granted),
                        )
            self._outbox(tx, handlers.plan_events(decision, plan, trace_id, at), now)
        return Applied(result, plan)

    # -- the scheduler -------------------------------------------------------------------

    def mark_due(self, today: dt.date, at: dt.datetime | None = None) -> list[TrancheRow]:
        """One transaction: every SCHEDULED tranche due on or before ``today``
        becomes DUE with a TrancheDue outbox row. Idempotent: a second run (or
        another replica's) finds nothing SCHEDULED left to mark."""
        at = at or utcnow()
        now = rfc3339(at)
        day = today.isoformat()
        marked: list[TrancheRow] = []
        with self.db.transaction() as tx:
            firms = [r[0] for r in tx.all(
                "SELECT DISTINCT credit_code FROM payout_tranches WHERE status = ? AND due_on <= ? "
                "ORDER BY credit_code", (SCHEDULED, day))]
            for firm in firms:  # locks taken in credit-code order: no deadlock between schedulers
                self._lock_firm(tx, firm, now)
                rows = [_tranche(r) for r in tx.all(
                    f"UPDATE payout_tranches SET status = ?, updated_at = ? "
                    f"WHERE credit_code = ? AND status = ? AND due_on <= ? RETURNING {_TRANCHE_COLUMNS}",
                    (DUE, now, firm, SCHEDULED, day))]
                rows.sort(key=lambda t: (t.due_on, t.tranche_id))
                self._outbox(tx, [events.tranche_due(t, self._trace_of(tx, t.application_id), at) for t in rows], now)
                marked += rows
        return marked

    # -- payments ---------------------------------------------------------------------------

    def apply_payment(self, payment: handlers.Payment, at: dt.datetime | None = None) -> tuple[str, TrancheRow | None]:
        """("applied", tranche) or ("repeat", None) for a payment id already
        applied; raises Rejected (nothing written) when it must not be applied."""
        at = at or utcnow()
        now = rfc3339(at)
        with self.db.transaction() as tx:
            if tx.one("SELECT 1 FROM payout_payments WHERE payment_id = ?", (payment.payment_id,)):
                return "repeat", None
            tranche = self._get_tranche(tx, payment.tranche_id)
            if tranche is not None:
                self._lock_firm(tx, tranche.credit_code, now)
                if tx.one("SELECT 1 FROM payout_payments WHERE payment_id = ?", (payment.payment_id,)):
                    return "repeat", None
                tranche = self._get_tranche(tx, payment.tranche_id)
            handlers.check_payment(payment, tranche)
            assert tranche is not None
            tx.execute(
                "UPDATE payout_tranches SET status = ?, paid_on = ?, payment_id = ?, updated_at = ? "
                "WHERE tranche_id = ?",
                (PAID, payment.paid_on, payment.payment_id, now, tranche.tranche_id),
            )
            tx.execute(
                "INSERT INTO payout_payments (payment_id, tranche_id, credit_code, amount_fen, paid_on, applied_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (payment.payment_id, tranche.tranche_id, payment.credit_code, payment.amount_fen,
                 payment.paid_on, now),
            )
            paid = self._get_tranche(tx, tranche.tranche_id)
            self._outbox(tx, [events.tranche_paid(paid, payment.paid_on, payment.payment_id,
                                                  self._trace_of(tx, paid.application_id), at)], now)
        return "applied", paid

    # -- cancelling -------------------------------------------------------------------------------

    def cancel(self, tranche_id: str, reason: str, today: dt.date,
               at: dt.datetime | None = None) -> tuple[TrancheRow, bool]:
        """(tranche, changed). SCHEDULED or DUE → CANCELLED with a
        TrancheCancelled event; already CANCELLED → unchanged; PAID →
        FailedPrecondition; unknown → NotFound."""
        at = at or utcnow()
        now = rfc3339(at)
        with self.db.transaction() as tx:
            tranche = self._get_tranche(tx, tranche_id)
            if tranche is None:
                raise NotFound(f"no tranche {tranche_id!r}")
            self._lock_firm(tx, tranche.credit_code, now)
            tranche = self._get_tranche(tx, tranche_id)
            if tranche.status == CANCELLED:
                return tranche, False
            if tranche.status == PAID:
                raise FailedPrecondition(
                    f"tranche {tranche_id} was paid on {tranche.paid_on} (payment {tranche.payment_id}): "
                    "a paid tranche cannot be cancelled")
            assert tranche.status in OPEN
            tx.execute(
                "UPDATE payout_tranches SET status = ?, cancelled_on = ?, cancel_reason = ?, updated_at = ? "
                "WHERE tranche_id = ?",
                (CANCELLED, today.isoformat(), reason, now, tranche_id),
            )
            cancelled = self._get_tranche(tx, tranche_id)
            self._outbox(tx, [events.tranche_cancelled(cancelled, reason, today.isoformat(),
                                                       self._trace_of(tx, cancelled.application_id), at)], now)
        return cancelled, True

    # -- reading ------------------------------------------------------------------------------------

    def ledger(self, credit_code: str) -> Ledger:
        with self.db.transaction() as tx:
            grants_raw = tx.all(
                "SELECT application_id, decision_id, credit_code, clause, outcome, policy_version, max_award_fen, "
                "granted_fen, decision_year, reasons, trace_id FROM payout_grants WHERE credit_code = ? "
                "ORDER BY decision_year, application_id", (credit_code,))
            tranches = [_tranche(r) for r in tx.all(
                f"SELECT {_TRANCHE_COLUMNS} FROM payout_tranches WHERE credit_code = ? "
                "ORDER BY application_id, number", (credit_code,))]
            usage = tx.all(
                "SELECT scope, limit_kind, used_fen, cap_fen FROM payout_usage WHERE credit_code = ? ORDER BY scope",
                (credit_code,))
        by_app: dict[str, list[TrancheRow]] = {}
        for t in tranches:
            by_app.setdefault(t.application_id, []).append(t)
        grants = tuple(
            GrantRow(
                application_id=r[0], decision_id=r[1], credit_code=r[2], clause=r[3], outcome=r[4],
                policy_version=r[5], max_award_fen=int(r[6]), granted_fen=int(r[7]), decision_year=int(r[8]),
                reasons=events.reasons_from_plain(json.loads(r[9])), trace_id=r[10],
                tranches=tuple(by_app.get(r[0], ())),
            )
            for r in grants_raw
        )
        scopes = tuple(UsageRow(r[0], r[1], int(r[2]), int(r[3])) for r in usage)
        return Ledger(credit_code, grants, scopes)

    def get_tranche(self, tranche_id: str) -> TrancheRow | None:
        with self.db.transaction() as tx:
            return self._get_tranche(tx, tranche_id)

    def list_tranches(self, query: handlers.TrancheQuery) -> tuple[list[TrancheRow], str]:
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
        params.append(query.page_size + 1)
        with self.db.transaction() as tx:
            rows = [_tranche(r) for r in tx.all(sql, params)]
        if len(rows) > query.page_size:
            rows = rows[: query.page_size]
            return rows, handlers.next_token(query, rows[-1])
        return rows, ""

    def tranches_for_budget_year(self, year: int) -> list[TrancheRow]:
        with self.db.transaction() as tx:
            return [_tranche(r) for r in tx.all(
                f"SELECT {_TRANCHE_COLUMNS} FROM payout_tranches WHERE budget_year = ? ORDER BY due_on, tranche_id",
                (year,))]

    # -- the outbox (relay) --------------------------------------------------------------------------

    def relay_batch(self, publish: Callable[[list[OutboxRow]], Published], limit: int = 100) -> int | None:
        """Publish one batch of pending rows in id order and mark the
        acknowledged ones; None when another replica's relay holds the turn
        (subsidy/platform/outbox.py: OutboxTable)."""
        return self.outbox.relay_batch(publish, limit)

    def pending_count(self) -> int:
        with self.db.transaction() as tx:
            return int(tx.one("SELECT COUNT(*) FROM payout_outbox WHERE published_at IS NULL")[0])

    # -- operations (metrics) ---------------------------------------------------------------------------

    def outbox_stats(self) -> tuple[int, str | None]:
        """(unpublished rows, created_at of the oldest of them or None)."""
        with self.db.transaction() as tx:
            count, oldest = tx.one("SELECT COUNT(*), MIN(created_at) FROM payout_outbox WHERE published_at IS NULL")
        return int(count), oldest

    def tranche_stats(self, overdue_before: str) -> tuple[dict[str, int], int]:
        """(tranches per status, DUE tranches due before ``overdue_before`` (YYYY-MM-DD))."""
        with self.db.transaction() as tx:
            by_status = {str(s): int(n) for s, n in tx.all(
                "SELECT status, COUNT(*) FROM payout_tranches GROUP BY status")}
            overdue = int(tx.one("SELECT COUNT(*) FROM payout_tranches WHERE status = 'DUE' AND due_on < ?",
                                 (overdue_before,))[0])
        return by_status, overdue
