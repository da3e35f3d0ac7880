"""Working days (工作日) as the State Council's holiday arrangements make them:
Monday to Friday, minus the public holidays, plus the adjusted working
weekends (调休). The arrangements come from the maintained ``chinesecalendar``
package (module ``chinese_calendar``), never from a hand list; it knows the
years the State Council has announced and raises for any other, which
becomes ``CalendarNotCovered`` naming the year, so no period is ever counted
on a guess.
"""

from __future__ import annotations

import datetime as dt

import chinese_calendar  # type: ignore[import-untyped]  # no stubs; is_workday(date) -> bool

_DAY = dt.timedelta(days=1)


class CalendarNotCovered(ValueError):
    """The holiday calendar has no arrangements for the year asked about."""

    def __init__(self, day: dt.date, detail: str):
        super().__init__(
            f"working days of {day.year} are not known yet: the holiday calendar (chinesecalendar "
            f"{getattr(chinese_calendar, '__version__', '')}) has no arrangements for {day.isoformat()} ({detail}); "
            "upgrade the chinesecalendar package once the State Council publishes them"
        )
        self.day = day


def is_working_day(day: dt.date) -> bool:
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError as exc:
        raise CalendarNotCovered(day, str(exc)) from None


def last_known_day(today: dt.date) -> dt.date:
    """The last day whose working days the calendar knows, counting on from
    ``today``'s year: 31 December of the last year known in a row. Before
    ``today`` when its own year is not known. Operators watch the days left
    (a notice whose period runs past it is refused; a review item queued
    then has no deadline) so the package is upgraded in time."""
    year = today.year
    while _year_known(year):
        year += 1
    return dt.date(year - 1, 12, 31)


def _year_known(year: int) -> bool:
    try:
        is_working_day(dt.date(year, 1, 1))
    except CalendarNotCovered:
        return False
    return True


def next_working_day(day: dt.date) -> dt.date:
    """``day`` itself if it is a working day, else the first working day after it."""
    while not is_working_day(day):
        day += _DAY
    return day


def nth_working_day(start: dt.date, n: int) -> dt.date:
    """The ``n``th working day counting ``start`` as the first if it is one
    (``n`` >= 1): ``nth_working_day(d, 1) == next_working_day(d)``."""
    if n < 1:
        raise ValueError(f"n: must be at least 1, got {n}")
    day = next_working_day(start)
    for _ in range(n - 1):
        day = next_working_day(day + _DAY)
    return day


def add_working_days(day: dt.date, n: int) -> dt.date:
    """The ``n``th working day after ``day`` (``day`` itself not counted); ``n`` >= 0."""
    if n < 0:
        raise ValueError(f"n: must not be negative, got {n}")
    return day if n == 0 else nth_working_day(day + _DAY, n)


def working_days_between(first: dt.date, last: dt.date) -> int:
    """Working days in ``(first, last]``: how many have passed since ``first``."""
    count, day = 0, first + _DAY
    while day <= last:
        count += is_working_day(day)
        day += _DAY
    return count
