"""Dates and times as the system writes and counts them: pure functions, no
clock. (Reading the clock is the caller's: services inject it, so tests can
pin it.)

- ``rfc3339``: a moment as the stores, the outbox and the events write it;
- ``add_years``: the same calendar date some years later, the one 29 February
  rule the eligibility rules (clause 1's rent window) and the payout ledger
  (a tranche's due date) share.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal


def rfc3339(moment: dt.datetime, timespec: Literal["microseconds", "milliseconds"] = "microseconds") -> str:
    """UTC with microseconds and 'Z', e.g. '2025-03-01T08:00:00.000000Z'.
    Always the same width, so these strings sort as text in the order of time
    (intake lists applications by them). ``timespec="milliseconds"`` (the
    rest cut off, not rounded) is the form of a CloudEvents ``ce_time`` and
    of a dead letter's ``failed_at``: '2025-03-01T08:00:00.000Z'."""
    return moment.astimezone(dt.UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def add_years(day: dt.date, years: int) -> dt.date:
    """The same calendar date ``years`` later; 29 February maps to 1 March in
    a common year (the day after 28 February, so a period counted from 29
    February is never a day short, and a tranche is never due early)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February in a common year
        return dt.date(day.year + years, 3, 1)
