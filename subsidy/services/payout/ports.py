"""What payout's use cases (handlers.py) need from outside: the ledger's
tables, inside one unit of work. Adapter: adapters/store.py (``SqlStore``,
SQLite or PostgreSQL); the unit tests use tests/unit/payout/fakes.py (in
memory).

A use case opens the unit of work (``with uow:``), reads and writes through
its tables, and calls ``uow.commit()`` once; leaving the ``with`` without
that commit (an exception, a refusal) keeps nothing it wrote. So a grant,
its tranches, the cap usage, the inbox row and the outbox rows announcing
them are one commit or nothing (ADR 0003, the outbox: the events go out
only if the change they announce was made).

Times are the RFC 3339 UTC text the tables keep (``subsidy.core.dates.rfc3339``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, Protocol

from subsidy.core.domain import Decision
from subsidy.core.release import FirmStanding
from subsidy.platform.outbox import OutboxMessage
from subsidy.services.payout.model import (
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


class Firms(Protocol):
    def lock(self, credit_code: str, at: str) -> None:
        """Hold the firm until the unit of work ends (making its row if it has
        none). Every write that concerns a firm takes it first, so replicas
        applying claims of one firm take turns: the cap check and the grant it
        leads to are one atomic step, and one firm's outbox rows are in the
        order its units of work commit."""


class Inbox(Protocol):
    """The decision ids applied: a redelivered decision changes nothing."""

    def has(self, decision_id: str) -> bool: ...

    def get(self, decision_id: str) -> InboxRow | None:
        """The decision as seen, with what applying it did (applied, duplicate, held_for_review); None when never seen."""

    def add(self, decision: Decision, result: str, at: str) -> None: ...


class Grants(Protocol):
    def is_applied(self, application_id: str) -> bool:
        """Has this application a grant (whatever its amount)?"""

    def trace_id(self, application_id: str) -> str:
        """The trace id the application's grant was recorded under; "" when none is known."""

    def add(self, grant: GrantRow, submitted_on: dt.date, at: str) -> None:
        """A new grant, in ``grant.state`` (RESERVED), with its uses and schedule."""

    def replace(self, grant: GrantRow, at: str) -> None:
        """The application's RESERVED grant now holds another decision (a
        superseding one): its decision, outcome, policy version, amounts,
        reasons, uses and schedule become ``grant``'s; state, trace and the
        rest stay."""

    def by_decision(self, decision_id: str) -> GrantRow | None:
        """The grant recorded for this decision id (``tranches`` left empty), or None."""

    def set_state(self, application_id: str, state: GrantState, notice_id: str, day: str, reason: str, at: str) -> None:
        """PAYABLE (``day`` is payable_on) or WITHDRAWN (``day`` is withdrawn_on, with ``reason``)."""

    def of_firm(self, credit_code: str) -> list[GrantRow]:
        """The firm's grants, by decision year then application id (their ``tranches`` left empty)."""

    def get(self, application_id: str) -> GrantRow | None:
        """The application's grant (``tranches`` and ``recoveries`` left empty), or None."""

    def declare_void(self, application_id: str, at: str) -> None:
        """The reviewer declared the award void (a recovery with void_award)."""

    def add_cap_released(self, application_id: str, fen: int, at: str) -> None:
        """``fen`` more of the grant's cap use released (a void award)."""


class Tranches(Protocol):
    def get(self, tranche_id: str) -> TrancheRow | None: ...

    def add(self, tranche: TrancheRow, at: str) -> None: ...

    def firms_due(self, day: str) -> list[str]:
        """The credit codes with a SCHEDULED tranche due on or before ``day``, ascending."""

    def mark_due(self, credit_code: str, day: str, at: str) -> list[TrancheRow]:
        """The firm's SCHEDULED tranches due on or before ``day`` become DUE; returns them as they are now."""

    def mark_paid(self, tranche_id: str, paid_on: str, payment_id: str, at: str) -> None: ...

    def mark_cancelled(self, tranche_id: str, cancelled_on: str, reason: str, at: str) -> None: ...

    def firms_held(self) -> list[str]:
        """The credit codes with a HELD tranche, ascending."""

    def of_firm_in(self, credit_code: str, statuses: tuple[str, ...], due_by: str = "") -> list[TrancheRow]:
        """The firm's tranches in these statuses (due on or before ``due_by``
        when given), by due date then tranche id."""

    def mark_held(self, tranche_id: str, held_on: str, hold_until: str, reason: str, at: str) -> None:
        """HELD, with the hold's day, last day of grace and reason; its hold count goes up by one."""

    def mark_released(self, tranche_id: str, at: str) -> None:
        """A HELD tranche is DUE again (the hold's columns are kept)."""

    def of_application(self, application_id: str) -> list[TrancheRow]:
        """The grant's tranches, by number."""

    def of_firm(self, credit_code: str) -> list[TrancheRow]:
        """The firm's tranches, by application id then number."""

    def page(self, query: TrancheQuery, limit: int) -> list[TrancheRow]:
        """Up to ``limit`` tranches matching ``query``'s filters, by due date then
        tranche id, after ``query.after`` (the last one of the previous page)."""

    def of_budget_year(self, year: int) -> list[TrancheRow]:
        """The tranches of a budget year, by due date then tranche id."""


class Usage(Protocol):
    """What each firm has been granted per scope, and the scope's cap and limit."""

    def used_fen(self, credit_code: str, scope: str) -> int: ...

    def add(self, credit_code: str, scope: str, limit: str, cap_fen: int, granted_fen: int) -> None:
        """``granted_fen`` more used in the scope; the scope's cap and limit as the decision says."""

    def release(self, credit_code: str, scope: str, fen: int) -> None:
        """``fen`` less used in the scope (a withdrawn grant's reservation); never below 0."""

    def of_firm(self, credit_code: str) -> list[UsageRow]:
        """The firm's scopes, by scope."""


class Facts(Protocol):
    """The latest firm facts payout heard on subsidy.firms.v1 (what the release gate reads)."""

    def get(self, credit_code: str) -> FirmStanding | None:
        """None when the feed never mentioned the firm."""

    def put(self, standing: FirmStanding, name: str, at: str) -> None:
        """Keep these facts as the firm's latest (the caller checked they are newer)."""


class Recoveries(Protocol):
    def get(self, recovery_id: str) -> RecoveryRow | None: ...

    def add(self, recovery: RecoveryRow, at: str) -> None:
        """A new recovery with its allocations per tranche."""

    def claimed_fen(self, application_id: str) -> dict[str, int]:
        """Per tranche of the grant: what its recoveries claim (tranche id -> fen)."""

    def of_firm(self, credit_code: str) -> list[RecoveryRow]:
        """The firm's recoveries, by application id then opened day then id."""

    def add_recovered(self, recovery_id: str, fen: int, status: str, at: str) -> None:
        """``fen`` more recovered; the recovery's status as it is now."""


class RecoveryConfirmations(Protocol):
    """Finance's confirmation ids applied: a redelivered one changes nothing."""

    def has(self, confirmation_id: str) -> bool: ...

    def add(self, confirmation: RecoveryConfirmation, at: str) -> None: ...


class Payments(Protocol):
    """The payment ids applied: a redelivered confirmation changes nothing."""

    def has(self, payment_id: str) -> bool: ...

    def add(self, payment: Payment, at: str) -> None: ...


class Outbox(Protocol):
    def add(self, messages: Iterable[OutboxMessage], at: str) -> None:
        """Enqueue the events for the relay, each once per event id (a
        repeated write enqueues nothing)."""


class UnitOfWork(Protocol):
    """The ledger's tables in one transaction (see the module doc)."""

    @property
    def firms(self) -> Firms: ...

    @property
    def inbox(self) -> Inbox: ...

    @property
    def grants(self) -> Grants: ...

    @property
    def tranches(self) -> Tranches: ...

    @property
    def usage(self) -> Usage: ...

    @property
    def payments(self) -> Payments: ...

    @property
    def outbox(self) -> Outbox: ...

    @property
    def facts(self) -> Facts: ...

    @property
    def recoveries(self) -> Recoveries: ...

    @property
    def confirmations(self) -> RecoveryConfirmations: ...

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Undo whatever was not committed."""

    def commit(self) -> None:
        """Make the unit of work's writes durable (and end it)."""
