"""Values, errors and the small pure rules of the payout service: tranche due
dates, derived event ids, tranche statuses, the clock.

Nothing here touches SQL, Kafka or gRPC.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Protocol

from subsidy.core.dates import add_years

SCHEDULED, DUE, PAID, CANCELLED = "SCHEDULED", "DUE", "PAID", "CANCELLED"
STATUSES = (SCHEDULED, DUE, PAID, CANCELLED)
# Statuses from which a tranche may still be cancelled or paid.
OPEN = (SCHEDULED, DUE)

SOURCE = "/songjiang/subsidy/payout"
TYPE_PREFIX = "cn.gov.songjiang.subsidy.payout."
EVENT_TYPES = {
    "grant_recorded": TYPE_PREFIX + "grant_recorded.v1",
    "tranche_scheduled": TYPE_PREFIX + "tranche_scheduled.v1",
    "tranche_due": TYPE_PREFIX + "tranche_due.v1",
    "tranche_cancelled": TYPE_PREFIX + "tranche_cancelled.v1",
    "tranche_paid": TYPE_PREFIX + "tranche_paid.v1",
}
_EVENT_ID_PREFIX = {
    "tranche_scheduled": "scheduled",
    "tranche_due": "due",
    "tranche_cancelled": "cancelled",
    "tranche_paid": "paid",
}

# Songjiang's calendar day: China Standard Time, no daylight saving.
CHINA = dt.timezone(dt.timedelta(hours=8), "CST")


# -- errors (mapped to gRPC status codes by server.py) -------------------------


class PayoutError(Exception):
    pass


class NotFound(PayoutError):
    pass


class FailedPrecondition(PayoutError):
    pass


class InvalidArgument(PayoutError):
    pass


class Rejected(PayoutError):
    """A consumed message that must not be applied: it goes to the dead-letter topic."""


# -- the clock -------------------------------------------------------------------


class Clock(Protocol):
    def today(self) -> dt.date: ...


class SystemClock:
    """Today in Songjiang (UTC+8)."""

    def today(self) -> dt.date:
        return dt.datetime.now(CHINA).date()


@dataclass
class FixedClock:
    """A settable date: SUBSIDY_PAYOUT_TODAY, demos and tests."""

    day: dt.date

    def today(self) -> dt.date:
        return self.day

    def set(self, day: dt.date) -> None:
        self.day = day


def clock_from_setting(today: str) -> Clock:
    if not today:
        return SystemClock()
    try:
        return FixedClock(dt.date.fromisoformat(today))
    except ValueError:
        raise ValueError(f"SUBSIDY_PAYOUT_TODAY: not a date YYYY-MM-DD: {today!r}") from None


# -- pure rules --------------------------------------------------------------------


def due_on(submitted_on: dt.date, budget_year: int) -> dt.date:
    """Tranche k is due on ``submitted_on`` with its year replaced by decision
    year + k (``budget_year``); 29 February becomes 1 March in a common year
    (the core's one rule for it)."""
    return add_years(submitted_on, budget_year - submitted_on.year)


def grant_event_id(application_id: str) -> str:
    return f"grant:{application_id}"


def duplicate_grant_event_id(decision_id: str) -> str:
    """A later decision (another policy version) for an application already
    applied: its GrantRecorded (0, DUPLICATE_APPLICATION) must not collide
    with the original grant's event id."""
    return f"grant:{decision_id}"


def tranche_event_id(kind: str, tranche_id: str) -> str:
    return f"{_EVENT_ID_PREFIX[kind]}:{tranche_id}"


def parse_iso_date(text: str, what: str) -> dt.date:
    try:
        if len(text) != 10:
            raise ValueError
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(f"{what}: not a date YYYY-MM-DD: {text!r}") from None


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- rows as read back ---------------------------------------------------------------


@dataclass(frozen=True)
class TrancheRow:
    tranche_id: str
    application_id: str
    credit_code: str
    clause: str
    number: int
    amount_fen: int
    due_on: str
    budget_year: int
    status: str
    paid_on: str = ""
    payment_id: str = ""


@dataclass(frozen=True)
class GrantRow:
    application_id: str
    decision_id: str
    credit_code: str
    clause: str
    outcome: str
    policy_version: str
    max_award_fen: int
    granted_fen: int
    decision_year: int
    reasons: tuple  # of subsidy.core.domain.Reason
    trace_id: str
    tranches: tuple[TrancheRow, ...] = ()


@dataclass(frozen=True)
class UsageRow:
    scope: str
    limit: str
    used_fen: int
    cap_fen: int

    @property
    def remaining_fen(self) -> int:
        if self.limit == "once":
            return 0 if self.used_fen > 0 else self.cap_fen
        return max(0, self.cap_fen - self.used_fen)


@dataclass(frozen=True)
class Ledger:
    credit_code: str
    grants: tuple[GrantRow, ...]
    scopes: tuple[UsageRow, ...]


# -- what the use cases are asked ---------------------------------------------------------


@dataclass(frozen=True)
class Payment:
    """A payment confirmation from finance (subsidy.v1.PaymentConfirmed), checked."""

    payment_id: str
    tranche_id: str
    credit_code: str
    amount_fen: int
    paid_on: str


@dataclass(frozen=True)
class TrancheQuery:
    """One page of ListTranches: the filters, the page size, and where the
    previous page ended ((due_on, tranche_id) of its last tranche)."""

    due_from: str
    due_to: str
    statuses: tuple[str, ...]
    page_size: int
    after: tuple[str, str] | None

    def fingerprint(self) -> str:
        """The filters in a page token: a token is refused for other filters."""
        text = json.dumps([self.due_from, self.due_to, sorted(self.statuses)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]
