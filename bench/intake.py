"""Intake's SubmitApplication alone: the service against a bare echo server,
and the handler without gRPC. Phase 3 of bench/run.py, runnable on its own.

    .venv/bin/python bench/intake.py                 # rpc: intake vs echo, 3 rounds
    .venv/bin/python bench/intake.py --rounds 5 --count 3000
    .venv/bin/python bench/intake.py handler --profile   # handlers.submit in-process, cProfile

``rpc`` starts a fresh single-node Kafka broker and intake as a real process
(``python -m subsidy.services.intake``, SQLite store, outbox relay publishing to that
broker; no eligibility or payout), plus the echo server of bench/run.py (a
subprocess answering each request with its own bytes). Then it alternates
rounds — echo, intake, echo, intake, ... — with the same client (grpc.aio, 16
in flight), each round with fresh application ids, so that both sides see
the same machine load. It prints each round, the median ratio, and the CPU
seconds intake used per accepted application.

``handler`` calls ``subsidy.services.intake.handlers.submit`` in a loop on a real
SQLite store (a temporary file, WAL, synchronous=FULL) with the file registry
and the 名录: no gRPC, no relay. ``--profile`` prints the top of a cProfile.

Applications are those of bench/run.py (bench/calculator.make_lines, unique
ids, 400 firms). Not a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import run  # noqa: E402  (bench/run.py: applications, the echo server, the RPC client)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def wait_port(port: int, timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def intake_commits(metrics_address: str) -> float:
    """Transactions intake has committed (all of them: submissions, relay
    reads and marks, health pings), from its /metrics endpoint."""
    import urllib.request

    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=5) as answer:  # nosec B310 - local
        for line in answer.read().decode().splitlines():
            if (
                line.startswith("subsidy_db_transaction_duration_seconds_count{")
                and 'store="intake"' in line
                and 'outcome="commit"' in line
            ):
                return float(line.rsplit(" ", 1)[1])
    return float("nan")


def wait_outbox_empty(database: Path, timeout: float = 120.0) -> float:
    """Seconds until intake's outbox has no unpublished row (read-only look at its SQLite file)."""
    import sqlite3

    start = time.monotonic()
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    try:
        while time.monotonic() - start < timeout:
            if connection.execute("SELECT COUNT(*) FROM intake_outbox WHERE published_at IS NULL").fetchone()[0] == 0:
                break
            time.sleep(0.05)
    finally:
        connection.close()
    return time.monotonic() - start


def rpc(args: argparse.Namespace) -> None:
    from subsidy_dev.kafka import KafkaBroker
    from subsidy_dev.stack import LocalStack

    tag = uuid.uuid4().hex[:6]
    apps = run.make_apps(args.warmup + args.rounds * args.count, f"I{tag}", 20221122)
    warm, rest = apps[: args.warmup], apps[args.warmup :]
    rounds = [run.to_requests(rest[i * args.count : (i + 1) * args.count]) for i in range(args.rounds)]
    print(f"machine: {run.machine()}")
    print(f"{args.rounds} rounds of {args.count} SubmitApplication, {args.concurrency} in flight")
    with tempfile.TemporaryDirectory(prefix="subsidy-bench-intake-") as tmp:
        var = Path(tmp)
        registry = var / "registry.json"
        run.write_registry(registry, apps)
        echo_port = run.free_port()
        echo = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "run.py"), "--echo-server", str(echo_port)], cwd=ROOT
        )
        try:
            wait_port(echo_port)
            with KafkaBroker(var / "kafka") as broker:
                env = {"SUBSIDY_REGISTRY_FILE": str(registry), "SUBSIDY_LOG_LEVEL": "WARNING"}
                with LocalStack(
                    var / "stack", kafka_bootstrap=broker.bootstrap, services=("intake",), extra_env={"intake": env}
                ) as stack:
                    intake_pid = stack.services["intake"].process.pid
                    metrics_address = stack.services["intake"].env["SUBSIDY_INTAKE_METRICS_ADDRESS"]
                    log(f"intake pid {intake_pid}")
                    asyncio.run(run.rpc_rate(stack.intake_address, run.to_requests(warm), args.concurrency))
                    results = []
                    for n, requests in enumerate(rounds, 1):
                        # The echo server answers in a fraction of intake's time: three times the
                        # requests keep its round long enough to average out the machine's noise.
                        echo_cpu0 = run.cpu_seconds(echo.pid)
                        e = asyncio.run(run.rpc_rate(f"127.0.0.1:{echo_port}", requests * 3, args.concurrency))
                        echo_cpu = run.cpu_seconds(echo.pid) - echo_cpu0
                        cpu0, commits0 = run.cpu_seconds(intake_pid), intake_commits(metrics_address)
                        i = asyncio.run(run.rpc_rate(stack.intake_address, requests, args.concurrency))
                        # The relay may still be publishing: let it finish before the next echo
                        # round (its CPU is part of what an accepted application costs).
                        drain = wait_outbox_empty(var / "stack" / "intake.db")
                        cpu = run.cpu_seconds(intake_pid) - cpu0
                        commits = intake_commits(metrics_address) - commits0
                        ratio = i["rate"] / e["rate"]
                        results.append((e["rate"], i["rate"], ratio))
                        print(
                            f"  round {n}: echo {e['rate']:7,.0f}/s  intake {i['rate']:7,.0f}/s  "
                            f"ratio {ratio:.3f}  CPU µs/RPC: echo {echo_cpu * 1e6 / max(1, e['calls']):,.0f}, "
                            f"intake {cpu * 1e6 / max(1, i['calls']):,.0f}  "
                            f"commits/RPC {commits / max(1, i['calls']):.2f}  outbox drained {drain:.1f} s after  "
                            f"errors {len(e['errors'])}/{len(i['errors'])}",
                            flush=True,
                        )
                        for err in (e["errors"] + i["errors"])[:3]:
                            print(f"    error: {err}")
        finally:
            echo.terminate()
            echo.wait(10)
    echo_med = statistics.median(r[0] for r in results)
    intake_med = statistics.median(r[1] for r in results)
    print(
        f"median: echo {echo_med:,.0f}/s, intake {intake_med:,.0f}/s, "
        f"ratio {statistics.median(r[2] for r in results):.3f} (goal >= 0.7)"
    )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def handler(args: argparse.Namespace) -> None:
    import cProfile
    import logging
    import pstats

    from subsidy.platform.db import Database
    from subsidy.platform.registry import FileRegistry
    from subsidy.services.intake import handlers
    from subsidy.services.intake.adapters.directory import FileDirectory
    from subsidy.services.intake.adapters.store import SqlStore

    logging.basicConfig(level=logging.WARNING)  # as the benchmarked service runs (SUBSIDY_LOG_LEVEL=WARNING)
    apps = run.make_apps(args.rounds * args.count, f"H{uuid.uuid4().hex[:6]}", 20221122)
    messages = [r.application for r in run.to_requests(apps)]
    with tempfile.TemporaryDirectory(prefix="subsidy-bench-handler-") as tmp:
        registry = Path(tmp) / "registry.json"
        run.write_registry(registry, apps)
        db = Database(f"sqlite:///{Path(tmp) / 'intake.db'}", store="intake")
        store = SqlStore(db)
        store.create_schema()
        deps = handlers.Deps(
            store=store, registry=FileRegistry(registry), directory=FileDirectory(ROOT / "policy" / "directory")
        )
        rates, cpu = [], []
        profile = cProfile.Profile() if args.profile else None
        for n in range(args.rounds):
            batch = messages[n * args.count : (n + 1) * args.count]
            if profile is not None and n == args.rounds - 1:
                profile.enable()
            start, cpu_start = time.perf_counter(), time.process_time()
            for message in batch:
                handlers.submit(deps, message)
            rates.append(len(batch) / (time.perf_counter() - start))
            cpu.append((time.process_time() - cpu_start) / len(batch))
            if profile is not None and n == args.rounds - 1:
                profile.disable()
        db.close()
    # The rate is bounded by the disk (one commit, one fsync, per call: no
    # concurrency here); the CPU per call is what the handler itself costs.
    print(
        f"handlers.submit on SQLite: {', '.join(f'{r:,.0f}' for r in rates)} /s, "
        f"CPU {', '.join(f'{c * 1e6:,.0f}' for c in cpu)} µs per call"
        f"{' (last round under cProfile)' if profile else ''}"
    )
    if profile is not None:
        stats = pstats.Stats(profile)
        stats.sort_stats("cumulative").print_stats(args.top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", choices=("rpc", "handler"), default="rpc")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=3000, help="applications per round")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--profile", action="store_true", help="handler: cProfile the last round")
    parser.add_argument("--top", type=int, default=30, help="handler --profile: functions shown")
    args = parser.parse_args()
    (rpc if args.mode == "rpc" else handler)(args)


if __name__ == "__main__":
    main()
