"""Values and errors of the notify core. No I/O here.

An ``Event`` holds what notify decoded from the wire: the fact it reports as
one of the frozen values below (money in integer fen, dates as dates), which
is all the templates read, and the event's fields in the protobuf JSON
mapping, which the webhook passes on as its ``data`` and nothing reads.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from typing import Any, ClassVar

from subsidy.core.domain import Reason

# What an event is about (also the webhook's "type" and the log's "kind").
DECISION = "decision"
GRANT_RECORDED = "grant_recorded"
TRANCHE_SCHEDULED = "tranche_scheduled"
TRANCHE_DUE = "tranche_due"
TRANCHE_PAID = "tranche_paid"
TRANCHE_CANCELLED = "tranche_cancelled"
KINDS = (DECISION, GRANT_RECORDED, TRANCHE_SCHEDULED, TRANCHE_DUE, TRANCHE_PAID, TRANCHE_CANCELLED)


def notification_id(event_id: str, channel: str) -> str:
    """Derived, never random: a replayed event lands on the same id per channel."""
    return hashlib.sha256(f"{event_id}\x00{channel}".encode()).hexdigest()


# ------------------------------------------------------------------ the facts


@dataclasses.dataclass(frozen=True)
class DecisionMade:
    """subsidy.v1.Decision: the outcome of an application's evaluation."""

    KIND: ClassVar[str] = DECISION
    decision_id: str
    application_id: str
    clause: str
    outcome: str  # ELIGIBLE, INELIGIBLE, NEEDS_REVIEW or REFERRED
    max_award_fen: int
    decision_year: int
    submitted_on: dt.date
    reasons: tuple[Reason, ...]
    policy_version: str


@dataclasses.dataclass(frozen=True)
class GrantRecorded:
    """The ledger turned a decision into a grant (possibly 0)."""

    KIND: ClassVar[str] = GRANT_RECORDED
    application_id: str
    clause: str
    max_award_fen: int
    granted_fen: int
    tranche_count: int
    decision_year: int
    reasons: tuple[Reason, ...]  # the ledger's: CAP_PARTIAL, CAP_EXHAUSTED, …
    policy_version: str


@dataclasses.dataclass(frozen=True)
class TrancheScheduled:
    KIND: ClassVar[str] = TRANCHE_SCHEDULED
    tranche_id: str
    application_id: str
    clause: str
    number: int  # 0-based
    amount_fen: int
    due_on: dt.date | None
    budget_year: int


@dataclasses.dataclass(frozen=True)
class TrancheDue:
    KIND: ClassVar[str] = TRANCHE_DUE
    tranche_id: str
    application_id: str
    clause: str
    amount_fen: int
    due_on: dt.date | None
    budget_year: int


@dataclasses.dataclass(frozen=True)
class TranchePaid:
    KIND: ClassVar[str] = TRANCHE_PAID
    tranche_id: str
    application_id: str
    clause: str  # "" on an event published before TranchePaid carried it
    amount_fen: int
    paid_on: dt.date | None
    payment_id: str


@dataclasses.dataclass(frozen=True)
class TrancheCancelled:
    KIND: ClassVar[str] = TRANCHE_CANCELLED
    tranche_id: str
    application_id: str
    clause: str  # "" on an event published before TrancheCancelled carried it
    amount_fen: int
    cancelled_on: dt.date | None
    reason: str


Fact = DecisionMade | GrantRecorded | TrancheScheduled | TrancheDue | TranchePaid | TrancheCancelled


@dataclasses.dataclass(frozen=True)
class Event:
    """One consumed event, decoded: what the templates need, no contact details."""

    event_id: str  # "decision:<decision id>" or the PayoutEvent's event_id
    credit_code: str
    fact: Fact
    # The event's fields in the protobuf JSON mapping (names preserved), as
    # the webhook's "data": passed on to receivers, never read by notify.
    data: dict[str, Any]
    trace_id: str | None = None

    @property
    def kind(self) -> str:
        return self.fact.KIND


@dataclasses.dataclass(frozen=True)
class Rendered:
    subject: str
    body: str
    sms: str


@dataclasses.dataclass(frozen=True)
class Notification:
    """One message to one firm over one channel."""

    id: str
    event_id: str
    kind: str
    channel: str
    credit_code: str
    subject: str
    body: str
    sms: str
    data: dict[str, Any]

    def __repr__(self) -> str:
        return f"Notification(id={self.id!r}, channel={self.channel!r}, event_id={self.event_id!r})"


# ------------------------------------------------------------------ errors


class InvalidEvent(ValueError):
    """The message is not a valid event of its topic (goes to the dead-letter topic)."""


# What building a message from an event raises when the event is bad (an id
# with CR/LF in an e-mail header, a value the template cannot format): the
# same event always fails the same way, so it is permanent, never retried and
# never a reason to rewind the partition; the record is dead-lettered.
BAD_EVENT_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError, KeyError)


class DeliveryError(Exception):
    """One delivery attempt failed; worth retrying. The message never holds contact details."""


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help (e.g. the receiver answered 400): give up at once."""


class DeliveryFailed(Exception):
    """One or more channels gave up after their retries; ``failures`` is [(channel, error)]."""

    def __init__(self, failures: list[tuple[str, str]]):
        self.failures = failures
        super().__init__("; ".join(f"{channel}: {error}" for channel, error in failures))


class Interrupted(Exception):
    """The service is stopping while a delivery waits for its retry."""
