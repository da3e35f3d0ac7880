"""The ports the intake core talks to. Adapters: store.py (SQLite or
PostgreSQL), subsidy.platform.registry (file or HTTP), directory.py (YAML files); the unit
tests use in-memory fakes."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from subsidy.platform.outbox import OutboxMessage
from subsidy.services.intake.model import DirectoryEntry, StoredApplication


class Directory(Protocol):
    """The annual 名录 of platforms and solution providers (clause 5)."""

    def years(self) -> list[int]: ...

    def entries(self, year: int) -> list[DirectoryEntry]:
        """The year's entries; empty when the year has no 名录."""


class ApplicationStore(Protocol):
    def get(self, application_id: str) -> StoredApplication | None: ...

    def add(self, application: StoredApplication, message: OutboxMessage) -> None:
        """Store the application and its outbox row in ONE transaction.
        Raises DuplicateKey if the id is already stored (nothing written)."""

    def list_by_firm(
        self, credit_code: str, limit: int, after: tuple[str, str] | None = None
    ) -> list[StoredApplication]:
        """Newest first (received_at, then application_id, descending);
        ``after`` = (received_at, application_id) of the last row already seen."""

    def apply_decision(self, application_id: str, decision_id: str, decision: bytes, at: str) -> str:
        """'applied', 'replayed' (this decision id is already applied) or 'unknown'."""


class Clock(Protocol):
    def __call__(self) -> dt.datetime: ...
