"""Payout alone: decisions applied per second from a pre-filled subsidy.decisions.v1.

    .venv/bin/python bench/payout.py [--count N] [--repeat R] [--root CHECKOUT] [--database-url URL]

A fresh single-node broker (subsidy_dev.kafka) in a temporary directory;
N Decision protobufs (clause 1.rent, ELIGIBLE, unique application ids, ~400
firms so some reach the 500万元 cap, keyed by credit code and carrying
eligibility's CloudEvents headers) are produced to ``subsidy.decisions.v1``
before the service starts. Then ``python -m subsidy.services.payout`` runs as a
subprocess (the environment bench/run.py and subsidy_dev/stack.py give it:
a SQLite file of its own unless ``--database-url``, log level WARNING as
bench/run.py) and a consumer here reads ``subsidy.payouts.v1``:

- rate = GrantRecorded events / (last received - first received), which
  leaves out the process start and the group join; the relay publishes what
  the decisions consumer committed, so this is the rate decisions are
  applied (one GrantRecorded per decision);
- CPU = the service's user+system seconds over that window (from /proc);
- commits = payout's committed database transactions (its
  ``subsidy_db_transaction_duration_seconds_count{outcome="commit"}``, the
  relay's included) per decision, read from /metrics before the stop;
- after SIGTERM, the group's committed offsets on the decisions topic must
  equal its end offsets (everything applied was committed).

Each repeat uses a new broker, database and service process. ``--root``
runs the service from another checkout (e.g. a copy of the tree before a
change) with the same benchmark, to compare before and after in close
succession. Not a timed test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import (  # noqa: E402
    committed_vs_end,
    metric_sum,
    prefill,
    read_from_start,
    scrape,
    start_service,
    stop_service,
    watch,
)

GROUP = "subsidy-payout"  # subsidy/services/payout/config.py's default decisions group
RENT_CAP = 500_000_000  # 500万元 in fen: the rent clause's cumulative cap per firm


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def decisions(count: int, prefix: str, firms: int = 400, seed: int = 20250301) -> list[tuple[bytes, bytes, list, str]]:
    """(key, value, headers, application id) as eligibility publishes them."""
    from subsidy.contracts import cloudevents, codec
    from subsidy.core import credit_code
    from subsidy.core.domain import Decision, Entitlement, LimitKind, Reason

    rng = random.Random(seed)
    codes = [credit_code.complete(f"91310117{n:08X}") for n in range(firms)]
    out = []
    for n in range(count):
        firm = rng.choice(codes)
        app_id = f"{prefix}-{n:07d}"
        amount = rng.randrange(10_000_000, 240_000_000, 100)
        submitted = dt.date(2025, 1, 2) + dt.timedelta(days=rng.randrange(300))
        decision = Decision(
            decision_id=f"{app_id}@bench",
            application_id=app_id,
            credit_code=firm,
            clause="1.rent",
            outcome="ELIGIBLE",
            max_award_fen=amount,
            reasons=(Reason("AWARD_BASIS", "1", "依据第1条"),),
            policy_version="bench",
            decision_year=submitted.year,
            submitted_on=submitted,
            entitlements=(Entitlement("1.rent", LimitKind.CUMULATIVE_CAP, amount, RENT_CAP),),
            tranche_shares_percent=(40, 30, 30),
        )
        headers = cloudevents.headers(
            decision.decision_id,
            cloudevents.TYPE_DECISION_MADE,
            "/songjiang/subsidy/eligibility",
            cloudevents.new_trace_id(),
        )
        out.append((firm.encode(), codec.decision_to_proto(decision).SerializeToString(), headers, app_id))
    return out


def db_commits(metrics_address: str) -> float:
    """Payout's committed database transactions so far, from its /metrics."""
    return metric_sum(
        scrape(metrics_address), "subsidy_db_transaction_duration_seconds_count", store="payout", outcome="commit"
    )


def one_run(count: int, service_root: Path, timeout: float, database_url: str | None) -> dict:
    from subsidy.contracts import topics
    from subsidy.platform import topics as platform_topics
    from subsidy_dev import free_port
    from subsidy_dev.kafka import KafkaBroker

    items = decisions(count, f"P{os.getpid()}{int(time.time()) % 100000}")
    wanted = {item[3] for item in items}
    with tempfile.TemporaryDirectory(prefix="subsidy-bench-payout-") as tmp:
        var = Path(tmp)
        with KafkaBroker(var / "kafka") as broker:
            bootstrap = broker.bootstrap
            platform_topics.ensure_all(bootstrap)
            prefill(bootstrap, topics.DECISIONS.name, items)
            consumer = read_from_start(bootstrap, topics.PAYOUTS.name)
            metrics_address = f"127.0.0.1:{free_port()}"
            env = {
                **os.environ,
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "SUBSIDY_PAYOUT_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
                "SUBSIDY_PAYOUT_DATABASE_URL": database_url or f"sqlite:///{var / 'payout.db'}",
                "SUBSIDY_PAYOUT_METRICS_ADDRESS": metrics_address,
                "SUBSIDY_LOG_LEVEL": "WARNING",  # as bench/run.py
                "PYTHONUNBUFFERED": "1",
            }
            log_path = var / "payout.log"
            proc = start_service("payout", service_root, env, log_path)
            try:
                watched = watch(consumer, proc, log_path, wanted, granted_application, timeout, "granted")
                commits = db_commits(metrics_address)
                code = stop_service(proc)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                consumer.close()
            committed, end = committed_vs_end(bootstrap, GROUP, topics.DECISIONS.name)
    span, granted = watched.span, len(watched.seen)
    counted = granted - watched.first_count  # the grants received after the first poll that saw any
    return {
        "decisions": granted,
        "events": watched.records,
        "seconds": span,
        "rate": counted / span if span > 0 else float("nan"),
        "cpu": watched.cpu_share,
        "exit": code,
        "cpu_ms": 1000 * (watched.cpu_last - watched.cpu_first) / counted if counted else float("nan"),
        "commits": commits / granted,
        "committed": committed,
        "end": end,
    }


def granted_application(record: Any) -> str | None:
    """The application a GrantRecorded on subsidy.payouts.v1 is for; None for the other events."""
    from subsidy.v1 import payout_pb2

    event = payout_pb2.PayoutEvent.FromString(record.value)
    return event.grant_recorded.application_id if event.WhichOneof("event") == "grant_recorded" else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=5000, help="decisions pre-filled (default 5000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs, each on a fresh broker (default 3)")
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout the service runs from")
    parser.add_argument(
        "--database-url",
        default=None,
        help="payout's database (default: a fresh SQLite file per run; on a shared one, "
        "application ids are new in every run)",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="bound of one run's decisions (s)")
    args = parser.parse_args()
    rates, cpus = [], []
    for n in range(args.repeat):
        log(f"run {n + 1}/{args.repeat}: {args.count} decisions, service from {args.root} ...")
        r = one_run(args.count, args.root.resolve(), args.timeout, args.database_url)
        rates.append(r["rate"])
        cpus.append(r["cpu_ms"])
        print(
            f"  {r['decisions']} decisions ({r['events']} payout events) in {r['seconds']:.2f} s: "
            f"{r['rate']:,.0f} decisions/s, payout CPU {r['cpu']:.0%} of a core ({r['cpu_ms']:.2f} ms per "
            f"decision), {r['commits']:.2f} database commits per decision; exit {r['exit']}; "
            f"committed {r['committed']} of {r['end']} offsets",
            flush=True,
        )
        if r["committed"] != r["end"]:
            print("  WARNING: committed offsets differ from the end offsets", flush=True)
    print(
        f"median {statistics.median(rates):,.0f} decisions/s over {len(rates)} runs "
        f"(min {min(rates):,.0f}, max {max(rates):,.0f}), median CPU {statistics.median(cpus):.2f} ms per "
        f"decision; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


if __name__ == "__main__":
    main()
