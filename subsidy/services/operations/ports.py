"""What operations' use cases need from outside (handlers.py), as Protocols:
the store (adapters/store.py: one transaction per unit of work, the outbox
inside it)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from subsidy.platform.outbox import OutboxMessage
from subsidy.services.operations.model import AuditEntry, StoredLetter


class LettersTx(Protocol):
    """The tables inside one transaction."""

    def add(self, letter: StoredLetter) -> bool:
        """Store the letter unless a row holds its position (``letter_id``) or
        the letter itself (``dead_letter_id``, when set); True when it was new."""

    def holds_position(self, letter_id: str) -> bool:
        """A row was stored for this DLQ position."""

    def get(self, letter_id: str, *, for_update: bool = False) -> StoredLetter | None: ...

    def page(self, topic: str, state: str, before_seq: int | None, limit: int) -> list[StoredLetter]:
        """The topic's letters (of the state, when given), newest first, below ``before_seq``."""

    def counts(self) -> dict[tuple[str, str], int]:
        """(dlq topic, state) -> letters."""

    def settle(self, letter_id: str, state: str, subject: str, at: str, reason: str) -> bool:
        """PENDING -> state; False when the letter was no longer PENDING."""

    def audit(self, entry: AuditEntry) -> None: ...

    def trail(self, letter_id: str) -> list[AuditEntry]: ...

    def enqueue(self, message: OutboxMessage, at: str) -> None: ...


class Store(Protocol):
    def unit(self) -> AbstractContextManager[LettersTx]:
        """One transaction: committed when the block ends, rolled back on an exception."""
