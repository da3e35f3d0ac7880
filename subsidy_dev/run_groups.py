"""Nothing left behind by an interrupted run (issue 19, item 5).

Every long-lived process the dev harness starts (a service, a migration, the
Kafka broker, PostgreSQL's postmaster, a Toxiproxy server) runs in its own
process group. Stopping a stack normally ends each group. But a run killed
with SIGKILL (a CI timeout, an OOM kill, a closed terminal) never reaches its
teardown, and its groups live on: brokers holding ports and gigabytes,
postmasters holding data directories.

So each group is also written down, as it starts, in a ledger owned by the
process that started it (its *owner*: `make run`, a pytest session). The
next harness to start, or `make clean-runs`, reaps the groups of every owner
that is gone: SIGTERM to the group, then SIGKILL after a grace. Process ids
are reused by the kernel, so a record names each process with its start time
(field 22 of /proc/<pid>/stat) and nothing is signalled whose identity does
not match. The groups of a live owner (a concurrent run) are never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ENV_DIR = "SUBSIDY_RUN_GROUPS_DIR"
#: How long a group has to end after SIGTERM before it gets SIGKILL.
TERM_GRACE_SECONDS = 5.0


def ledger_dir() -> Path:
    """One directory per user on the machine (runs in different checkouts share it)."""
    configured = os.environ.get(ENV_DIR)
    return Path(configured) if configured else Path(tempfile.gettempdir()) / f"subsidy-run-groups-{os.getuid()}"


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])  # field 22 overall


def _process_group(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[2])  # field 5 overall


@dataclass(frozen=True)
class Group:
    pgid: int
    leader_started: int
    what: str


def _owner_key(pid: int) -> str | None:
    started = start_time(pid)
    return None if started is None else f"{pid}-{started}"


def register(pid: int, what: str) -> None:
    """Write down the process group of ``pid`` (a process this one started)
    under this process as its owner. Best effort: a harness must not fail to
    start because /tmp is read-only."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    leader_started = start_time(pgid)
    owner = _owner_key(os.getpid())
    if leader_started is None or owner is None:
        return
    record = {"pgid": pgid, "leader_started": leader_started, "what": what}
    try:
        folder = ledger_dir()
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{owner}.jsonl", "a", encoding="utf-8") as ledger:
            ledger.write(json.dumps(record) + "\n")
    except OSError:
        return


def _owner_alive(ledger_name: str) -> bool:
    pid_text, _, started_text = ledger_name.removesuffix(".jsonl").partition("-")
    try:
        pid, started = int(pid_text), int(started_text)
    except ValueError:
        return False
    return start_time(pid) == started


def _members(group: Group) -> list[int]:
    """The live processes of the group. Its leader counts only if it is the
    same process (start time); other members count only if they started no
    earlier than the leader (no process predates the group it belongs to), so
    a pgid whose leader is gone and whose number was reused is left alone."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if _process_group(pid) != group.pgid:
            continue
        started = start_time(pid)
        if started is None:
            continue
        if pid == group.pgid and started != group.leader_started:
            return []  # the number now leads someone else's group
        if started >= group.leader_started:
            members.append(pid)
    return members


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def end_group(group: Group, grace: float = TERM_GRACE_SECONDS) -> list[int]:
    """SIGTERM to the group's members, SIGKILL to those left after ``grace``; the pids signalled."""
    members = _members(group)
    if not members:
        return []
    _signal_all(members, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _members(group):
            return members
        time.sleep(0.1)
    _signal_all(_members(group), signal.SIGKILL)
    return members


def read_ledger(path: Path) -> list[Group]:
    groups = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
            groups.append(Group(int(record["pgid"]), int(record["leader_started"]), str(record["what"])))
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by the kill itself
    return groups


def reap_orphans(grace: float = TERM_GRACE_SECONDS) -> list[tuple[Group, list[int]]]:
    """End the groups of every owner that is gone; returns each group reaped
    with the pids signalled. Ledgers of live owners are left as they are."""
    folder = ledger_dir()
    if not folder.is_dir():
        return []
    reaped = []
    for ledger in sorted(folder.glob("*.jsonl")):
        if _owner_alive(ledger.name):
            continue
        for group in read_ledger(ledger):
            pids = end_group(group, grace)
            if pids:
                reaped.append((group, pids))
        ledger.unlink(missing_ok=True)
    return reaped


def main() -> int:
    """`make clean-runs`: reap what interrupted runs left behind, and say what."""
    reaped = reap_orphans()
    for group, pids in reaped:
        print(f"ended {group.what} (process group {group.pgid}: {len(pids)} processes)")
    if not reaped:
        print(f"nothing left behind by interrupted runs (ledgers in {ledger_dir()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
