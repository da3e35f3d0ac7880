"""Scaling out: one replica of a consumer beside N in the same consumer group.

    .venv/bin/python bench/scaling.py [--replicas N] [--count C] [--services S,...] [--quick]
    make bench-scaling ARGS=--quick

For each service (default: eligibility, payout and intake's 免申即享
proposal pass) and each replica count (1, then N; default N = 2), on a
fresh single-node broker (subsidy_dev.kafka):

1. the service's first process is started by ``LocalStack`` (its
   environment, its database migrated), the other N - 1 as further
   ``ServiceProcess``es with the same environment but their own gRPC and
   metrics ports and, for eligibility (faust), their own data directory --
   as the fault suite's ``replicas`` fault starts a second payout
   (tests/faults/harness.py ``start_replica``);
2. once every replica is SERVING and the group's description
   (KafkaAdminClient.describe_groups) shows N members sharing every
   partition of the input topic, the run's items are produced to it (the
   same count for 1 and N replicas: eligibility 12,000 applications, payout
   4,000 decisions, intake 2,000 firms, a quarter of each with --quick; the
   items bench/eligibility.py and bench/payout.py produce, and FirmFacts as
   registry-sync publishes them for the proposal pass). Producing them takes
   about a second, the services take ten or more, so the replicas start on
   a backlog as on a pre-filled topic; producing first would let the first
   replica to join take every partition and the run would measure the
   rebalance that follows;
3. a consumer here reads the output topic until every item is out: the
   total rate = items / (last output received - first), which leaves out
   the start and the group join, as bench/eligibility.py and bench/payout.py;
4. every 0.25 s each replica's /metrics (its processed count: eligibility's
   decisions produced, payout's decisions applied, intake's proposals
   created), its CPU seconds (/proc/<pid>/stat) and the seconds its threads
   waited on a run queue for a CPU (/proc/<pid>/task/*/schedstat), the
   broker's and PostgreSQL's CPU seconds and the whole machine's busy CPU
   seconds (/proc/stat, other people's work included) are sampled: per
   replica, the records it processed over its own window (the last sample
   before its count moved to the first at its final count), its rate, CPU
   and wait; the broker's and the database's CPU per item, and how many of
   the machine's CPUs were busy, over the whole window;
5. which partitions each replica held: the group's description, each member
   matched to a replica by the partitions its /metrics reports lag for
   (``subsidy_kafka_consumer_lag``); the description is taken again after
   the run, to show whether the group rebalanced during it;
6. SIGTERM to every replica; the group's committed offsets must equal the
   input topic's end offsets. What the broker and the database carry per
   item: bytes on disk of the input and output topics, output records,
   committed transactions (the services' own metric), rows written and
   database growth (pg_stat_database, pg_database_size).

Payout and intake run on PostgreSQL (subsidy_dev.postgres, one server,
fsync on, a fresh database per run), which docs/payout.md names as required
for replicas: the outbox relays take turns only there (a transaction-scoped
advisory lock per batch); on SQLite each process's relay would read and
publish the same pending rows, and every write of every process would queue
for the one file lock. Eligibility has no database. Logs at WARNING, as
bench/run.py. Not a timed test. The figures and what they mean:
docs/scaling.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import eligibility as eligibility_bench  # noqa: E402
import payout as payout_bench  # noqa: E402
from common import committed_vs_end, cpu_seconds, metric_sum, prefill, read_from_start, scrape, watch  # noqa: E402
from run import machine  # noqa: E402

SAMPLE_S = 0.25
#: On the dev clock's first day (subsidy_dev.stack.DEV_CLOCK_START) a DCMM
#: level 3 certificate of this date makes a clause 9 proposal (200,000 元).
AWARDED_ON = "2026-03-01"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# What is measured, per service
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Service:
    name: str  # python -m subsidy.services.<name>
    title: str
    item: str  # one input record, for the printout
    done: str  # what the output says happened to it
    input: str
    output: str
    group: str
    items: Callable[[int, str], list]  # (key, value, headers, id)
    completes: Callable[[Any], Any]  # output record -> the id it completes, or None
    processed: tuple[str, dict[str, str]]  # per-replica counter on /metrics: sample name, labels
    database: bool
    count: int  # items per run (--quick: a quarter), about 10-20 s for one replica here
    extra_env: dict[str, str] = dataclasses.field(default_factory=dict)


def decided(record: Any) -> str:
    from subsidy.v1 import decision_pb2

    return decision_pb2.Decision.FromString(record.value).application_id


def proposed(record: Any) -> str | None:
    """The firm a ``created`` ProposalEvent on subsidy.proposals.v1 is for; None for the other events."""
    from subsidy.v1 import proposal_pb2

    event = proposal_pb2.ProposalEvent.FromString(record.value)
    return event.credit_code if event.WhichOneof("event") == "created" else None


def firm_facts(count: int, prefix: str) -> list[tuple[bytes, bytes, list, str]]:
    """FirmFacts records as registry-sync publishes them (its ``firm_record``):
    ``count`` firms of the district, each with one DCMM level 3 certificate,
    which makes one clause 9 proposal. Every firm proposes: the dearer case
    (a firm without a proposable fact is decoded, checked and skipped)."""
    from subsidy.core import credit_code
    from subsidy.services.registry_sync.events import firm_record

    now = dt.datetime.now(dt.UTC)
    out = []
    for n in range(count):
        code = credit_code.complete(f"91310117{n:08X}")
        facts = {
            "credit_code": code,
            "name": f"上海松江示例科技{n}有限公司",
            "as_of": AWARDED_ON,
            "registered_in_district": True,
            "tax_registered_in_district": True,
            "independent_legal_person": True,
            "kinds": ["SOFTWARE"],
            "introduced_on": "",
            "recognitions": [
                {
                    "kind": "DCMM_LEVEL",
                    "level": "3",
                    "reference": f"DCMM-{prefix}-{n:06d}",
                    "awarded_on": AWARDED_ON,
                    "issuer": "中国电子信息行业联合会",
                }
            ],
            "revenues": [],
            "identifier_usage": [],
            "contacts": {"email": "", "phone": "", "webhook_url": ""},
            "feed_sequence": n + 1,
        }
        message = firm_record(facts, 1, now)
        out.append((message.key, message.value, list(message.headers), code))
    return out


def services() -> dict[str, Service]:
    from subsidy.contracts import topics

    return {
        "eligibility": Service(
            "eligibility",
            "eligibility (faust)",
            "applications",
            "decided",
            topics.APPLICATIONS.name,
            topics.DECISIONS.name,
            "subsidy-eligibility",
            eligibility_bench.applications,
            decided,
            ("subsidy_kafka_messages_produced_total", {"topic": topics.DECISIONS.name}),
            database=False,
            count=12000,
        ),
        "payout": Service(
            "payout",
            "payout (kafka-python loop, ledger on PostgreSQL)",
            "decisions",
            "applied",
            topics.DECISIONS.name,
            topics.PAYOUTS.name,
            payout_bench.GROUP,
            payout_bench.decisions,
            payout_bench.granted_application,
            ("subsidy_payout_decisions_total", {}),
            database=True,
            count=4000,
            # The scheduler at its production interval (the stack's 2 s is for the demo's clock).
            extra_env={"SUBSIDY_PAYOUT_SCHEDULER_INTERVAL_SECONDS": "60"},
        ),
        "intake": Service(
            "intake",
            "intake's 免申即享 proposal pass (firm facts -> proposals, on PostgreSQL)",
            "firms",
            "proposed",
            topics.FIRMS.name,
            topics.PROPOSALS.name,
            "subsidy-intake-firms",
            firm_facts,
            proposed,
            ("subsidy_intake_proposals_total", {"event": "created"}),
            database=True,
            count=2000,
        ),
    }


# --------------------------------------------------------------------------
# Replicas, the group, the samples
# --------------------------------------------------------------------------


def start_replica(stack: Any, name: str, index: int) -> Any:
    """Another process of a service the stack started, as the fault suite's
    ``replicas`` fault starts one: the same environment (consumer groups,
    database), its own gRPC and metrics ports; eligibility's own faust data
    directory too."""
    from subsidy_dev import free_port
    from subsidy_dev.stack import ServiceProcess

    upper = name.upper()
    address = f"127.0.0.1:{free_port()}"
    env = {**stack.services[name].env, f"SUBSIDY_{upper}_GRPC_ADDRESS": address}
    if name == "eligibility":
        env["SUBSIDY_ELIGIBILITY_METRICS_PORT"] = str(free_port())
        env["SUBSIDY_ELIGIBILITY_DATA_DIR"] = str(stack.var_dir / f"eligibility-{index}")
    else:
        env[f"SUBSIDY_{upper}_METRICS_ADDRESS"] = f"127.0.0.1:{free_port()}"
    replica = ServiceProcess(name, address, env, stack.var_dir / "logs" / f"{name}-{index}.log")
    replica.start()
    return replica


def metrics_address(replica: Any) -> str:
    env = replica.env
    if replica.name == "eligibility":
        return f"{env['SUBSIDY_ELIGIBILITY_METRICS_ADDRESS']}:{env['SUBSIDY_ELIGIBILITY_METRICS_PORT']}"
    return env[f"SUBSIDY_{replica.name.upper()}_METRICS_ADDRESS"]


@dataclasses.dataclass
class Member:
    member_id: str
    client_id: str
    partitions: list[int]


def _assigned(assignment: Any, topic: str) -> list[int]:
    """The partitions of ``topic`` in a member's decoded assignment (an
    object with partitions(), or its to_dict())."""
    if hasattr(assignment, "partitions"):
        return sorted(tp.partition for tp in assignment.partitions() if tp.topic == topic)
    if not isinstance(assignment, dict):
        return []  # none yet (a rebalance in progress), or not decodable
    entries = assignment.get("assigned_partitions") or assignment.get("assignment") or []
    out = []
    for entry in entries:
        name, parts = (entry["topic"], entry["partitions"]) if isinstance(entry, dict) else entry
        if name == topic:
            out.extend(parts)
    return sorted(out)


def describe(bootstrap: str, group: str, topic: str) -> tuple[str, list[Member]]:
    """The group's state and its members with their partitions of ``topic``."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-scaling", request_timeout_ms=10000)
    try:
        info = admin.describe_groups([group])[group]
    finally:
        admin.close()
    members = [
        Member(m["member_id"], m.get("client_id", ""), _assigned(m.get("member_assignment"), topic))
        for m in info.get("members") or []
    ]
    return info.get("group_state", ""), members


def partitions_of(topic: str) -> set[int]:
    """The partitions of a contract topic (subsidy/contracts/topics.py)."""
    from subsidy.contracts import topics

    return set(range({t.name: t.partitions for t in topics.ALL}[topic]))


def wait_spread(bootstrap: str, group: str, topic: str, replicas: int, timeout: float) -> tuple[str, list[Member]]:
    """Until the group is Stable with ``replicas`` members that hold every partition of ``topic`` between them."""
    partitions = partitions_of(topic)
    deadline = time.monotonic() + timeout
    while True:
        state, members = describe(bootstrap, group, topic)
        held = {p for m in members for p in m.partitions}
        if state == "Stable" and len(members) == replicas and held == partitions:
            return state, members
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"group {group} not spread over {replicas} members within {timeout:.0f}s: {state} {members}"
            )
        time.sleep(0.5)


def lagged_partitions(samples: list, group: str, topic: str) -> set[int]:
    """The partitions of ``topic`` a replica's /metrics reports lag for (what it holds)."""
    return {
        int(labels["partition"])
        for name, labels, _ in samples
        if name == "subsidy_kafka_consumer_lag" and labels.get("topic") == topic and labels.get("group") == group
    }


def wait_held(replicas: list, group: str, topic: str, timeout: float) -> tuple[list[set[int]], list]:
    """Each replica's partitions of ``topic`` from its /metrics, once they
    cover every partition (each reports lag for what it holds, refreshed every
    few seconds) or ``timeout`` passes; and the last scrape of each."""
    partitions = partitions_of(topic)
    deadline = time.monotonic() + timeout
    while True:
        time.sleep(2 * SAMPLE_S)  # at least: the last counts reach /metrics
        final = [scrape(metrics_address(r)) for r in replicas]
        held = [lagged_partitions(samples, group, topic) for samples in final]
        if set().union(*held) >= partitions or time.monotonic() > deadline:
            return held, final


def server_cpu_seconds(postmaster: int) -> float:
    """CPU seconds of PostgreSQL: the postmaster's, its live children's (the
    backends and the background processes; each is a session of its own, so
    they are found by parent) and those of the children it reaped."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(postmaster):
            total += sum(int(x) for x in fields[11:15]) / tick
        elif int(fields[1]) == postmaster:  # field 4, the parent
            total += sum(int(x) for x in fields[11:13]) / tick
    return total


def _cpu(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except OSError:
        return float("nan")


def run_queue_seconds(pid: int) -> float:
    """Seconds the process's threads have waited on a run queue: ready to
    run, no CPU free (the second field of /proc/<pid>/task/*/schedstat)."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int(stat.read_text().split()[1])
    return total / 1e9


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (every process, others' too; /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


class Sampler(threading.Thread):
    """Every SAMPLE_S: each replica's processed count (its /metrics) and CPU
    seconds, and the CPU seconds of the other processes named in ``others``.
    A count is dated at the middle of its scrape (a busy service answers
    late)."""

    def __init__(self, replicas: list, processed: tuple[str, dict[str, str]], others: dict[str, Callable[[], float]]):
        super().__init__(daemon=True)
        self.replicas, self.processed, self.others = replicas, processed, others
        self.addresses = [metrics_address(r) for r in replicas]
        #: Per replica: (when, count, CPU seconds, run-queue seconds).
        self.series: list[list[tuple[float, float, float, float]]] = [[] for _ in replicas]
        #: (when, {name: CPU seconds}) of the others.
        self.other_samples: list[tuple[float, dict[str, float]]] = []
        self.stopping = threading.Event()

    def take(self) -> None:
        for replica, address, series in zip(self.replicas, self.addresses, self.series):
            asked = time.perf_counter()
            try:
                count = metric_sum(scrape(address), self.processed[0], **self.processed[1])
            except OSError:
                continue
            pid = replica.process.pid
            series.append(((asked + time.perf_counter()) / 2, count, _cpu(pid), run_queue_seconds(pid)))
        self.other_samples.append((time.perf_counter(), {name: f() for name, f in self.others.items()}))

    def run(self) -> None:
        while not self.stopping.wait(SAMPLE_S):
            self.take()

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)
        self.take()

    def _window(self, i: int) -> tuple[int, int] | None:
        """Replica i's window in its series: the last sample at its first count
        .. the first at its final count; None if it processed nothing."""
        series = self.series[i]
        if not series or series[-1][1] == series[0][1]:
            return None
        base, final = series[0][1], series[-1][1]
        return (
            max(k for k, s in enumerate(series) if s[1] == base),
            min(k for k, s in enumerate(series) if s[1] == final),
        )

    def replica(self, i: int) -> dict:
        """Replica i's records, its window, rate, CPU and run-queue wait over it."""
        window = self._window(i)
        if window is None:
            return {"records": 0, "seconds": 0.0, "rate": 0.0, "cpu": 0.0, "waited": 0.0}
        (t0, c0, cpu0, wait0), (t1, c1, cpu1, wait1) = (self.series[i][k] for k in window)
        return {
            "records": int(c1 - c0),
            "seconds": t1 - t0,
            "rate": (c1 - c0) / (t1 - t0),
            "cpu": cpu1 - cpu0,
            "waited": wait1 - wait0,
        }

    def others_cpu(self) -> dict[str, float]:
        """The others' CPU seconds from the first replica's window start to the last one's end."""
        spans = [
            (self.series[i][w[0]][0], self.series[i][w[1]][0])
            for i in range(len(self.replicas))
            if (w := self._window(i)) is not None
        ]
        if not spans or not self.other_samples:
            return dict.fromkeys(["seconds", *self.others], float("nan"))
        start, end = min(a for a, _ in spans), max(b for _, b in spans)
        t0, first = next(((t, s) for t, s in reversed(self.other_samples) if t <= start), self.other_samples[0])
        t1, last = next(((t, s) for t, s in self.other_samples if t >= end), self.other_samples[-1])
        return {"seconds": t1 - t0, **{name: last[name] - first[name] for name in self.others}}


# --------------------------------------------------------------------------
# One run: one service, n replicas, a fresh broker
# --------------------------------------------------------------------------


def db_commits(samples: list) -> float:
    """Database transactions a service committed (its own histogram's count), any store."""
    return metric_sum(samples, "subsidy_db_transaction_duration_seconds_count", outcome="commit")


def topic_bytes(broker: Any, topic: str) -> int:
    """Bytes of the topic's log segments on the broker's disk."""
    return sum(f.stat().st_size for f in broker.kraft_dir.glob(f"{topic}-[0-9]*/*.log"))


def fresh_database(url: str, name: str) -> str:
    """A new database on the server of ``url``; its URL."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # the name is ours: service and replica count
    return url.rsplit("/", 1)[0] + "/" + name


def database_stats(url: str) -> dict[str, float]:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT tup_inserted + tup_updated + tup_deleted, pg_database_size(datname) "
            "FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return {"rows": float(row[0]), "bytes": float(row[1])}


def one_run(svc: Service, n: int, count: int, var: Path, pg: Any, timeout: float) -> dict:
    from subsidy.platform import topics as platform_topics
    from subsidy_dev.kafka import KafkaBroker
    from subsidy_dev.stack import LocalStack

    items = svc.items(count, f"S{n}{os.getpid()}{int(time.time()) % 100000}")
    wanted = {item[3] for item in items}
    env = {"SUBSIDY_LOG_LEVEL": "WARNING", **svc.extra_env}
    database = None
    if svc.database:
        database = fresh_database(pg.url, f"{svc.name}_{n}")
        env[f"SUBSIDY_{svc.name.upper()}_DATABASE_URL"] = database
    run_dir = var / f"{svc.name}-{n}"
    with contextlib.ExitStack() as cleanup:
        broker = cleanup.enter_context(KafkaBroker(run_dir / "kafka"))
        bootstrap = broker.bootstrap
        platform_topics.ensure_all(bootstrap)
        stack = cleanup.enter_context(
            LocalStack(run_dir / "stack", kafka_bootstrap=bootstrap, services=(svc.name,), extra_env={svc.name: env})
        )
        replicas = [stack.services[svc.name]]
        # Leaving the ExitStack kills what is still running (the stack stops the first).
        cleanup.callback(lambda: [r.kill() for r in replicas[1:]])
        for i in range(2, n + 1):
            replicas.append(start_replica(stack, svc.name, i))
        for replica in replicas[1:]:
            replica.wait_serving(120)
        state, before = wait_spread(bootstrap, svc.group, svc.input, n, 120)
        db_before = database_stats(database) if database else None
        in_bytes = topic_bytes(broker, svc.input)
        out_bytes = topic_bytes(broker, svc.output)
        broker_pid = broker.status()["pid"]
        others = {"broker": lambda: _cpu(broker_pid), "machine": machine_busy_seconds}
        if database:
            postmaster = pg.status()["pid"]
            others["database"] = lambda: server_cpu_seconds(postmaster)
        consumer = cleanup.enter_context(contextlib.closing(read_from_start(bootstrap, svc.output)))
        commits = -sum(db_commits(scrape(metrics_address(r))) for r in replicas)
        sampler = Sampler(replicas, svc.processed, others)
        sampler.take()
        sampler.start()
        log(f"  {n} replica(s) SERVING, group {state}; producing {count} {svc.item} to {svc.input} ...")
        prefill(bootstrap, svc.input, items)
        watched = watch(
            consumer,
            [r.process for r in replicas],
            [r.log_path for r in replicas],
            wanted,
            svc.completes,
            timeout,
            svc.done,
        )
        held, final = wait_held(replicas, svc.group, svc.input, 20)
        sampler.stop()
        per_replica = [sampler.replica(i) for i in range(n)]
        commits += sum(db_commits(samples) for samples in final)
        after_state, after = describe(bootstrap, svc.group, svc.input)
        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            exits = list(pool.map(lambda r: r.stop(60), replicas))
        committed, end = committed_vs_end(bootstrap, svc.group, svc.input)
        in_bytes = topic_bytes(broker, svc.input) - in_bytes
        out_bytes = topic_bytes(broker, svc.output) - out_bytes
        db = None
        if database and db_before:
            db_after = database_stats(database)
            db = {k: (db_after[k] - db_before[k]) / count for k in db_after}
    counted = len(watched.seen) - watched.first_count
    cpu_others = sampler.others_cpu()
    return {
        "replicas": n,
        "items": len(watched.seen),
        "seconds": watched.span,
        "rate": counted / watched.span if watched.span > 0 else float("nan"),
        "cpu_ms": 1000 * (watched.cpu_last - watched.cpu_first) / counted if counted else float("nan"),
        "per_replica": per_replica,
        "members_before": before,
        "state_after": after_state,
        "members_after": after,
        "held": held,
        "exits": exits,
        "committed": committed,
        "end": end,
        "out_records": watched.records / count,
        "in_bytes": in_bytes / count,
        "out_bytes": out_bytes / count,
        "commits": commits / count if svc.database else None,
        "db": db,
        "others_ms": {k: 1000 * v / count for k, v in cpu_others.items() if k != "seconds"},
        "busy": cpu_others["machine"] / cpu_others["seconds"],
    }


# --------------------------------------------------------------------------
# The printout
# --------------------------------------------------------------------------


def _parts(parts: list[int] | set[int]) -> str:
    return ",".join(str(p) for p in sorted(parts)) or "none"


def show(svc: Service, r: dict, one: dict) -> None:
    n = r["replicas"]
    ratio = f" = {r['rate'] / one['rate']:.2f} x one replica" if one is not r else ""
    print(
        f"  {n} replica{'s' if n > 1 else ''}: {r['items']} {svc.done} in {r['seconds']:.1f} s = "
        f"{r['rate']:,.0f} {svc.item}/s{ratio}"
    )
    # Each member of the group description, named by the replica whose /metrics holds its partitions.
    by_parts = {tuple(sorted(h)): i for i, h in enumerate(r["held"])}
    names = {}
    for m in r["members_before"]:
        i = by_parts.get(tuple(m.partitions)) if m.partitions else None
        names[m.member_id] = f"r{i + 1}" if i is not None else ("?" if m.partitions else "idle")
    print(
        "    group before the run: "
        + "; ".join(f"{names[m.member_id]} ({m.client_id}) {_parts(m.partitions)}" for m in r["members_before"])
    )
    same = sorted(tuple(m.partitions) for m in r["members_after"]) == sorted(
        tuple(m.partitions) for m in r["members_before"]
    ) and {m.member_id for m in r["members_after"]} == set(names)
    print(
        f"    group after the run: {r['state_after']}, {len(r['members_after'])} member"
        + ("s, " if len(r["members_after"]) != 1 else ", ")
        + ("the same assignment (no rebalance)" if same else "REBALANCED: " + str(r["members_after"]))
    )
    for i, p in enumerate(r["per_replica"]):
        held = _parts(r["held"][i])
        if not p["records"]:
            print(f"    r{i + 1}: partitions {held}; processed nothing")
            continue
        print(
            f"    r{i + 1}: partitions {held}; {p['records']} {svc.item} in {p['seconds']:.1f} s = {p['rate']:,.0f}/s; "
            f"CPU {p['cpu']:.1f} s ({p['cpu'] / p['seconds']:.0%} of a core, {1000 * p['cpu'] / p['records']:.2f} ms each); "
            f"its threads waited {p['waited']:.1f} s for a CPU"
        )
    print(f"    the machine: {r['busy']:.2f} of {os.cpu_count()} CPUs busy over the run (every process, others' too)")
    cpu = f"CPU {svc.name} {r['cpu_ms']:.2f} + broker {r['others_ms']['broker']:.2f}"
    if r["db"] is not None:
        cpu += f" + PostgreSQL {r['others_ms']['database']:.2f}"
    carried = (
        f"    per item: {cpu} ms; {svc.input} {r['in_bytes']:,.0f} B on disk, "
        f"{svc.output} {r['out_records']:.1f} records {r['out_bytes']:,.0f} B"
    )
    if r["db"] is not None:
        carried += (
            f"; database {r['commits']:.2f} commits, {r['db']['rows']:.1f} rows written, "
            f"{r['db']['bytes'] / 1024:.1f} KiB"
        )
    print(carried)
    print(
        f"    after SIGTERM: exit {','.join(str(x) for x in r['exits'])}; committed {r['committed']} of {r['end']} offsets"
        + ("" if r["committed"] == r["end"] else "  WARNING: committed offsets differ from the end offsets")
    )


def read_side(firms: int) -> str:
    """What intake's (and notify's) registry port costs each replica when it
    reads the firm facts from subsidy.firms.v1 (SUBSIDY_REGISTRY_SOURCE=topic):
    at start it folds every firm of the district into memory, no consumer
    group, so every replica does all of it. Timed here without Kafka:
    TopicRegistry.apply over ``firms`` records of firm_facts()."""
    import gc

    from subsidy.platform.topic_registry import TopicRegistry

    def resident_mb() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    records = [(key, value) for key, value, _, _ in firm_facts(firms, "district")]
    size = sum(len(key) + len(value) for key, value in records)
    gc.collect()
    before = resident_mb()
    registry = TopicRegistry("127.0.0.1:1")  # never started: only its fold
    cpu = time.process_time()
    for key, value in records:
        registry.apply(key, value)
    cpu = time.process_time() - cpu
    grown = resident_mb() - before  # the records read are still held: this is what the fold keeps
    return (
        f"intake's read side: {len(registry):,} firms' facts ({size / 1e6:.1f} MB of keys and values) folded by "
        f"TopicRegistry in {cpu:.2f} s CPU ({1e6 * cpu / firms:.0f} µs each), resident +{grown:.0f} MB; "
        "every intake and notify replica does this at start"
    )


def summary(done: list[tuple[Service, list[dict]]]) -> None:
    print("summary: items/s by replicas (x one replica); CPU ms per item: all replicas + broker (+ PostgreSQL)")
    for svc, results in done:
        cells = []
        for r in results:
            cpu = f"{r['cpu_ms']:.2f} + {r['others_ms']['broker']:.2f}"
            if "database" in r["others_ms"]:
                cpu += f" + {r['others_ms']['database']:.2f}"
            speedup = f" ({r['rate'] / results[0]['rate']:.2f}x)" if r is not results[0] else ""
            cells.append(f"{r['replicas']}: {r['rate']:,.0f}/s{speedup}, {cpu} ms")
        print(f"  {svc.name:<12} {svc.item + ' ' + svc.done:<22} " + ";  ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=2, help="replicas of the second run (default 2)")
    parser.add_argument(
        "--count",
        type=int,
        default=None,
        help="items per run, every service (default: eligibility 12000, payout 4000, intake 2000; --quick a quarter)",
    )
    parser.add_argument(
        "--services", default="eligibility,payout,intake", help="which, comma-separated (default all three)"
    )
    parser.add_argument("--firms", type=int, default=50_000, help="the district's firms, for the read side (50000)")
    parser.add_argument("--timeout", type=float, default=None, help="bound of one run's items (s)")
    parser.add_argument("--quick", action="store_true", help="a quarter of the items (about 3 minutes in all)")
    args = parser.parse_args()
    timeout = args.timeout or (150.0 if args.quick else 300.0)
    known = services()
    chosen = [known[name.strip()] for name in args.services.split(",") if name.strip()]
    counts = sorted({1, max(1, args.replicas)})
    print(f"machine: {machine()}")
    print(
        f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}  mode: {'--quick' if args.quick else 'full'}  "
        f"replicas {' and '.join(map(str, counts))}"
    )
    print(read_side(args.firms), flush=True)
    from subsidy_dev.postgres import PostgresServer

    with tempfile.TemporaryDirectory(prefix="subsidy-bench-scaling-") as tmp, contextlib.ExitStack() as cleanup:
        var = Path(tmp)
        pg = None
        if any(svc.database for svc in chosen):
            pg = PostgresServer(var / "postgres", durable=True)
            cleanup.callback(pg.destroy)
            cleanup.enter_context(pg)
        done = []
        for svc in chosen:
            count = args.count or (svc.count // 4 if args.quick else svc.count)
            print(f"{svc.title}: {svc.input} -> {svc.output}, group {svc.group}, {count} {svc.item}", flush=True)
            results: list[dict] = []
            for n in counts:
                log(f"[{svc.name}] {n} replica(s) on a fresh broker ...")
                results.append(one_run(svc, n, count, var, pg, timeout))
                show(svc, results[-1], results[0])
                sys.stdout.flush()
            done.append((svc, results))
    summary(done)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
