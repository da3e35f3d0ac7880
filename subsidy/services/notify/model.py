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
# Review and the public notice (issue 12): a decision that requires review,
# a reviewed decision, the firm's lines on a published notice, the outcome of
# an objection, the grant payable once its notice closed clean.
UNDER_REVIEW = "under_review"
REVIEW_DECIDED = "review_decided"
NOTICE_LISTED = "notice_listed"
OBJECTION_RESOLVED = "objection_resolved"
GRANT_PAYABLE = "grant_payable"
# A reviewer needs a document from the firm (ReviewEvent on subsidy.reviews.v1).
INFORMATION_REQUESTED = "information_requested"
# Release gates and recovery (issue 13, ADR 0017): a tranche held because the
# firm no longer meets the scope, released when its facts are restored within
# the grace (cancelled after it: TRANCHE_CANCELLED), a recovery (追回) opened.
TRANCHE_HELD = "tranche_held"
TRANCHE_RELEASED = "tranche_released"
RECOVERY_OPENED = "recovery_opened"
# 免申即享 (issue 13, item 4; ProposalEvent on subsidy.proposals.v1): a
# proposal made to the firm, and one that expired unanswered.
PROPOSAL_CREATED = "proposal_created"
PROPOSAL_EXPIRED = "proposal_expired"
# Policy versions (issue 14): a RESERVED grant re-decided under an adopted version.
GRANT_ADJUSTED = "grant_adjusted"
KINDS = (
    DECISION,
    GRANT_RECORDED,
    TRANCHE_SCHEDULED,
    TRANCHE_DUE,
    TRANCHE_PAID,
    TRANCHE_CANCELLED,
    UNDER_REVIEW,
    REVIEW_DECIDED,
    NOTICE_LISTED,
    OBJECTION_RESOLVED,
    GRANT_PAYABLE,
    INFORMATION_REQUESTED,
    TRANCHE_HELD,
    TRANCHE_RELEASED,
    RECOVERY_OPENED,
    PROPOSAL_CREATED,
    PROPOSAL_EXPIRED,
    GRANT_ADJUSTED,
)


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
    # RESERVED since the notice gate (tranches after the notice); "" on an
    # event published before grants had states (scheduled at once).
    state: str = ""


@dataclasses.dataclass(frozen=True)
class DecisionUnderReview:
    """A decision with review_required: people must look at it first."""

    KIND: ClassVar[str] = UNDER_REVIEW
    decision_id: str
    application_id: str
    clause: str
    outcome: str
    review_reasons: tuple[str, ...]  # NEEDS_REVIEW_OUTCOME, ABOVE_FOUR_EYES_THRESHOLD, REGISTRY_FACTS_CHANGED
    submitted_on: dt.date
    policy_version: str


@dataclasses.dataclass(frozen=True)
class ReviewDecided:
    """A reviewed decision (its ReviewRecord): the people's result. The
    reviewers (staff token subjects) are not told to the firm."""

    KIND: ClassVar[str] = REVIEW_DECIDED
    decision_id: str
    application_id: str
    clause: str
    result: str  # APPROVED or REJECTED
    amount_fen: int  # the approved amount (max_award_fen); 0 when rejected
    basis: str
    reasons: tuple[Reason, ...]
    decided_on: dt.date | None
    policy_version: str


@dataclasses.dataclass(frozen=True)
class ListedLine:
    """One of the firm's own lines on a published notice."""

    application_id: str
    clause: str
    amount_fen: int


@dataclasses.dataclass(frozen=True)
class NoticeListed:
    """The firm's lines on a published notice list (NoticePublished), and no
    other firm's."""

    KIND: ClassVar[str] = NOTICE_LISTED
    notice_id: str
    published_on: dt.date | None
    period_first_day: dt.date | None
    period_last_day: dt.date | None
    lines: tuple[ListedLine, ...]


@dataclasses.dataclass(frozen=True)
class ObjectionResolved:
    KIND: ClassVar[str] = OBJECTION_RESOLVED
    objection_id: str
    notice_id: str
    decision_id: str
    resolution: str  # UPHELD (the award is withdrawn) or DISMISSED
    reasons: str
    resolved_on: dt.date | None


@dataclasses.dataclass(frozen=True)
class InformationRequested:
    """A reviewer asks the firm for what is missing; the item waits for its answer."""

    KIND: ClassVar[str] = INFORMATION_REQUESTED
    application_id: str
    item_id: str
    request_number: int
    missing: str


@dataclasses.dataclass(frozen=True)
class GrantPayable:
    """The ledger made the grant payable after its notice closed clean."""

    KIND: ClassVar[str] = GRANT_PAYABLE
    application_id: str
    clause: str
    notice_id: str
    payable_on: dt.date | None
    granted_fen: int
    tranche_count: int


@dataclasses.dataclass(frozen=True)
class GrantAdjusted:
    """A new policy version was adopted and the grant, not yet payable, was
    re-decided under it: the amount it holds now (issue 14)."""

    KIND: ClassVar[str] = GRANT_ADJUSTED
    application_id: str
    clause: str
    previous_granted_fen: int
    granted_fen: int
    released_fen: int
    topped_up_fen: int
    max_award_fen: int
    outcome: str
    reasons: tuple[Reason, ...]
    previous_policy_version: str
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


@dataclasses.dataclass(frozen=True)
class TrancheHeld:
    """The release gate held the tranche: why, and until when the firm may
    put it right (hold_until, the grace's last day)."""

    KIND: ClassVar[str] = TRANCHE_HELD
    tranche_id: str
    application_id: str
    clause: str
    amount_fen: int
    due_on: dt.date | None
    held_on: dt.date | None
    hold_until: dt.date | None
    reason: str
    facts_as_of: dt.date | None = None  # None: the platform no longer knows the firm


@dataclasses.dataclass(frozen=True)
class TrancheReleased:
    KIND: ClassVar[str] = TRANCHE_RELEASED
    tranche_id: str
    application_id: str
    clause: str
    amount_fen: int
    held_on: dt.date | None
    released_on: dt.date | None


@dataclasses.dataclass(frozen=True)
class RecoveryOpened:
    """A reviewer opened a recovery (追回) of money paid to the firm."""

    KIND: ClassVar[str] = RECOVERY_OPENED
    recovery_id: str
    application_id: str
    clause: str
    amount_fen: int
    reason: str
    void_award: bool
    opened_on: dt.date | None
    tranche_ids: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class ProposalCreated:
    """The system proposes an award the firm did not apply for (免申即享)."""

    KIND: ClassVar[str] = PROPOSAL_CREATED
    proposal_id: str
    clause: str
    fact_reference: str
    expected_award_fen: int
    proposed_on: dt.date | None
    expires_on: dt.date | None
    policy_version: str


@dataclasses.dataclass(frozen=True)
class ProposalExpired:
    KIND: ClassVar[str] = PROPOSAL_EXPIRED
    proposal_id: str
    expired_on: dt.date | None


Fact = (
    DecisionMade
    | GrantRecorded
    | TrancheScheduled
    | TrancheDue
    | TranchePaid
    | TrancheCancelled
    | DecisionUnderReview
    | ReviewDecided
    | NoticeListed
    | ObjectionResolved
    | GrantPayable
    | InformationRequested
    | TrancheHeld
    | TrancheReleased
    | RecoveryOpened
    | ProposalCreated
    | ProposalExpired
    | GrantAdjusted
)


@dataclasses.dataclass(frozen=True)
class Event:
    """One consumed event, decoded: what the templates need, no contact details."""

    # "decision:<decision id>", the PayoutEvent's or NoticeEvent's event_id;
    # a notice record holding several firms' lines, once per firm on it:
    # "<event id>/<credit code>".
    event_id: str
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
