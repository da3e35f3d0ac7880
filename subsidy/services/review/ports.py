"""What review's use cases (handlers.py) need from outside: its tables inside
one unit of work. Adapter: adapters/store.py (``SqlStore``, SQLite or
PostgreSQL); the unit tests use tests/unit/review/fakes.py (in memory).

A use case opens the unit of work (``with uow:``), reads and writes, and calls
``uow.commit()`` once; leaving without it keeps nothing (a refusal changes
nothing: the item, the audit entry and the outbox rows announcing the step
are one commit or none).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, Protocol

from subsidy.core.workflow.notice import Objection
from subsidy.core.workflow.review import ReviewItem
from subsidy.platform.outbox import OutboxMessage
from subsidy.services.review.model import AuditEntry, GrantRow, LineRow, NoticeRow


class Items(Protocol):
    def get(self, item_id: str) -> ReviewItem | None: ...

    def add(self, item: ReviewItem, deadline: dt.date, trace_id: str, at: str) -> bool:
        """False (and nothing written) when the item exists already."""

    def update(self, item: ReviewItem, at: str) -> None: ...

    def trace_id(self, item_id: str) -> str: ...

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
        """Items (with their deadline) matching the filters, by queued day then
        item id, after ``after``; ``overdue_on``: only open items whose deadline
        is before that day."""


class Applications(Protocol):
    def put(self, application_id: str, credit_code: str, firm_name: str, payload: bytes, at: str) -> None: ...

    def get(self, application_id: str) -> tuple[str, bytes] | None:
        """(firm name, the Application as protobuf bytes)."""


class Grants(Protocol):
    def add(self, grant: GrantRow, at: str) -> bool:
        """False when the decision's grant is known already."""

    def pool(self) -> list[GrantRow]:
        """Grants with an amount not yet on any notice, by credit code then decision id."""

    def of_firm(self, credit_code: str) -> list[GrantRow]: ...

    def mark_noticed(self, decision_ids: Iterable[str], notice_id: str) -> None: ...

    def set_state(self, decision_id: str, state: str) -> None:
        """The grant's state as the ledger now has it (SUPERSEDED: another decision holds it, issue 14)."""


class Notices(Protocol):
    def add(self, notice: NoticeRow, at: str) -> None: ...

    def get(self, notice_id: str) -> NoticeRow | None: ...

    def count(self) -> int: ...

    def page(self, after: str | None, limit: int) -> list[NoticeRow]:
        """By notice id, after ``after``."""


class Lines(Protocol):
    def add(self, line: LineRow) -> None: ...

    def get(self, line_id: str) -> LineRow | None: ...

    def of_notice(self, notice_id: str) -> list[LineRow]: ...

    def set_status(self, line_id: str, status: str, payable_on: str, at: str) -> None: ...

    def waiting(self, status: str, ended_before: dt.date) -> list[LineRow]:
        """Lines in ``status`` whose notice's period ended before ``ended_before``."""


class Objections(Protocol):
    def add(self, objection: Objection, notice_id: str, credit_code: str, objector_credit_code: str) -> None: ...

    def get(self, objection_id: str) -> tuple[Objection, str, str, str] | None:
        """(objection, notice id, the line's credit code, objector's credit code)."""

    def update(self, objection: Objection) -> None: ...

    def of_line(self, line_id: str) -> list[Objection]: ...


class Audit(Protocol):
    """Append-only: entries are added, never changed or removed."""

    def add(self, subject: str, role: str, action: str, target: str, before: str, after: str, at: str) -> None: ...

    def page(self, target: str, after: int, limit: int) -> list[AuditEntry]: ...


class Outbox(Protocol):
    def add(self, messages: Iterable[OutboxMessage], at: str) -> None:
        """Each once per event id (a repeated write enqueues nothing)."""


class UnitOfWork(Protocol):
    @property
    def items(self) -> Items: ...

    @property
    def applications(self) -> Applications: ...

    @property
    def grants(self) -> Grants: ...

    @property
    def notices(self) -> Notices: ...

    @property
    def lines(self) -> Lines: ...

    @property
    def objections(self) -> Objections: ...

    @property
    def audit(self) -> Audit: ...

    @property
    def outbox(self) -> Outbox: ...

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None: ...

    def commit(self) -> None: ...
