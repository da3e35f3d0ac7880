"""The review service's tables on subsidy.platform.db.Database (SQLite, the
default, or PostgreSQL): ``SqlStore`` is ports.UnitOfWork, plus what the
relay and the metrics read. Tables: adapters/migrations/v0001_baseline.py
(created by ``subsidy migrate --service review``, never at start-up).

A unit of work (``with store:`` … ``store.commit()``) is one
``Database.transaction()`` of the calling thread (the gRPC workers', the
consumers' and the scheduler's threads each have their own). On PostgreSQL
a read-modify-write of an item, a line or an objection locks the row
(``FOR UPDATE``) so two reviewers acting at once take turns; SQLite's
``BEGIN IMMEDIATE`` serialises all writers anyway.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from typing import Any

from subsidy.contracts import codec
from subsidy.core.workflow.notice import Objection
from subsidy.core.workflow.review import ReviewItem
from subsidy.platform import migrations, outbox
from subsidy.platform.db import Database, Transaction
from subsidy.platform.outbox import OutboxMessage, OutboxRow, OutboxTable, Published
from subsidy.platform.unit_of_work import ThreadUnitOfWork
from subsidy.services.review.adapters.migrations import HISTORY
from subsidy.services.review.model import AuditEntry, GrantRow, LineRow, NoticeRow
from subsidy.v1 import decision_pb2

RELAY_LOCK_KEY = 0x5245_5649  # "REVI"
CLOSED = ("APPROVED", "REJECTED")


def _for_update(tx: Transaction) -> str:
    return " FOR UPDATE" if tx.dialect == "postgresql" else ""


def _item_state(item: ReviewItem) -> str:
    return json.dumps(
        {
            "reasons": list(item.reasons),
            "queued_on": item.queued_on.isoformat(),
            "status": item.status,
            "assignee": item.assignee,
            "amount_fen": item.amount_fen,
            "basis": item.basis,
            "reviewer_amounts": [list(p) for p in item.reviewer_amounts],
            "rejection_reasons": item.rejection_reasons,
            "first_reviewer": item.first_reviewer,
            "second_reviewer": item.second_reviewer,
            "info_requests": list(item.info_requests),
            "info_answers": list(item.info_answers),
            "decided_at": item.decided_at,
            "returns": list(item.returns),
        },
        ensure_ascii=False,
    )


def _item(item_id: str, decision: bytes, state: str) -> ReviewItem:
    s = json.loads(state)
    return ReviewItem(
        item_id=item_id,
        decision=codec.decision_from_proto(decision_pb2.Decision.FromString(bytes(decision))),
        reasons=tuple(s["reasons"]),
        queued_on=dt.date.fromisoformat(s["queued_on"]),
        status=s["status"],
        assignee=s["assignee"],
        amount_fen=int(s["amount_fen"]),
        basis=s["basis"],
        reviewer_amounts=tuple((str(k), int(v)) for k, v in s["reviewer_amounts"]),
        rejection_reasons=s["rejection_reasons"],
        first_reviewer=s["first_reviewer"],
        second_reviewer=s["second_reviewer"],
        info_requests=tuple(s["info_requests"]),
        info_answers=tuple(s["info_answers"]),
        decided_at=s["decided_at"],
        returns=tuple(s.get("returns", ())),
    )


class SqlItems:
    def __init__(self, tx: Transaction):
        self.tx = tx

    def get(self, item_id: str) -> ReviewItem | None:
        raw = self.tx.one(
            "SELECT item_id, decision, state FROM review_items WHERE item_id = ?" + _for_update(self.tx), (item_id,)
        )
        return _item(raw[0], raw[1], raw[2]) if raw else None

    def add(self, item: ReviewItem, deadline: dt.date, trace_id: str, at: str) -> bool:
        d = item.decision
        cursor = self.tx.execute(
            "INSERT INTO review_items (item_id, decision_id, application_id, credit_code, clause, reasons, status, "
            "assignee, queued_on, deadline, decision, state, trace_id, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (item_id) DO NOTHING",
            (
                item.item_id,
                d.decision_id,
                d.application_id,
                d.credit_code,
                d.clause,
                " ".join(item.reasons),
                item.status,
                item.assignee,
                item.queued_on.isoformat(),
                deadline.isoformat(),
                codec.decision_to_proto(d).SerializeToString(),
                _item_state(item),
                trace_id,
                at,
                at,
            ),
        )
        return bool(cursor.rowcount)

    def update(self, item: ReviewItem, at: str) -> None:
        self.tx.execute(
            "UPDATE review_items SET status = ?, assignee = ?, state = ?, updated_at = ? WHERE item_id = ?",
            (item.status, item.assignee, _item_state(item), at, item.item_id),
        )

    def trace_id(self, item_id: str) -> str:
        raw = self.tx.one("SELECT trace_id FROM review_items WHERE item_id = ?", (item_id,))
        return raw[0] if raw else ""

    def page(
        self,
        *,
        clause: str,
        reason: str,
        statuses: tuple[str, ...],
        assignee: str,
        overdue_on: dt.date | None,
        after: tuple[str, str] | None,
        limit: int,
    ) -> list[tuple[ReviewItem, dt.date]]:
        sql = "SELECT item_id, decision, state, deadline FROM review_items WHERE 1 = 1"
        params: list[Any] = []
        if clause:
            sql += " AND clause = ?"
            params.append(clause)
        if reason:
            sql += " AND (' ' || reasons || ' ') LIKE ?"
            params.append(f"% {reason} %")
        if statuses:
            sql += f" AND status IN ({', '.join('?' for _ in statuses)})"
            params += list(statuses)
        if assignee:
            sql += " AND assignee = ?"
            params.append(assignee)
        if overdue_on is not None:
            sql += " AND deadline < ? AND status NOT IN (?, ?)"
            params += [overdue_on.isoformat(), *CLOSED]
        if after is not None:
            sql += " AND (queued_on > ? OR (queued_on = ? AND item_id > ?))"
            params += [after[0], after[0], after[1]]
        sql += " ORDER BY queued_on, item_id LIMIT ?"
        params.append(limit)
        return [(_item(r[0], r[1], r[2]), dt.date.fromisoformat(r[3])) for r in self.tx.all(sql, params)]

    def counts(self) -> dict[str, int]:
        return {str(s): int(n) for s, n in self.tx.all("SELECT status, COUNT(*) FROM review_items GROUP BY status")}


class SqlApplications:
    def __init__(self, tx: Transaction):
        self.tx = tx

    def put(self, application_id: str, credit_code: str, firm_name: str, payload: bytes, at: str) -> None:
        self.tx.execute(
            "INSERT INTO review_applications (application_id, credit_code, firm_name, payload, received_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (application_id) DO NOTHING",
            (application_id, credit_code, firm_name, payload, at),
        )

    def get(self, application_id: str) -> tuple[str, bytes] | None:
        raw = self.tx.one(
            "SELECT firm_name, payload FROM review_applications WHERE application_id = ?", (application_id,)
        )
        return (raw[0], bytes(raw[1])) if raw else None


def _grant(r: tuple) -> GrantRow:
    return GrantRow(r[0], r[1], r[2], r[3], int(r[4]), int(r[5]), r[6] or "", r[7])


_GRANT_COLUMNS = "decision_id, application_id, credit_code, clause, granted_fen, decision_year, notice_id, state"


class SqlGrants:
    def __init__(self, tx: Transaction):
        self.tx = tx

    def add(self, grant: GrantRow, at: str) -> bool:
        cursor = self.tx.execute(
            "INSERT INTO review_grants (decision_id, application_id, credit_code, clause, granted_fen, decision_year, "
            "notice_id, state, recorded_at) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?) ON CONFLICT (decision_id) DO NOTHING",
            (
                grant.decision_id,
                grant.application_id,
                grant.credit_code,
                grant.clause,
                grant.granted_fen,
                grant.decision_year,
                grant.state,
                at,
            ),
        )
        return bool(cursor.rowcount)

    def pool(self) -> list[GrantRow]:
        return [
            _grant(r)
            for r in self.tx.all(
                f"SELECT {_GRANT_COLUMNS} FROM review_grants WHERE notice_id IS NULL AND granted_fen > 0 AND state = 'RESERVED' "
                "ORDER BY credit_code, decision_id" + _for_update(self.tx)
            )
        ]

    def of_firm(self, credit_code: str) -> list[GrantRow]:
        return [
            _grant(r)
            for r in self.tx.all(
                f"SELECT {_GRANT_COLUMNS} FROM review_grants WHERE credit_code = ? ORDER BY decision_year, decision_id",
                (credit_code,),
            )
        ]

    def set_state(self, decision_id: str, state: str) -> None:
        self.tx.execute("UPDATE review_grants SET state = ? WHERE decision_id = ?", (state, decision_id))

    def mark_noticed(self, decision_ids: Iterable[str], notice_id: str) -> None:
        for decision_id in decision_ids:
            self.tx.execute(
                "UPDATE review_grants SET notice_id = ? WHERE decision_id = ? AND notice_id IS NULL",
                (notice_id, decision_id),
            )


def _notice(r: tuple) -> NoticeRow:
    return NoticeRow(
        r[0], dt.date.fromisoformat(r[1]), dt.date.fromisoformat(r[2]), dt.date.fromisoformat(r[3]), r[4], r[5]
    )


_NOTICE_COLUMNS = "notice_id, published_on, first_day, last_day, published_by, title"


class SqlNotices:
    def __init__(self, tx: Transaction):
        self.tx = tx

    def add(self, notice: NoticeRow, at: str) -> None:
        self.tx.execute(
            f"INSERT INTO review_notices ({_NOTICE_COLUMNS}, published_at) VALUES (?, ?, ?, ?, ?, ?, ?)",  # nosec B608 - a constant column list, values bound
            (
                notice.notice_id,
                notice.published_on.isoformat(),
                notice.first_day.isoformat(),
                notice.last_day.isoformat(),
                notice.published_by,
                notice.title,
                at,
            ),
        )

    def get(self, notice_id: str) -> NoticeRow | None:
        raw = self.tx.one(f"SELECT {_NOTICE_COLUMNS} FROM review_notices WHERE notice_id = ?", (notice_id,))
        return _notice(raw) if raw else None

    def count(self) -> int:
        raw = self.tx.one("SELECT COUNT(*) FROM review_notices")
        return int(raw[0]) if raw else 0

    def page(self, after: str | None, limit: int) -> list[NoticeRow]:
        return [
            _notice(r)
            for r in self.tx.all(
                f"SELECT {_NOTICE_COLUMNS} FROM review_notices WHERE notice_id > ? ORDER BY notice_id LIMIT ?",
                (after or "", limit),
            )
        ]


_LINE_COLUMNS = (
    "line_id, notice_id, decision_id, application_id, credit_code, firm_name, clause, amount_fen, status, payable_on"
)


def _line(r: tuple) -> LineRow:
    return LineRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], int(r[7]), r[8], r[9])


class SqlLines:
    def __init__(self, tx: Transaction):
        self.tx = tx

    def add(self, line: LineRow) -> None:
        self.tx.execute(
            f"INSERT INTO review_lines ({_LINE_COLUMNS}, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '')",  # nosec B608 - a constant column list, values bound
            (
                line.line_id,
                line.notice_id,
                line.decision_id,
                line.application_id,
                line.credit_code,
                line.firm_name,
                line.clause,
                line.amount_fen,
                line.status,
                line.payable_on,
            ),
        )

    def get(self, line_id: str) -> LineRow | None:
        raw = self.tx.one(
            f"SELECT {_LINE_COLUMNS} FROM review_lines WHERE line_id = ?" + _for_update(self.tx), (line_id,)
        )
        return _line(raw) if raw else None

    def of_notice(self, notice_id: str) -> list[LineRow]:
        return [
            _line(r)
            for r in self.tx.all(
                f"SELECT {_LINE_COLUMNS} FROM review_lines WHERE notice_id = ? ORDER BY credit_code, line_id",
                (notice_id,),
            )
        ]

    def set_status(self, line_id: str, status: str, payable_on: str, at: str) -> None:
        self.tx.execute(
            "UPDATE review_lines SET status = ?, payable_on = ?, updated_at = ? WHERE line_id = ?",
            (status, payable_on, at, line_id),
        )

    def waiting(self, status: str, ended_before: dt.date) -> list[LineRow]:
        columns = ", ".join(f"l.{c.strip()}" for c in _LINE_COLUMNS.split(","))
        return [
            _line(r)
            for r in self.tx.all(
                f"SELECT {columns} FROM review_lines l JOIN review_notices n ON n.notice_id = l.notice_id "
                "WHERE l.status = ? AND n.last_day < ? ORDER BY l.line_id" + _for_update(self.tx),
                (status, ended_before.isoformat()),
            )
        ]


_OBJECTION_COLUMNS = (
    "objection_id, line_id, reason, lodged_by, lodged_on, status, resolution_reasons, resolved_by, resolved_on, "
    "notice_id, credit_code, objector_credit_code"
)


def _objection(r: tuple) -> Objection:
    return Objection(
        objection_id=r[0],
        line_id=r[1],
        reason=r[2],
        lodged_by=r[3],
        lodged_on=dt.date.fromisoformat(r[4]),
        status=r[5],
        resolution_reasons=r[6],
        resolved_by=r[7],
        resolved_on=dt.date.fromisoformat(r[8]) if r[8] else None,
    )


class SqlObjections:
    def __init__(self, tx: Transaction):
        self.tx = tx

    def add(self, objection: Objection, notice_id: str, credit_code: str, objector_credit_code: str) -> None:
        o = objection
        self.tx.execute(
            f"INSERT INTO review_objections ({_OBJECTION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # nosec B608 - a constant column list, values bound
            (
                o.objection_id,
                o.line_id,
                o.reason,
                o.lodged_by,
                o.lodged_on.isoformat(),
                o.status,
                o.resolution_reasons,
                o.resolved_by,
                o.resolved_on.isoformat() if o.resolved_on else "",
                notice_id,
                credit_code,
                objector_credit_code,
            ),
        )

    def get(self, objection_id: str) -> tuple[Objection, str, str, str] | None:
        raw = self.tx.one(
            f"SELECT {_OBJECTION_COLUMNS} FROM review_objections WHERE objection_id = ?" + _for_update(self.tx),
            (objection_id,),
        )
        return (_objection(raw), raw[9], raw[10], raw[11]) if raw else None

    def update(self, objection: Objection) -> None:
        o = objection
        self.tx.execute(
            "UPDATE review_objections SET status = ?, resolution_reasons = ?, resolved_by = ?, resolved_on = ? "
            "WHERE objection_id = ?",
            (
                o.status,
                o.resolution_reasons,
                o.resolved_by,
                o.resolved_on.isoformat() if o.resolved_on else "",
                o.objection_id,
            ),
        )

    def of_line(self, line_id: str) -> list[Objection]:
        return [
            _objection(r)
            for r in self.tx.all(
                f"SELECT {_OBJECTION_COLUMNS} FROM review_objections WHERE line_id = ? ORDER BY objection_id",
                (line_id,),
            )
        ]

    def of_notice(self, notice_id: str) -> list[tuple[Objection, str, str, str]]:
        return [
            (_objection(r), r[9], r[10], r[11])
            for r in self.tx.all(
                f"SELECT {_OBJECTION_COLUMNS} FROM review_objections WHERE notice_id = ? ORDER BY objection_id",
                (notice_id,),
            )
        ]


class SqlAudit:
    def __init__(self, tx: Transaction):
        self.tx = tx

    def add(self, subject: str, role: str, action: str, target: str, before: str, after: str, at: str) -> None:
        self.tx.execute(
            "INSERT INTO review_audit (at, subject, role, action, target, before, after) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (at, subject, role, action, target, before, after),
        )

    def page(self, target: str, after: int, limit: int) -> list[AuditEntry]:
        return [
            AuditEntry(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7])
            for r in self.tx.all(
                "SELECT sequence, at, subject, role, action, target, before, after FROM review_audit "
                "WHERE target = ? AND sequence > ? ORDER BY sequence LIMIT ?",
                (target, after, limit),
            )
        ]


class SqlOutbox:
    def __init__(self, tx: Transaction):
        self.tx = tx

    def add(self, messages: Iterable[OutboxMessage], at: str) -> None:
        outbox.enqueue(self.tx, "review_outbox", messages, at)


class _Tables:
    """Review's tables inside one open transaction."""

    def __init__(self, tx: Transaction):
        self.items = SqlItems(tx)
        self.applications = SqlApplications(tx)
        self.grants = SqlGrants(tx)
        self.notices = SqlNotices(tx)
        self.lines = SqlLines(tx)
        self.objections = SqlObjections(tx)
        self.audit = SqlAudit(tx)
        self.outbox = SqlOutbox(tx)


class SqlStore(ThreadUnitOfWork[_Tables], migrations.OwnedSchema):
    """ports.UnitOfWork over the database (see the module doc; the unit of
    work itself: subsidy/platform/unit_of_work.py)."""

    history = HISTORY
    tables_owner = "review"

    def __init__(self, db: Database):
        super().__init__(db)
        self.outbox_table = OutboxTable(db, "review_outbox", RELAY_LOCK_KEY)

    def open_tables(self, tx: Transaction) -> _Tables:
        return _Tables(tx)

    @property
    def items(self) -> SqlItems:
        return self.tables().items

    @property
    def applications(self) -> SqlApplications:
        return self.tables().applications

    @property
    def grants(self) -> SqlGrants:
        return self.tables().grants

    @property
    def notices(self) -> SqlNotices:
        return self.tables().notices

    @property
    def lines(self) -> SqlLines:
        return self.tables().lines

    @property
    def objections(self) -> SqlObjections:
        return self.tables().objections

    @property
    def audit(self) -> SqlAudit:
        return self.tables().audit

    @property
    def outbox(self) -> SqlOutbox:
        return self.tables().outbox

    # -- the outbox (relay) and metrics -------------------------------------------------------

    def relay_batch(self, publish: Callable[[list[OutboxRow]], Published], limit: int = 100) -> int | None:
        return self.outbox_table.relay_batch(publish, limit)

    def pending_count(self) -> int:
        return self.outbox_table.pending_count()

    def outbox_stats(self) -> tuple[int, str | None]:
        return self.outbox_table.stats()

    def item_stats(self, today: dt.date) -> tuple[dict[str, int], int]:
        """(items per status, open items past their deadline)."""
        with self.db.transaction() as tx:
            by_status = {str(s): int(n) for s, n in tx.all("SELECT status, COUNT(*) FROM review_items GROUP BY status")}
            raw = tx.one(
                "SELECT COUNT(*) FROM review_items WHERE deadline < ? AND status NOT IN (?, ?)",
                (today.isoformat(), *CLOSED),
            )
        return by_status, int(raw[0]) if raw else 0
