"""Nothing left behind by an interrupted run (issue 19, item 5;
subsidy_dev/run_groups.py). A runner starts a real PostgreSQL (the postmaster
in a process group pg_ctl made, and its workers, which end with it) and a process group of two
processes, as the fault harness starts its broker, database and proxy; the
runner is killed with SIGKILL, so no teardown runs, and its groups live on.
The next run's reaper ends them all, and never touches the groups of a
runner that is still alive, nor a process whose number was reused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from subsidy_dev import run_groups
from subsidy_dev.postgres import PostgresServer, install

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

RUNNER = textwrap.dedent(
    """
    import json, subprocess, sys, time
    from pathlib import Path
    from subsidy_dev import run_groups
    from subsidy_dev.postgres import PostgresServer

    out = Path(sys.argv[1])
    server = PostgresServer(out.parent / "pg")
    server.start()
    postmaster = server.status()["pid"]
    group = subprocess.Popen(["bash", "-c", "sleep 600 & sleep 600; wait"], start_new_session=True)
    run_groups.register(group.pid, "two sleeps")
    time.sleep(0.5)  # bash has forked its background sleep
    members = [p for p in map(int, subprocess.check_output(["pgrep", "-g", str(group.pid)]).split())]
    # Its workers lead groups of their own (so the postmaster can signal each)
    # and end when it does.
    workers = [p for p in map(int, subprocess.check_output(["pgrep", "-P", str(postmaster)]).split())]
    pg_members = [postmaster] + workers
    out.write_text(json.dumps({"sleeps": members, "postgres": pg_members}))
    time.sleep(3600)
    """
)


def alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(") ", 1)[1][0] != "Z"  # a zombie has ended
    except (FileNotFoundError, ProcessLookupError):
        return False


def start_runner(tmp_path: Path, name: str, ledgers: Path) -> tuple[subprocess.Popen, dict[str, list[int]]]:
    folder = tmp_path / name
    folder.mkdir()
    out = folder / "pids.json"
    runner = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(out)],
        cwd=REPO,
        env={**os.environ, run_groups.ENV_DIR: str(ledgers)},
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while not out.exists():
        assert runner.poll() is None, "the runner died before starting its groups"
        assert time.monotonic() < deadline, "the runner did not start its groups within 90 s"
        time.sleep(0.2)
    time.sleep(0.2)
    return runner, json.loads(out.read_text())


def wait_gone(pids: list[int], timeout: float = 15) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


@pytest.fixture
def ledgers(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "ledgers"
    monkeypatch.setenv(run_groups.ENV_DIR, str(folder))
    return folder


def test_a_killed_runs_database_and_process_groups_are_reaped_and_a_live_runs_are_not(tmp_path, ledgers):
    install()
    killed, killed_pids = start_runner(tmp_path, "killed", ledgers)
    live, live_pids = start_runner(tmp_path, "live", ledgers)
    try:
        everything_killed = killed_pids["sleeps"] + killed_pids["postgres"]
        assert len(killed_pids["sleeps"]) >= 2 and len(killed_pids["postgres"]) >= 2
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(10)
        time.sleep(0.5)
        assert all(alive(p) for p in everything_killed), "the leak this guards against: the groups outlive the runner"

        reaped = run_groups.reap_orphans(grace=3.0)

        assert sorted(g.what for g, _ in reaped) == sorted(
            ["two sleeps", f"PostgreSQL in {(tmp_path / 'killed' / 'pg').resolve()}"]
        )
        assert wait_gone(everything_killed) == []
        # The live runner's groups are untouched, and its ledger stays.
        assert all(alive(p) for p in live_pids["sleeps"] + live_pids["postgres"])
        assert [p.name.split("-")[0] for p in ledgers.glob("*.jsonl")] == [str(live.pid)]
        assert run_groups.reap_orphans(grace=3.0) == []  # nothing more to do while it lives
    finally:
        for runner in (killed, live):
            if runner.poll() is None:
                runner.kill()
                runner.wait(10)
        run_groups.reap_orphans(grace=3.0)
        for name in ("killed", "live"):
            PostgresServer(tmp_path / name / "pg").destroy()
    assert wait_gone(live_pids["sleeps"] + live_pids["postgres"]) == []


def test_a_group_whose_leader_number_was_reused_is_left_alone(ledgers):
    stranger = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        started = run_groups.start_time(stranger.pid)
        assert started is not None
        # A record of an earlier process that had the same number.
        recorded = run_groups.Group(pgid=stranger.pid, leader_started=started - 1, what="an old group")
        assert run_groups.end_group(recorded, grace=0.5) == []
        assert alive(stranger.pid)
        same = run_groups.Group(pgid=stranger.pid, leader_started=started, what="the group itself")
        assert run_groups.end_group(same, grace=2.0) == [stranger.pid]
        stranger.wait(5)
    finally:
        if stranger.poll() is None:
            stranger.kill()
            stranger.wait(5)


def test_a_detached_database_is_not_written_down(tmp_path, ledgers):
    """`make postgres-start` (and `make kafka-start`) start servers meant to
    outlive their CLI: no ledger names them, so no later run reaps them."""
    install()
    server = PostgresServer(tmp_path / "pg", detached=True)
    try:
        server.start()
        assert not list(ledgers.glob("*.jsonl"))
        owned = PostgresServer(tmp_path / "pg-owned")
        owned.start()
        try:
            (ledger,) = ledgers.glob("*.jsonl")
            postmaster = owned.status()["pid"]
            assert run_groups.read_ledger(ledger) == [
                run_groups.Group(postmaster, run_groups.start_time(postmaster), f"PostgreSQL in {owned.data_dir}")
            ]
        finally:
            owned.destroy()
    finally:
        server.destroy()
