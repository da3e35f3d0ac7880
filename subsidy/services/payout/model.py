"""Values, errors and the small pure rules of the payout service: tranche due
dates, derived event ids, tranche statuses and grant states.

Nothing here touches SQL, Kafka or gRPC. The clock is the platform's one
(subsidy/platform/clock.py), injected by bootstrap.py.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
from dataclasses import dataclass

from subsidy.core.dates import add_years

SCHEDULED, DUE, PAID, CANCELLED, HELD = "SCHEDULED", "DUE", "PAID", "CANCELLED", "HELD"
STATUSES = (SCHEDULED, DUE, PAID, CANCELLED, HELD)
# Statuses from which a tranche may still be cancelled or paid. HELD: the
# release gate failed (ADR 0017); a payment of it is still recorded (the
# money moved), a cancellation ends it.
OPEN = (SCHEDULED, DUE, HELD)

#: Recovery statuses (追回): OPEN until finance confirmed it all recovered.
RECOVERY_OPEN, RECOVERY_RECOVERED = "OPEN", "RECOVERED"


class GrantState(enum.StrEnum):
    """Where a grant stands between its decision and its money (ADR 0013;
    ../shared/policy/workflow.md "Public notice"). RESERVED → PAYABLE, or
    RESERVED → WITHDRAWN; nothing else. The value is what the tables keep."""

    RESERVED = "RESERVED"  # from its decision: counts against the caps, no tranches yet
    PAYABLE = "PAYABLE"  # its notice closed clean: tranches scheduled
    WITHDRAWN = "WITHDRAWN"  # an objection upheld: never paid, reservation released


SOURCE = "/songjiang/subsidy/payout"
TYPE_PREFIX = "cn.gov.songjiang.subsidy.payout."
EVENT_TYPES = {
    "grant_recorded": TYPE_PREFIX + "grant_recorded.v1",
    "tranche_scheduled": TYPE_PREFIX + "tranche_scheduled.v1",
    "tranche_due": TYPE_PREFIX + "tranche_due.v1",
    "tranche_cancelled": TYPE_PREFIX + "tranche_cancelled.v1",
    "tranche_paid": TYPE_PREFIX + "tranche_paid.v1",
    "grant_payable": TYPE_PREFIX + "grant_payable.v1",
    "grant_withdrawn": TYPE_PREFIX + "grant_withdrawn.v1",
    "tranche_held": TYPE_PREFIX + "tranche_held.v1",
    "tranche_released": TYPE_PREFIX + "tranche_released.v1",
    "recovery_opened": TYPE_PREFIX + "recovery_opened.v1",
    "recovery_recorded": TYPE_PREFIX + "recovery_recorded.v1",
    "grant_adjusted": TYPE_PREFIX + "grant_adjusted.v1",
}
#: The ce_type finance gives a RecoveryConfirmed on subsidy.payments.v1; a
#: record without it (or with any other type) is a PaymentConfirmed (ADR 0017).
RECOVERY_CONFIRMED_TYPE = "cn.gov.songjiang.finance.recovery_confirmed.v1"
_EVENT_ID_PREFIX = {
    "tranche_scheduled": "scheduled",
    "tranche_due": "due",
    "tranche_cancelled": "cancelled",
    "tranche_paid": "paid",
}


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


# -- pure rules --------------------------------------------------------------------


def due_on(submitted_on: dt.date, budget_year: int) -> dt.date:
    """Tranche k is due on ``submitted_on`` with its year replaced by decision
    year + k (``budget_year``); 29 February becomes 1 March in a common year
    (the core's one rule for it)."""
    return add_years(submitted_on, budget_year - submitted_on.year)


def payable_due_on(submitted_on: dt.date, budget_year: int, payable_on: dt.date) -> dt.date:
    """A tranche of a grant that became payable on ``payable_on`` is due on the
    later of that day and its day in its budget year (``due_on``): the notice
    never moves a tranche earlier, only later (workflow.md "Public notice")."""
    return max(payable_on, due_on(submitted_on, budget_year))


def grant_event_id(application_id: str) -> str:
    return f"grant:{application_id}"


def duplicate_grant_event_id(decision_id: str) -> str:
    """A later decision (another policy version) for an application already
    applied: its GrantRecorded (0, DUPLICATE_APPLICATION) must not collide
    with the original grant's event id."""
    return f"grant:{decision_id}"


def payable_event_id(decision_id: str) -> str:
    """GrantPayable's id: the same as the LinePayable that caused it."""
    return f"payable:{decision_id}"


def adjusted_event_id(decision_id: str) -> str:
    """GrantAdjusted's id: the superseding decision's, so a replayed decision
    cannot adjust the grant twice (issue 14)."""
    return f"adjusted:{decision_id}"


def withdrawn_event_id(decision_id: str) -> str:
    """GrantWithdrawn's id: the same as the LineWithdrawn that caused it."""
    return f"withdrawn:{decision_id}"


def tranche_event_id(kind: str, tranche_id: str) -> str:
    return f"{_EVENT_ID_PREFIX[kind]}:{tranche_id}"


def held_event_id(tranche_id: str, hold_number: int) -> str:
    """TrancheHeld's id: a tranche may be held more than once (held, released,
    held again while DUE), each hold its own number."""
    return f"held:{tranche_id}#{hold_number}"


def released_event_id(tranche_id: str, hold_number: int) -> str:
    return f"released:{tranche_id}#{hold_number}"


def due_again_event_id(tranche_id: str, hold_number: int) -> str:
    """The TrancheDue after a release: ``due:<tranche id>`` may already be
    taken by the tranche's first TrancheDue (a DUE tranche held later)."""
    return f"due:{tranche_id}#released-{hold_number}"


def recovery_event_id(recovery_id: str) -> str:
    return f"recovery:{recovery_id}"


def recovered_event_id(confirmation_id: str) -> str:
    return f"recovered:{confirmation_id}"


def recovery_id(application_id: str, tranche_ids: tuple[str, ...], amount_fen: int, reason: str, void: bool) -> str:
    """Derived from what the reviewer asked: the same request again (a retry)
    is the same recovery, never a second claim on the same money."""
    text = json.dumps([application_id, sorted(tranche_ids), amount_fen, reason, void], ensure_ascii=False)
    return f"{application_id}/recovery-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


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
    # The latest hold (release gate, ADR 0017), kept after a release or cancellation.
    held_on: str = ""
    hold_until: str = ""
    hold_reason: str = ""
    hold_count: int = 0
    # The policy version of its grant's decision (the one its amount was
    # decided under). Not a column of payout_tranches: read from the grant's
    # row (adapters/store.py), which no later decision changes once the
    # grant has tranches (only a RESERVED grant is superseded).
    policy_version: str = ""


@dataclass(frozen=True)
class RecoveryRow:
    """A recovery (追回) of money paid on tranches of one grant."""

    recovery_id: str
    application_id: str
    credit_code: str
    clause: str
    # ((tranche_id, fen), ...): what it claims on each tranche.
    allocations: tuple[tuple[str, int], ...]
    amount_fen: int
    recovered_fen: int
    reason: str
    void_award: bool
    opened_on: str
    opened_by: str
    status: str

    @property
    def tranche_ids(self) -> tuple[str, ...]:
        return tuple(t for t, _ in self.allocations)

    @property
    def outstanding_fen(self) -> int:
        return self.amount_fen - self.recovered_fen


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
    state: GrantState = GrantState.RESERVED
    # What the grant holds per scope: ((scope, granted_fen), ...); empty on a
    # grant recorded before the notice gate (never RESERVED, never released).
    uses: tuple[tuple[str, int], ...] = ()
    # The decision's schedule (percent per tranche) and submission day, kept
    # for the tranches scheduled once the grant is PAYABLE.
    tranche_shares_percent: tuple[int, ...] = ()
    submitted_on: str = ""
    notice_id: str = ""
    payable_on: str = ""
    withdrawn_on: str = ""
    withdraw_reason: str = ""
    # Recovery (ADR 0017): the award declared void, and the cap room freed since.
    void: bool = False
    cap_released_fen: int = 0
    recoveries: tuple[RecoveryRow, ...] = ()

    @property
    def paid_fen(self) -> int:
        return sum(t.amount_fen for t in self.tranches if t.status == PAID)

    @property
    def recovered_fen(self) -> int:
        return sum(r.recovered_fen for r in self.recoveries)

    @property
    def net_fen(self) -> int:
        return self.paid_fen - self.recovered_fen


@dataclass(frozen=True)
class InboxRow:
    """A decision the ledger has seen, and what applying it did (applied,
    duplicate, held_for_review)."""

    decision_id: str
    application_id: str
    credit_code: str
    result: str


@dataclass(frozen=True)
class UsageRow:
    scope: str
    limit: str
    used_fen: int
    cap_fen: int
    # Of used_fen, what RESERVED grants hold (in notice); the rest is PAYABLE.
    reserved_fen: int = 0

    @property
    def payable_fen(self) -> int:
        return self.used_fen - self.reserved_fen

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

    @property
    def paid_fen(self) -> int:
        return sum(g.paid_fen for g in self.grants)

    @property
    def recovered_fen(self) -> int:
        return sum(g.recovered_fen for g in self.grants)

    @property
    def net_fen(self) -> int:
        return self.paid_fen - self.recovered_fen


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
class NoticeLine:
    """LinePayable or LineWithdrawn of subsidy.notices.v1, checked: what the
    ledger does with a public-notice line. ``kind`` is payable or withdrawn;
    ``day`` the payable_on or withdrawn_on day."""

    kind: str
    event_id: str
    decision_id: str
    application_id: str
    credit_code: str
    notice_id: str
    day: dt.date
    reason: str = ""


PAYABLE_LINE, WITHDRAWN_LINE = "payable", "withdrawn"


@dataclass(frozen=True)
class RecoveryRequest:
    """OpenRecovery, checked for form (handlers.check_recovery_request)."""

    application_id: str
    tranche_ids: tuple[str, ...]
    amount_fen: int
    reason: str
    void_award: bool
    opened_by: str


@dataclass(frozen=True)
class RecoveryConfirmation:
    """A RecoveryConfirmed from finance (subsidy.payments.v1), checked."""

    confirmation_id: str
    recovery_id: str
    credit_code: str
    amount_fen: int
    recovered_on: str


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
