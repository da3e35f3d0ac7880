"""Eligibility alone: decisions/s from a pre-filled subsidy.applications.v1.

    .venv/bin/python bench/eligibility.py [--count N] [--repeat R] [--root CHECKOUT]

A fresh single-node broker (subsidy_dev.kafka) in a temporary directory;
N Application protobufs (bench/calculator.make_lines through
``json_format``, unique ids, ~400 firms, keyed by credit code and carrying
intake's CloudEvents headers) are produced to ``subsidy.applications.v1``
before the service starts. Then ``python -m subsidy.services.eligibility`` runs as a
subprocess (the environment bench/run.py and subsidy_dev/stack.py give it,
log level INFO as there) and a consumer here reads ``subsidy.decisions.v1``:

- rate = decisions / (last decision received - first decision received),
  which leaves out the process start and the group join;
- CPU = the service's user+system seconds over that window (from /proc);
- after SIGTERM, the group's committed offsets on the applications topic
  must equal its end offsets (everything decided was committed, nothing
  beyond it).

Each repeat uses a new broker and a new service process. ``--root`` runs
the service from another checkout (e.g. a ``git worktree`` of the previous
commit) with the same benchmark, to compare before and after in close
succession. Not a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import calculator as calc  # noqa: E402
from common import committed_vs_end, prefill, read_from_start, start_service, stop_service, watch  # noqa: E402


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def applications(count: int, prefix: str) -> list[tuple[bytes, bytes, list, str]]:
    """(key, value, headers, application id) as intake's relay publishes them."""
    from google.protobuf import json_format

    from subsidy.contracts import cloudevents
    from subsidy.v1 import application_pb2

    out = []
    for n, line in enumerate(calc.make_lines(count)):
        obj = json.loads(line)
        obj["application_id"] = f"{prefix}-{n:07d}"
        message = json_format.ParseDict(obj, application_pb2.Application())
        headers = cloudevents.headers(
            obj["application_id"],
            cloudevents.TYPE_APPLICATION_SUBMITTED,
            "/songjiang/subsidy/intake",
            cloudevents.new_trace_id(),
        )
        out.append((obj["firm"]["credit_code"].encode(), message.SerializeToString(), headers, obj["application_id"]))
    return out


def one_run(count: int, service_root: Path, timeout: float) -> dict:
    from subsidy.contracts import topics
    from subsidy.platform import topics as platform_topics
    from subsidy.v1 import decision_pb2
    from subsidy_dev import free_port
    from subsidy_dev.kafka import KafkaBroker

    apps = applications(count, f"E{os.getpid()}{int(time.time()) % 100000}")
    wanted = {a[3] for a in apps}
    with tempfile.TemporaryDirectory(prefix="subsidy-bench-eligibility-") as tmp:
        var = Path(tmp)
        with KafkaBroker(var / "kafka") as broker:
            bootstrap = broker.bootstrap
            platform_topics.ensure_all(bootstrap)
            prefill(bootstrap, topics.APPLICATIONS.name, apps)
            consumer = read_from_start(bootstrap, topics.DECISIONS.name)
            env = {
                **os.environ,
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "SUBSIDY_ELIGIBILITY_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
                "SUBSIDY_ELIGIBILITY_METRICS_PORT": str(free_port()),
                "SUBSIDY_ELIGIBILITY_METRICS_ADDRESS": "127.0.0.1",
                "SUBSIDY_ELIGIBILITY_DATA_DIR": str(var / "eligibility"),
                "SUBSIDY_LOG_LEVEL": "WARNING",  # as bench/run.py; eligibility reads its own level (INFO)
                "PYTHONUNBUFFERED": "1",
            }
            log_path = var / "eligibility.log"
            proc = start_service("eligibility", service_root, env, log_path)
            try:
                watched = watch(
                    consumer,
                    proc,
                    log_path,
                    wanted,
                    lambda record: decision_pb2.Decision.FromString(record.value).application_id,
                    timeout,
                    "decided",
                )
                code = stop_service(proc)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                consumer.close()
            committed, end = committed_vs_end(bootstrap, "subsidy-eligibility", topics.APPLICATIONS.name)
    span, decided = watched.span, len(watched.seen)
    return {
        "decisions": decided,
        "seconds": span,
        "rate": (decided - 1) / span if span > 0 else float("nan"),
        "cpu": watched.cpu_share,
        "exit": code,
        "cpu_ms": 1000 * (watched.cpu_last - watched.cpu_first) / decided,
        "committed": committed,
        "end": end,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=5000, help="applications pre-filled (default 5000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs, each on a fresh broker (default 3)")
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout the service runs from")
    parser.add_argument("--timeout", type=float, default=180.0, help="bound of one run's decisions (s)")
    args = parser.parse_args()
    rates = []
    for n in range(args.repeat):
        log(f"run {n + 1}/{args.repeat}: {args.count} applications, service from {args.root} ...")
        r = one_run(args.count, args.root.resolve(), args.timeout)
        rates.append(r["rate"])
        print(
            f"  {r['decisions']} decisions in {r['seconds']:.2f} s: {r['rate']:,.0f} decisions/s, "
            f"eligibility CPU {r['cpu']:.0%} of a core ({r['cpu_ms']:.2f} ms per decision); exit {r['exit']}; "
            f"committed {r['committed']} of {r['end']} offsets",
            flush=True,
        )
        if r["committed"] != r["end"]:
            print("  WARNING: committed offsets differ from the end offsets", flush=True)
    print(
        f"median {statistics.median(rates):,.0f} decisions/s over {len(rates)} runs "
        f"(min {min(rates):,.0f}, max {max(rates):,.0f}); load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


if __name__ == "__main__":
    main()
