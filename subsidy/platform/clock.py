"""The one clock of every service: today in Songjiang and the current
instant, injected into handlers (rules never read the wall clock).

Three kinds, chosen by ``clock_from_env``:

- ``SystemClock``: the real time; production.
- ``FixedClock``: one settable day (``SUBSIDY_PAYOUT_TODAY`` in demos and
  tests; tests call ``set``).
- ``DevClock``: the dev stack's drivable clock, shared by every process of
  the stack through one small JSON file (``SUBSIDY_DEV_CLOCK_FILE``):
  ``{"start": "<RFC 3339 instant>", "real_start": <unix seconds>,
  "speed": <simulated seconds per real second>, "offset_s": <seconds added>}``.
  ``subsidy dev clock`` writes it (advance by days, set the speed), so a
  5-working-day public notice passes in seconds in ``make run`` and tests.
  Refused unless ``SUBSIDY_DEV_MODE=1``: production never runs on a clock a
  file can move.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

CHINA = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")


class Clock(Protocol):
    def today(self) -> dt.date: ...

    def now(self) -> dt.datetime: ...


class SystemClock:
    """The real time; today is the date in Songjiang (UTC+8)."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def today(self) -> dt.date:
        return self.now().astimezone(CHINA).date()


@dataclass
class FixedClock:
    """A settable day (its instants are noon in Songjiang on that day, plus
    whatever ``advance`` added)."""

    day: dt.date
    extra: dt.timedelta = dt.timedelta(0)

    def now(self) -> dt.datetime:
        noon = dt.datetime.combine(self.day, dt.time(12), tzinfo=CHINA)
        return (noon + self.extra).astimezone(dt.UTC)

    def today(self) -> dt.date:
        return self.now().astimezone(CHINA).date()

    def set(self, day: dt.date) -> None:
        self.day = day
        self.extra = dt.timedelta(0)

    def advance(self, delta: dt.timedelta) -> None:
        self.extra += delta


class DevClockError(ValueError):
    """The dev clock's file or settings are wrong; the message names which."""


@dataclass(frozen=True)
class DevClockState:
    start: dt.datetime
    real_start: float
    speed: float = 1.0
    offset_s: float = 0.0

    def at(self, real: float) -> dt.datetime:
        elapsed = (real - self.real_start) * self.speed + self.offset_s
        return self.start + dt.timedelta(seconds=elapsed)

    def to_json(self) -> str:
        return json.dumps(
            {
                "start": self.start.isoformat(),
                "real_start": self.real_start,
                "speed": self.speed,
                "offset_s": self.offset_s,
            }
        )

    @classmethod
    def from_json(cls, text: str, source: str) -> DevClockState:
        try:
            data = json.loads(text)
            start = dt.datetime.fromisoformat(data["start"])
            if start.tzinfo is None:
                raise ValueError("start has no UTC offset")
            state = cls(start, float(data["real_start"]), float(data.get("speed", 1.0)), float(data.get("offset_s", 0)))
        except (ValueError, KeyError, TypeError) as exc:
            raise DevClockError(f"{source}: not a dev clock file: {exc}") from None
        if not 0 < state.speed <= 1_000_000:
            raise DevClockError(f"{source}: speed must be in (0, 1000000], got {state.speed}")
        return state


class DevClock:
    """Reads its file on every call (a few hundred bytes), so ``subsidy dev
    clock advance`` moves every process of the stack at once. Time never
    goes backwards within one process, even if the file is rewritten."""

    def __init__(self, path: Path, real: Callable[[], float] | None = None):
        self.path = path
        self._real = real or time.time
        self._last: dt.datetime | None = None

    def state(self) -> DevClockState:
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DevClockError(f"SUBSIDY_DEV_CLOCK_FILE: cannot read {self.path}: {exc.strerror}") from None
        return DevClockState.from_json(text, f"SUBSIDY_DEV_CLOCK_FILE ({self.path})")

    def now(self) -> dt.datetime:
        current = self.state().at(self._real())
        if self._last is not None and current < self._last:
            current = self._last
        self._last = current
        return current.astimezone(dt.UTC)

    def today(self) -> dt.date:
        return self.now().astimezone(CHINA).date()


def write_dev_clock(path: Path, state: DevClockState) -> None:
    """Atomically (a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(state.to_json(), encoding="utf-8")
    os.replace(tmp, path)


def advance_dev_clock(path: Path, delta: dt.timedelta) -> DevClockState:
    state = DevClock(path).state()
    moved = DevClockState(state.start, state.real_start, state.speed, state.offset_s + delta.total_seconds())
    write_dev_clock(path, moved)
    return moved


def clock_from_env(env: Mapping[str, str], *, fixed_today_variable: str = "") -> Clock:
    """``SUBSIDY_DEV_CLOCK_FILE`` (dev mode only), else the service's fixed
    day variable if set (e.g. ``SUBSIDY_PAYOUT_TODAY``), else the real time."""
    clock_file = env.get("SUBSIDY_DEV_CLOCK_FILE", "").strip()
    if clock_file:
        if env.get("SUBSIDY_DEV_MODE", "").strip() != "1":
            raise DevClockError(
                "SUBSIDY_DEV_CLOCK_FILE is set but SUBSIDY_DEV_MODE is not 1: a clock a file can move is for the dev stack only"
            )
        clock = DevClock(Path(clock_file))
        clock.state()  # fail at start, naming the file, not at the first rule
        return clock
    if fixed_today_variable:
        day = env.get(fixed_today_variable, "").strip()
        if day:
            try:
                return FixedClock(dt.date.fromisoformat(day))
            except ValueError:
                raise DevClockError(f"{fixed_today_variable}: not a date YYYY-MM-DD: {day!r}") from None
    return SystemClock()
