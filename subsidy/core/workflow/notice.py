"""The public notice (公示): the period, a line's state and its objections
(../shared/policy/workflow.md "Public notice (公示)").

The period starts on the publication day if that is a working day, else on
the next working day, and ends at the end of its Nth working day (N: the
``notice_period_working_days`` setting); a line becomes payable the day
after, if no objection on it is open.

A line is NOTICED while its period runs, HELD while an objection on it is
open, PAYABLE once released, WITHDRAWN when an objection was upheld.
Objections are lodged only during the period (from the publication day to
the period's last day), by a PORTAL or ENTERPRISE identity; a REVIEWER
resolves them: UPHELD (the award is withdrawn) or DISMISSED (the line goes
back to waiting, or is payable at once if the period has ended).

Pure: every rule takes the day it is asked about.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from subsidy.core.workflow import calendar
from subsidy.core.workflow.review import FailedPrecondition, InvalidArgument, PermissionDenied

NOTICED = "NOTICED"
HELD = "HELD"
PAYABLE = "PAYABLE"
WITHDRAWN = "WITHDRAWN"
LINE_STATES = (NOTICED, HELD, PAYABLE, WITHDRAWN)

OBJECTION_OPEN = "OPEN"
UPHELD = "UPHELD"
DISMISSED = "DISMISSED"
RESOLUTIONS = (UPHELD, DISMISSED)

OBJECTORS = ("PORTAL", "ENTERPRISE")
REASON_MAX = 2000


@dataclasses.dataclass(frozen=True, slots=True)
class NoticePeriod:
    published_on: dt.date
    first_day: dt.date
    last_day: dt.date

    @property
    def payable_on(self) -> dt.date:
        """The day after the period ends."""
        return self.last_day + dt.timedelta(days=1)

    def open_for_objections(self, today: dt.date) -> bool:
        return self.published_on <= today <= self.last_day

    def ended(self, today: dt.date) -> bool:
        return today > self.last_day


def notice_period(published_on: dt.date, working_days: int) -> NoticePeriod:
    """The period of a list published on ``published_on``."""
    if working_days < 1:
        raise InvalidArgument("notice_period_working_days", f"must be at least 1, got {working_days}")
    first = calendar.next_working_day(published_on)
    return NoticePeriod(published_on, first, calendar.nth_working_day(first, working_days))


@dataclasses.dataclass(frozen=True, slots=True)
class Objection:
    objection_id: str
    line_id: str
    reason: str
    lodged_by: str
    lodged_on: dt.date
    status: str = OBJECTION_OPEN
    resolution_reasons: str = ""
    resolved_by: str = ""
    resolved_on: dt.date | None = None


def objection_id_for(line_id: str, number: int) -> str:
    """Derived: the line and the objection's number on it (1-based)."""
    return f"{line_id}/objection-{number}"


def lodge(
    line_id: str,
    line_status: str,
    period: NoticePeriod,
    today: dt.date,
    role: str,
    subject: str,
    reason: str,
    number: int,
) -> Objection:
    """A new objection against a line (the ``number``th on it)."""
    if role not in OBJECTORS:
        raise PermissionDenied(f"objections are lodged by {' or '.join(OBJECTORS)}, not by {role or 'anonymous'}")
    if not period.open_for_objections(today):
        raise FailedPrecondition(
            f"the notice period of line {line_id} runs from {period.published_on.isoformat()} to "
            f"{period.last_day.isoformat()}; no objection can be lodged on {today.isoformat()}"
        )
    if line_status not in (NOTICED, HELD):
        raise FailedPrecondition(f"line {line_id} is {line_status}: no objection can be lodged")
    text = reason.strip()
    if not text:
        raise InvalidArgument("reason", "is required")
    if len(text) > REASON_MAX:
        raise InvalidArgument("reason", f"at most {REASON_MAX} characters, got {len(text)}")
    return Objection(objection_id_for(line_id, number), line_id, text, subject, today)


def resolve(objection: Objection, resolution: str, reasons: str, subject: str, today: dt.date) -> Objection:
    if objection.status != OBJECTION_OPEN:
        raise FailedPrecondition(f"objection {objection.objection_id} is already resolved ({objection.status})")
    if resolution not in RESOLUTIONS:
        raise InvalidArgument("resolution", f"one of {', '.join(RESOLUTIONS)}, got {resolution!r}")
    text = reasons.strip()
    if not text:
        raise InvalidArgument("reasons", "is required")
    if len(text) > REASON_MAX:
        raise InvalidArgument("reasons", f"at most {REASON_MAX} characters, got {len(text)}")
    if not subject.strip():
        raise PermissionDenied("resolving an objection needs an identified subject (the token's sub)")
    return dataclasses.replace(
        objection, status=resolution, resolution_reasons=text, resolved_by=subject.strip(), resolved_on=today
    )


def line_after(line_status: str, objections: list[Objection] | tuple[Objection, ...]) -> str:
    """A line's state from its objections (before the payable check):
    WITHDRAWN once one is upheld, HELD while one is open, else NOTICED (or
    PAYABLE if it already was)."""
    if line_status in (WITHDRAWN, PAYABLE):
        return line_status
    if any(o.status == UPHELD for o in objections):
        return WITHDRAWN
    if any(o.status == OBJECTION_OPEN for o in objections):
        return HELD
    return NOTICED


def becomes_payable(line_status: str, period: NoticePeriod, today: dt.date) -> bool:
    """A NOTICED line (no objection open) is payable from the day after its period."""
    return line_status == NOTICED and today >= period.payable_on
