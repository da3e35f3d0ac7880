"""``subsidy dev clock``: drive the dev stack's clock (subsidy/platform/clock.py,
DevClock), the one file every process of the stack reads its time from.

    subsidy dev clock show               the simulated now and today, the speed, the file
    subsidy dev clock advance --days N   move every process N days ahead (also --hours)
    subsidy dev clock speed X            X simulated seconds per real second from now on
    subsidy dev clock start [--at DAY]   create the file (now, or noon of DAY in Songjiang)

Refused unless SUBSIDY_DEV_MODE=1 (production never runs on a clock a file
can move); the file is SUBSIDY_DEV_CLOCK_FILE (or --file). Services notice
the new time at their next scheduler round (SUBSIDY_REVIEW_SCHEDULER_INTERVAL_SECONDS).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path

from subsidy.platform.clock import (
    CHINA,
    DevClock,
    DevClockError,
    DevClockState,
    advance_dev_clock,
    write_dev_clock,
)


class DevClockRefused(Exception):
    """Why the command did nothing (the message names the variable)."""


def _file(args: argparse.Namespace) -> Path:
    if os.environ.get("SUBSIDY_DEV_MODE", "").strip() != "1":
        raise DevClockRefused("refused: SUBSIDY_DEV_MODE is not 1 (the dev clock is for the dev stack only)")
    name = args.file or os.environ.get("SUBSIDY_DEV_CLOCK_FILE", "").strip()
    if not name:
        raise DevClockRefused("no clock file: set SUBSIDY_DEV_CLOCK_FILE or pass --file")
    return Path(name)


def _show(path: Path, state: DevClockState | None = None) -> str:
    state = state or DevClock(path).state()
    now = state.at(time.time())
    return (
        json.dumps(
            {
                "file": str(path),
                "now": now.astimezone(dt.UTC).isoformat(),
                "today": now.astimezone(CHINA).date().isoformat(),
                "speed": state.speed,
                "offset_days": round(state.offset_s / 86400, 6),
            },
            ensure_ascii=False,
        )
        + "\n"
    )


def run(args: argparse.Namespace) -> str:
    path = _file(args)
    try:
        if args.clock_command == "show":
            return _show(path)
        if args.clock_command == "advance":
            delta = dt.timedelta(days=args.days, hours=args.hours)
            if delta <= dt.timedelta(0):
                raise DevClockRefused("advance: --days/--hours must move the clock forward")
            return _show(path, advance_dev_clock(path, delta))
        if args.clock_command == "speed":
            if not 0 < args.factor <= 1_000_000:
                raise DevClockRefused(f"speed: must be in (0, 1000000], got {args.factor}")
            state = DevClock(path).state()
            real = time.time()
            # Re-anchor at the current simulated instant, so changing the speed never jumps the time.
            moved = DevClockState(state.at(real), real, args.factor, 0.0)
            write_dev_clock(path, moved)
            return _show(path, moved)
        if args.clock_command == "start":
            start = dt.datetime.combine(args.at, dt.time(12), tzinfo=CHINA) if args.at else dt.datetime.now(dt.UTC)
            state = DevClockState(start, time.time(), args.speed, 0.0)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_dev_clock(path, state)
            return _show(path, state)
    except DevClockError as exc:
        raise DevClockRefused(str(exc)) from None
    raise DevClockRefused(f"unknown clock command {args.clock_command!r}")


def _day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dev = sub.add_parser("dev", help="developer tools for the dev stack (need SUBSIDY_DEV_MODE=1)")
    dev_sub = dev.add_subparsers(dest="dev_command", required=True)
    clock = dev_sub.add_parser("clock", help="show or drive the dev stack's clock (SUBSIDY_DEV_CLOCK_FILE)")
    clock.add_argument("--file", help="the clock file (default: $SUBSIDY_DEV_CLOCK_FILE)")
    csub = clock.add_subparsers(dest="clock_command", required=True)
    csub.add_parser("show", help="the simulated now, today and speed")
    p = csub.add_parser("advance", help="move the clock ahead for every process of the stack")
    p.add_argument("--days", type=float, default=0.0)
    p.add_argument("--hours", type=float, default=0.0)
    p = csub.add_parser("speed", help="simulated seconds per real second from now on")
    p.add_argument("factor", type=float)
    p = csub.add_parser("start", help="create the clock file")
    p.add_argument("--at", type=_day, help="start at noon of this day in Songjiang (default: now)")
    p.add_argument("--speed", type=float, default=1.0)
    dev.set_defaults(run=run)
