"""Values and errors of the notify core. No I/O here."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

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


@dataclasses.dataclass(frozen=True)
class Event:
    """One consumed event, parsed: what the templates need, no contact details."""

    event_id: str  # "decision:<decision id>" or the PayoutEvent's event_id
    kind: str
    credit_code: str
    data: dict[str, Any]  # the event's fields (protobuf JSON mapping, names preserved)
    trace_id: str | None = None


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


@dataclasses.dataclass(frozen=True)
class TrancheInfo:
    """Remembered from TrancheScheduled: TranchePaid / TrancheCancelled do not carry the clause."""

    tranche_id: str
    application_id: str
    clause: str
    number: int
    budget_year: int


# ------------------------------------------------------------------ errors


class InvalidEvent(ValueError):
    """The message is not a valid event of its topic (goes to the dead-letter topic)."""


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
