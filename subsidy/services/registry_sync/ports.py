"""What registry-sync's use cases need from outside (handlers.py), as Protocols:
the data platform's feed (adapters/feed.py over HTTP) and the store
(adapters/store.py: one transaction per unit of work)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from subsidy.platform.outbox import OutboxMessage


class FeedUnavailable(Exception):
    """The platform could not be asked (down, slow, 5xx, refused): nothing was read; try again later."""


class FeedBroken(FeedUnavailable):
    """The platform answered with something that is not a page (not JSON, no cursor): the whole
    answer is unusable, so nothing of it is taken; retried like an outage, and alerted on."""


class CursorGone(Exception):
    """410 Gone: the platform no longer knows our cursor; a full resync is needed."""


@dataclasses.dataclass(frozen=True)
class RawChange:
    """One entry of a page, as decoded JSON and as bytes (for a dead letter)."""

    obj: Any
    raw: bytes


@dataclasses.dataclass(frozen=True)
class Page:
    changes: Sequence[RawChange]
    next_cursor: str
    #: The platform's latest sequence: changes behind = high_water - our last sequence.
    high_water: int


@dataclasses.dataclass(frozen=True)
class Snapshot:
    firms: Sequence[RawChange]
    #: Where the feed goes on from after the snapshot.
    cursor: str
    #: The sequence the snapshot is consistent with.
    sequence: int


class Feed(Protocol):
    def changes(self, cursor: str, limit: int) -> Page:
        """Raises CursorGone, FeedUnavailable."""

    def snapshot(self) -> Snapshot:
        """Raises FeedUnavailable."""


@dataclasses.dataclass(frozen=True)
class SyncState:
    cursor: str
    last_sequence: int
    high_water: int
    last_success_at: str | None
    resyncs: int


@dataclasses.dataclass(frozen=True)
class StoredFirm:
    facts: dict[str, Any]
    canonical: str
    feed_sequence: int
    revision: int


@dataclasses.dataclass(frozen=True)
class HeldChange:
    sequence: int
    credit_code: str
    effective_on: str
    change: str  # Change.to_json()


class SyncTx(Protocol):
    """The tables inside one transaction."""

    def state(self) -> SyncState: ...

    def set_state(self, state: SyncState) -> None: ...

    def firm(self, credit_code: str) -> StoredFirm | None: ...

    def put_firm(self, credit_code: str, canonical: str, feed_sequence: int, revision: int, at: str) -> None: ...

    def hold(self, held: HeldChange, at: str) -> None: ...

    def held_due(self, day: str) -> list[HeldChange]: ...

    def drop_held(self, sequence: int) -> None: ...

    def enqueue(self, message: OutboxMessage, at: str) -> None: ...


class Store(Protocol):
    def unit(self) -> AbstractContextManager[SyncTx]:
        """One transaction: committed when the block ends, rolled back on an exception."""

    def held_count(self) -> int: ...
