"""The ports the intake core talks to. Adapters: store.py (SQLite or
PostgreSQL), subsidy.platform.registry (file or HTTP), directory.py (YAML files); the unit
tests use in-memory fakes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from typing import Any, Protocol

from subsidy.platform.outbox import OutboxMessage
from subsidy.services.intake.model import DirectoryEntry, StoredApplication, StoredProposal
from subsidy.services.intake.search import Filters


class Directory(Protocol):
    """The annual 名录 of platforms and solution providers (clause 5)."""

    def years(self) -> list[int]: ...

    def entries(self, year: int) -> list[DirectoryEntry]:
        """The year's entries; empty when the year has no 名录."""


class ApplicationStore(Protocol):
    def get(self, application_id: str) -> StoredApplication | None: ...

    def batch(self) -> ContextManager[Any]:
        """One transaction for the writes made inside (the projections' scope per poll)."""

    def add(self, application: StoredApplication, message: OutboxMessage) -> None:
        """Store the application and its outbox row in ONE transaction.
        Raises DuplicateKey if the id is already stored (nothing written)."""

    def list_by_firm(
        self, credit_code: str, limit: int, after: tuple[str, str] | None = None
    ) -> list[StoredApplication]:
        """Newest first (received_at, then application_id, descending);
        ``after`` = (received_at, application_id) of the last row already seen."""

    def search(self, filters: Filters, limit: int, after: tuple[str, str] | None = None) -> list[StoredApplication]:
        """The applications matching every filter set (search.Filters: credit
        code, firm name substring case-folded, clause, state), across firms
        when no credit code is set; ordered and paged as list_by_firm."""

    def apply_decision(
        self,
        application_id: str,
        decision_id: str,
        decision: bytes,
        at: str,
        replaces: Callable[[bytes | None, bytes], bool],
        state_of: Callable[[bytes | None, bytes | None], str],
    ) -> str:
        """'applied', 'replayed' (this decision id is the one shown),
        'superseded' (``replaces(current, decision)`` is false: the decision
        shown stays) or 'unknown'; the new state is ``state_of(decision, grant)``."""

    def apply_payout_event(
        self,
        event_id: str,
        application_id: str,
        fold: Callable[[bytes | None], bytes],
        at: str,
        state_of: Callable[[bytes | None, bytes | None], str],
    ) -> str:
        """Fold a payout event into the grant once per event id: 'applied',
        'replayed' or 'unknown'; the new state is ``state_of(decision, grant)``."""


class ProposalStore(Protocol):
    """免申即享 proposals (intake_proposals), each write with its outbox row in one transaction."""

    def add_proposal(self, proposal: StoredProposal, message: OutboxMessage) -> bool:
        """False (nothing written) when the id is already stored."""

    def get_proposal(self, proposal_id: str) -> StoredProposal | None: ...

    def list_proposals(
        self, credit_code: str, limit: int, after: tuple[str, str] | None = None
    ) -> list[StoredProposal]: ...

    def search_proposals(
        self, filters: Filters, limit: int, after: tuple[str, str] | None = None
    ) -> list[StoredProposal]:
        """Newest first (created_at, then proposal_id, descending), of one firm or all, in one state or any."""

    def decide_proposal(
        self,
        proposal_id: str,
        from_state: str,
        to_state: str,
        proposal: bytes,
        at: str,
        message: OutboxMessage,
        payee: str | None = None,
    ) -> bool:
        """False (nothing written) when it is no longer in ``from_state``."""

    def proposals_past(self, day: str, limit: int = 500) -> list[StoredProposal]: ...


class Clock(Protocol):
    def __call__(self) -> dt.datetime: ...
