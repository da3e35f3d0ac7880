"""The review service's own values and errors; no I/O. The rules themselves
are subsidy.core.workflow (review, notice, calendar, settings)."""

from __future__ import annotations

import dataclasses
import datetime as dt

from subsidy.core.workflow.notice import NoticePeriod
from subsidy.core.workflow.review import FailedPrecondition, InvalidArgument, PermissionDenied, WorkflowError
from subsidy.platform.clock import Clock

__all__ = [
    "SOURCE",
    "Actor",
    "AuditEntry",
    "Clock",
    "FailedPrecondition",
    "GrantRow",
    "InvalidArgument",
    "LineRow",
    "NoticePoolEmpty",
    "NoticeRow",
    "NotFound",
    "PermissionDenied",
    "Rejected",
    "WorkflowError",
]

SOURCE = "/songjiang/subsidy/review"

#: The google.rpc.PreconditionFailure violation types a FAILED_PRECONDITION of
#: PublishNotice carries, so a client tells "nothing to publish yet" (try again
#: once an award is granted) from "cannot publish" (docs/review.md).
NOTICE_POOL_EMPTY = "NOTICE_POOL_EMPTY"
CALENDAR_NOT_COVERED = "CALENDAR_NOT_COVERED"


class NoticePoolEmpty(FailedPrecondition):
    """PublishNotice while no approved award awaits a notice: nothing is wrong,
    there is nothing to publish yet."""


class NotFound(WorkflowError):
    pass


class Rejected(ValueError):
    """A record that must not be applied (undecodable): it goes to the dead-letter topic."""


@dataclasses.dataclass(frozen=True)
class Actor:
    """Who acts: the token's subject and role (and the firm of an ENTERPRISE caller)."""

    subject: str
    role: str
    credit_code: str = ""


@dataclasses.dataclass(frozen=True)
class AuditEntry:
    sequence: int
    at: str
    subject: str
    role: str
    action: str
    target: str
    before: str
    after: str


@dataclasses.dataclass(frozen=True)
class GrantRow:
    """A grant the ledger recorded (subsidy.payouts.v1 GrantRecorded)."""

    decision_id: str
    application_id: str
    credit_code: str
    clause: str
    granted_fen: int
    decision_year: int
    notice_id: str = ""  # the notice it was published on; "" while in the pool
    # The grant's state as payout recorded it: only a RESERVED grant waits for a notice (grants
    # recorded before the notice gate came as PAYABLE or without a state, and are never listed).
    state: str = "RESERVED"


@dataclasses.dataclass(frozen=True)
class NoticeRow:
    notice_id: str
    published_on: dt.date
    first_day: dt.date
    last_day: dt.date
    published_by: str
    title: str

    @property
    def period(self) -> NoticePeriod:
        return NoticePeriod(self.published_on, self.first_day, self.last_day)


@dataclasses.dataclass(frozen=True)
class LineRow:
    line_id: str
    notice_id: str
    decision_id: str
    application_id: str
    credit_code: str
    firm_name: str
    clause: str
    amount_fen: int
    status: str
    payable_on: str = ""
