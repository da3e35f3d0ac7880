"""No tests here: the fault-injection harness.

- ``FaultStack``: a Kafka broker and a PostgreSQL server of its own (in a temp
  dir, so they can be restarted and killed), the five services as real
  processes (``LocalStack``) with intake, payout, notify and review on that
  one PostgreSQL database, a real SMTP server and webhook receiver, and an
  extra payout replica on demand. Each service reaches Kafka and PostgreSQL
  through Toxiproxy proxies of its own (subsidy_dev/toxiproxy.py): the broker
  has one listener per service, advertised at that service's proxy, so the
  metadata a client is given keeps it behind its proxy.
- ``workload(seed)``: the demo applications rewritten onto firms of their own
  per seed (distinct credit codes and application ids), so every seed has its
  own caps and its own expected ledger from ``subsidy simulate``.
- ``Schedule``: the seeded fault schedule (random.Random(seed)): which fault,
  on which service, at which point of the load.
- ``check(...)``: the promises, read from Kafka and the databases; returns the
  list of what does not hold (empty: all hold).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import random
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import psycopg
from google.protobuf import json_format
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import OffsetSpec

from subsidy.contracts import topics
from subsidy.contracts.calculator import Simulation
from subsidy.core.credit_code import complete
from subsidy.core.policy import load_policy
from subsidy.platform.consumer import DEFAULT_SESSION_TIMEOUT_MS
from subsidy.services.notify.model import notification_id
from subsidy.v1 import application_pb2, decision_pb2, events_pb2, intake_pb2, intake_pb2_grpc, payout_pb2
from subsidy_dev import free_port, tail
from subsidy_dev.finance import confirm_payments
from subsidy_dev.kafka import ENV_BOOTSTRAP, KafkaBroker
from subsidy_dev.platform_fake import FakeDataPlatform
from subsidy_dev.postgres import PostgresServer
from subsidy_dev.stack import LocalStack, ServiceProcess
from subsidy_dev.toxiproxy import Proxy, Toxiproxy

from . import hostile

ROOT = Path(__file__).resolve().parents[2]
DEMO = [
    json.loads(line)
    for line in (ROOT / "demo" / "applications.jsonl").read_text(encoding="utf-8").splitlines()
    if line.strip()
]
REGISTRY = json.loads((ROOT / "demo" / "registry.json").read_text(encoding="utf-8"))
WEBHOOK_SECRET = "fault-webhook-secret"

# Session timeouts the faults must outlast (SIGSTOP): eligibility and payout
# are configurable, intake's projections and notify use the consumer loop's default.
_LOOP_SESSION_S = DEFAULT_SESSION_TIMEOUT_MS / 1000
SESSION_TIMEOUT_S = {
    "eligibility": 6.0,
    "payout": 6.0,
    "intake": _LOOP_SESSION_S,
    "notify": _LOOP_SESSION_S,
    "review": _LOOP_SESSION_S,
    "registry_sync": _LOOP_SESSION_S,
}
# Consumer groups per service, and the topics each group reads.
GROUPS = {
    "eligibility": {"subsidy-eligibility": [topics.APPLICATIONS.name]},
    "payout": {
        "subsidy-payout": [topics.DECISIONS.name],
        "subsidy-payout-payments": [topics.PAYMENTS.name],
        "subsidy-payout-notices": [topics.NOTICES.name],
        "subsidy-payout-firms": [topics.FIRMS.name],
    },
    "notify": {
        "subsidy-notify": [
            topics.DECISIONS.name,
            topics.PAYOUTS.name,
            topics.NOTICES.name,
            topics.REVIEWS.name,
            topics.PROPOSALS.name,
        ]
    },
    "intake": {
        "subsidy-intake-projection": [topics.DECISIONS.name],
        "subsidy-intake-payouts": [topics.PAYOUTS.name],
        "subsidy-intake-firms": [topics.FIRMS.name],
    },
    "review": {
        "subsidy-review": [topics.DECISIONS.name],
        "subsidy-review-payouts": [topics.PAYOUTS.name],
        "subsidy-review-applications": [topics.APPLICATIONS.name],
    },
    "registry_sync": {},  # a producer: the data platform's feed in, subsidy.firms.v1 out
}
SERVICES = ("intake", "eligibility", "payout", "notify", "review", "registry_sync")
#: What pause, rewind and the network faults pick from: registry-sync, a
#: producer with no consumer group, has faults of its own (the feed's).
TARGETS = ("intake", "eligibility", "payout", "notify", "review")
#: The services with a PostgreSQL connection (slow-database faults).
DB_SERVICES = ("intake", "payout", "notify", "review")
#: Health turns NOT_SERVING when a consumer has not reached the broker for
#: this long (every service's SUBSIDY_<SVC>_STALL_SECONDS here): a partition
#: longer than it must show in health.
STALL_S = 20.0
# The stack's dev clock (review, intake, registry-sync) starts on the first
# working Monday of 2026: each seed's public notice moves it past a 5-working-day
# period, about 7 days, and the pinned chinesecalendar (1.11.0) knows working
# days up to 2026 only. Starting at the demo's 2026-09-25, the soak's 14th seed
# published a notice whose period ran into 2027 and was refused; from January
# 49 seeds fit in the year.
FAULT_CLOCK_START = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
# The payout clock: before every due date, so no TrancheDue races the checks
# (review runs on the stack's dev clock, which the story moves past the notice).
TODAY = "2023-01-02"


def log(msg: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.3, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout:.0f}s (last: {last!r})")


# -- the workload ---------------------------------------------------------------


def synthetic_code(seed: int, index: int) -> str:
    """A valid credit code of firm ``index`` of ``seed`` (Songjiang division)."""
    body = f"F{seed % 100000:05d}{index:02d}"
    return complete("91310117" + body)


@dataclasses.dataclass
class Workload:
    seed: int
    applications: list[dict]  # in submission order (duplicates kept)
    firms: dict[str, str]  # synthetic credit code -> original demo credit code
    bad: list[dict]  # applications intake must refuse (nothing stored)

    @property
    def application_ids(self) -> list[str]:
        return list(dict.fromkeys(a["application_id"] for a in self.applications))

    def expected(self) -> dict[str, dict]:
        """`subsidy simulate` on the same applications, in the same order."""
        simulation = Simulation(load_policy())
        out: dict[str, dict] = {}
        for app in self.applications:
            out.setdefault(app["application_id"], simulation.apply(simulation.decide(app)))
        return out


def workload(seed: int) -> Workload:
    originals = list(dict.fromkeys(a["firm"]["credit_code"] for a in DEMO))
    mapping = {orig: synthetic_code(seed, i) for i, orig in enumerate(originals)}
    apps = []
    for app in DEMO:
        new = json.loads(json.dumps(app))
        new["application_id"] = f"FLT{seed}-{app['application_id']}"
        new["firm"]["credit_code"] = mapping[app["firm"]["credit_code"]]
        apps.append(new)
    rng = random.Random(seed)
    bad = []
    for n in range(3):
        b = json.loads(json.dumps(rng.choice(apps)))
        b["application_id"] = f"FLT{seed}-BAD-{n}"
        kind = rng.choice(["date", "code", "amount"])
        if kind == "date":
            b["submitted_on"] = "2024-02-30"
        elif kind == "code":
            b["firm"]["credit_code"] = b["firm"]["credit_code"][:-1] + (
                "0" if b["firm"]["credit_code"][-1] != "0" else "1"
            )
        else:
            claim = next(k for k in b if k not in ("application_id", "submitted_on", "firm", "decided_on"))
            fen = next((k for k, v in b[claim].items() if k.endswith("_fen") and isinstance(v, int)), None)
            if fen is None:
                b["submitted_on"] = "2024-13-01"
            else:
                b[claim][fen] = -1
        bad.append(b)
    return Workload(seed, apps, {v: k for k, v in mapping.items()}, bad)


def registry_for(seeds: list[int], webhook_url: Callable[[str], str]) -> dict:
    """demo/registry.json plus, for every seed, a copy of each demo firm under
    its synthetic credit code, with contacts at the test's receivers."""
    doc = json.loads(json.dumps(REGISTRY))
    by_code = {f["credit_code"]: f for f in doc["firms"]}
    originals = list(dict.fromkeys(a["firm"]["credit_code"] for a in DEMO))
    for seed in seeds:
        for i, orig in enumerate(originals):
            firm = json.loads(json.dumps(by_code[orig]))
            code = synthetic_code(seed, i)
            firm["credit_code"] = code
            firm["name"] = f"{firm['name']}（故障测试{seed}-{i}）"
            firm["contacts"] = {
                "email": f"f{seed}-{i}@example.cn",
                "phone": f"+86-21-5555-{i:04d}",
                "webhook_url": webhook_url(f"/hooks/{code}"),
            }
            doc["firms"].append(firm)
    return doc


# -- the stack ------------------------------------------------------------------


class FaultStack:
    def __init__(self, var: Path, seeds: list[int], smtp: Any, webhook: Any, sms: Any = None):
        self.var = var
        self.smtp = smtp
        self.webhook = webhook
        self.sms = sms
        self.toxiproxy = Toxiproxy(var / "toxiproxy")
        # One broker listener per service, advertised at the service's proxy.
        port, controller = free_port(), free_port()
        self._listener_ports = {svc: free_port() for svc in SERVICES}
        self._proxy_ports = {svc: free_port() for svc in SERVICES}
        names = {svc: f"SVC_{svc.upper()}" for svc in SERVICES}
        self.broker = KafkaBroker(
            var / "kafka",
            port=port,
            controller_port=controller,
            extra_properties={
                "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller},"
                + ",".join(f"{names[s]}://127.0.0.1:{self._listener_ports[s]}" for s in SERVICES),
                "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},"
                + ",".join(f"{names[s]}://127.0.0.1:{self._proxy_ports[s]}" for s in SERVICES),
                "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
                + ",".join(f"{names[s]}:PLAINTEXT" for s in SERVICES),
            },
        )
        self.postgres = PostgresServer(var / "postgres")
        self.kafka_links: dict[str, Proxy] = {}
        self.db_links: dict[str, Proxy] = {}
        #: The data platform's test double (the stack's, in this process): it outlives every fault of the services.
        self.platform: FakeDataPlatform | None = None
        registry = registry_for(seeds, webhook.url)
        self.registry_path = var / "registry.json"
        self.registry_path.write_text(json.dumps(registry, ensure_ascii=False), encoding="utf-8")
        self.stack: LocalStack | None = None
        self.replica: ServiceProcess | None = None
        self.kills: Counter = Counter()
        #: What can make a service's consumers read records again, per service
        #: ("broker": every service): a full replay (rewind), and the ends of a
        #: member with progress not yet committed (kill -9, a pause past the
        #: session timeout, a broker restart). Each since the hostile records
        #: were placed may dead-letter them once more, under the same id.
        self.rereads: Counter = Counter()
        self.rereads_at_hostile: Counter = Counter()
        self.unexpected_exits: list[tuple[str, int | None]] = []
        #: A service whose health did not tell the truth during or after a network fault.
        self.health_lies: list[str] = []

    # lifecycle
    def start(self) -> FaultStack:
        self.toxiproxy.start()
        for svc in SERVICES:
            self.kafka_links[svc] = self.toxiproxy.proxy(
                f"kafka-{svc}", f"127.0.0.1:{self._listener_ports[svc]}", self._proxy_ports[svc]
            )
        bootstrap = self.broker.start()
        url = self.postgres.start()
        urls = {}
        for svc in DB_SERVICES:
            self.db_links[svc] = self.toxiproxy.proxy(f"postgres-{svc}", f"127.0.0.1:{self.postgres.port}")
            urls[svc] = url.replace(f":{self.postgres.port}/", f":{self.db_links[svc].port}/")
        common = {"SUBSIDY_REGISTRY_FILE": str(self.registry_path), "SUBSIDY_LOG_LEVEL": "INFO"}
        extra = {
            "intake": {**common, "SUBSIDY_INTAKE_DATABASE_URL": urls["intake"]},
            "eligibility": {"SUBSIDY_ELIGIBILITY_SESSION_TIMEOUT_SECONDS": str(SESSION_TIMEOUT_S["eligibility"])},
            "payout": {
                **common,
                "SUBSIDY_PAYOUT_DATABASE_URL": urls["payout"],
                "SUBSIDY_PAYOUT_TODAY": TODAY,
                "SUBSIDY_DEV_CLOCK_FILE": "",  # the fixed day above, not the stack's clock
                "SUBSIDY_PAYOUT_KAFKA_SESSION_TIMEOUT_MS": str(int(SESSION_TIMEOUT_S["payout"] * 1000)),
                "SUBSIDY_PAYOUT_SCHEDULER_INTERVAL_SECONDS": "5",
            },
            "notify": {
                **common,
                "SUBSIDY_NOTIFY_DATABASE_URL": urls["notify"],
                "SUBSIDY_NOTIFY_SMTP_URL": self.smtp.url,
                "SUBSIDY_NOTIFY_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "SUBSIDY_NOTIFY_RETRY_MAX_BACKOFF_SECONDS": "2",
                "SUBSIDY_NOTIFY_ATTEMPTS": "8",
                **({"SUBSIDY_NOTIFY_SMS_GATEWAY_URL": self.sms.url("/sms")} if self.sms is not None else {}),
            },
            "review": {**common, "SUBSIDY_REVIEW_DATABASE_URL": urls["review"]},
            "registry_sync": {"SUBSIDY_REGISTRY_SYNC_DATABASE_URL": url},
        }
        for svc in SERVICES:
            extra[svc][ENV_BOOTSTRAP] = self.kafka_links[svc].listen
            extra[svc][f"SUBSIDY_{svc.upper()}_STALL_SECONDS"] = str(int(STALL_S))
        # The data platform's test double serves the seeds' firms too (started by the stack).
        self.stack = LocalStack(
            self.var / "stack",
            kafka_bootstrap=bootstrap,
            services=SERVICES,
            extra_env=extra,
            platform_registry=self.registry_path,
            clock_start=FAULT_CLOCK_START,
        )
        self.stack.start()
        self.platform = self.stack.platform
        return self

    def stop(self) -> None:
        try:
            if self.replica is not None:
                self.replica.kill()
            for service in self.stack.services.values() if self.stack else ():
                if service.process is not None and service.process.poll() is None:
                    with_cont(service)
            if self.stack is not None:
                self.stack.stop()
        finally:
            self.toxiproxy.stop()
            self.broker.stop()
            self.postgres.destroy()

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    @property
    def db_url(self) -> str:
        return self.postgres.url

    def service(self, name: str) -> ServiceProcess:
        return self.stack.services[name]

    def ensure_running(self) -> None:
        """Restart any service that died (and say so: a death nobody caused is a finding)."""
        for name, svc in self.stack.services.items():
            with_cont(svc)
            if svc.process is None or svc.process.poll() is not None:
                code = svc.process.returncode if svc.process else None
                log(f"!! {name} was found dead (exit {code}); restarting. Log tail:\n{tail(svc.log_path, 15)}")
                self.unexpected_exits.append((name, code))
                svc.start()
            svc.wait_serving(120)

    def logs(self) -> str:
        return "\n".join(f"--- {n} ---\n{tail(s.log_path, 6)}" for n, s in self.stack.services.items())

    def dump_stacks(self) -> None:
        """Ask every live service for its threads' stacks (SIGUSR1, written to
        its log): when a promise is not kept in time, where each one waits."""
        for name, svc in self.stack.services.items():
            if svc.process is not None and svc.process.poll() is None:
                try:
                    svc.process.send_signal(signal.SIGUSR1)
                except OSError as exc:
                    log(f"could not ask {name} for its stacks: {exc}")
        time.sleep(1)
        log("services' stacks written to their logs under " + str(self.var / "stack" / "logs"))

    # -- faults --------------------------------------------------------------
    def kill9(self, name: str) -> None:
        svc = self.service(name)
        with_cont(svc)
        svc.kill()
        self.kills[name] += 1
        self.rereads[name] += 1
        svc.start()
        svc.wait_serving(120)

    def broker_restart(self, hard: bool) -> None:
        self.rereads["broker"] += 1
        if hard:
            self.broker.kill()
            self.broker.start()
        else:
            self.broker.restart()

    def database_restart(self, hard: bool) -> None:
        if hard:
            self.postgres.kill()
            self.postgres.start()
        else:
            self.postgres.restart()

    def pause(self, name: str, seconds: float) -> None:
        """SIGSTOP past the session timeout (the group rebalances without it), then SIGCONT."""
        svc = self.service(name)
        self.rereads[name] += 1
        os.kill(svc.process.pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)  # the fault itself: the process must stay frozen this long
        finally:
            os.kill(svc.process.pid, signal.SIGCONT)

    # -- the data platform's feed ------------------------------------------------------
    def platform_down(self, seconds: float) -> None:
        """Every feed request answers 503 for ``seconds``: registry-sync retries."""
        self.platform.down()
        try:
            time.sleep(seconds)  # the fault itself
        finally:
            self.platform.up()

    def cursor_reset(self) -> None:
        """The platform forgets its history: registry-sync's cursor is answered
        410 Gone, and it resynchronises from a snapshot, doubling nothing."""
        self.platform.forget_history()

    # -- network faults (Toxiproxy) ------------------------------------------------
    def network(self, kind: str, name: str, hold: float) -> None:
        """Degrade ``name``'s link for ``hold`` seconds, then heal it:

        - ``latency``: 150–400 ms each way with jitter, to Kafka;
        - ``bandwidth``: 32 KB/s each way, to Kafka;
        - ``reset``: every connection to Kafka reset after 200 ms;
        - ``halfopen``: data to Kafka stops, connections stay open;
        - ``partition``: cut off from Kafka (connections closed, new ones
          refused), longer than its session timeout and the stall limit; health
          must turn NOT_SERVING meanwhile (the truth), SERVING after;
        - ``slowdb``: 300–800 ms each way to PostgreSQL.
        """
        link = self.db_links[name] if kind == "slowdb" else self.kafka_links[name]
        spread = int(hold * 1000) % 251  # seeded through hold: the same schedule, the same toxics
        if kind == "latency":
            link.latency(150 + spread, 50 + spread // 5)
        elif kind == "bandwidth":
            link.bandwidth(32)
        elif kind == "reset":
            link.reset_peer(200)
        elif kind == "halfopen":
            link.timeout(0)
        elif kind == "slowdb":
            link.latency(300 + 2 * spread, 100)
        elif kind == "partition":
            link.disable()
        else:  # pragma: no cover
            raise ValueError(kind)
        try:
            if kind == "partition":
                self._health_turns(name, serving=False, within=hold)
            else:
                time.sleep(hold)  # the fault itself: the link stays degraded this long
        finally:
            link.heal()
        if kind == "partition":
            self._health_turns(name, serving=True, within=120)

    def _health_turns(self, name: str, serving: bool, within: float) -> None:
        """Poll ``name``'s health for ``within`` seconds: it must reach
        ``serving`` (a partition is over only after ``within`` either way)."""
        svc = self.service(name)
        started = time.monotonic()
        seen = False
        while time.monotonic() - started < within:
            if svc.serving() == serving:
                seen = True
                if serving:
                    return
            time.sleep(0.5)
        if not seen:
            self.health_lies.append(f"{name} never {'SERVING' if serving else 'NOT_SERVING'} within {within:.0f}s")

    def hostile_placed(self) -> None:
        """The hostile records are on the topics: what makes a consumer read again from now on counts."""
        self.rereads_at_hostile = Counter(self.rereads)

    def rereads_since_hostile(self, service: str) -> int:
        """How many times ``service``'s consumers may have read the hostile records again since they were placed."""
        since = self.rereads - self.rereads_at_hostile
        return since[service] + since["broker"]

    def rewind(self, name: str) -> None:
        """Stop the service, reset its groups to the earliest offsets, start it: a full replay."""
        svc = self.service(name)
        status = svc.stop(60)
        if status not in (0, None):
            log(f"!! {name} exited {status} on SIGTERM before the rewind")
            self.unexpected_exits.append((name, status))
        for group, group_topics in GROUPS[name].items():
            reset_group(self.bootstrap, group, group_topics)
        self.rereads[name] += 1
        svc.start()
        svc.wait_serving(120)

    def start_replica(self) -> ServiceProcess:
        base = self.service("payout")
        address = f"127.0.0.1:{free_port()}"
        env = {
            **base.env,
            "SUBSIDY_PAYOUT_GRPC_ADDRESS": address,
            "SUBSIDY_PAYOUT_METRICS_ADDRESS": f"127.0.0.1:{free_port()}",
        }
        self.replica = ServiceProcess("payout", address, env, self.var / "stack" / "logs" / "payout-replica.log")
        self.replica.start()
        self.replica.wait_serving(120)
        return self.replica

    def stop_replica(self, hard: bool) -> None:
        if self.replica is None:
            return
        if hard:
            self.replica.kill()
            self.kills["payout-replica"] += 1
        else:
            status = self.replica.stop(60)
            if status not in (0, None):
                self.unexpected_exits.append(("payout-replica", status))
        self.replica = None


def with_cont(svc: ServiceProcess) -> None:
    """Never leave a process stopped (a failed test must not leave SIGSTOPped children)."""
    if svc.process is not None and svc.process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(svc.process.pid, signal.SIGCONT)


def reset_group(bootstrap: str, group: str, group_topics: list[str], timeout: float = 60.0) -> None:
    """Commit the earliest offset of every partition of ``group_topics`` for ``group``
    (kafka-python's KafkaAdminClient.reset_group_offsets), once the group is empty."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fault-rewind", request_timeout_ms=10000)
    try:

        def empty() -> bool:
            described = admin.describe_groups([group])
            info = described[group] if isinstance(described, dict) else described[0]
            state = info.get("group_state") if isinstance(info, dict) else getattr(info, "state", None)
            members = info.get("members") if isinstance(info, dict) else getattr(info, "members", [])
            return state in ("Empty", "Dead", "") or not members

        wait_until(empty, timeout, 0.5, f"group {group} empty")
        parts = [TopicPartition(t, p) for t in group_topics for p in range(_partitions(t))]
        result = admin.reset_group_offsets(group, {tp: OffsetSpec.EARLIEST for tp in parts})
        errors = {}
        for tp, outcome in (result or {}).items():
            err = outcome.get("error") if isinstance(outcome, dict) else outcome
            if err is not None and getattr(err, "__name__", "") != "NoError":
                errors[tp] = err
        if errors:
            raise AssertionError(f"reset of {group} failed: {errors}")
        committed = admin.list_group_offsets({group: parts})[group]
        assert all(committed[tp].offset == 0 for tp in parts if tp in committed), committed
    finally:
        admin.close()


def _partitions(topic: str) -> int:
    return {t.name: t.partitions for t in topics.ALL}[topic]


# -- load -------------------------------------------------------------------------


class Submitter(threading.Thread):
    """Submits applications one after the other (so each firm's order is the
    submission order), retrying each until intake answers (it may be down)."""

    def __init__(self, address: str, apps: list[dict], delays: list[float], bad: list[dict] = ()):
        super().__init__(daemon=True)
        self.address, self.apps, self.delays, self.bad = address, apps, delays, list(bad)
        self.results: dict[str, str] = {}
        self.refused: dict[str, str] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with grpc.insecure_channel(self.address) as channel:
                stub = intake_pb2_grpc.IntakeServiceStub(channel)
                for app, delay in zip(self.apps, self.delays):
                    time.sleep(delay)  # pacing of the load (seeded), not a wait for a condition
                    self.results[app["application_id"]] = submit(stub, app)
                for app in self.bad:
                    self.refused[app["application_id"]] = submit(stub, app, expect_refusal=True)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def submit(stub: Any, app: dict, expect_refusal: bool = False, timeout: float = 180.0) -> str:
    message = json_format.ParseDict(app, application_pb2.Application())
    deadline = time.monotonic() + timeout
    backoff = 0.2
    while True:
        try:
            reply = stub.SubmitApplication(intake_pb2.SubmitApplicationRequest(application=message), timeout=10)
            return "duplicate" if reply.duplicate else "accepted"
        except grpc.RpcError as exc:
            code = exc.code()
            if (
                code
                in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.INTERNAL,
                    grpc.StatusCode.UNKNOWN,
                    grpc.StatusCode.CANCELLED,
                )
                and time.monotonic() < deadline
            ):
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            if expect_refusal:
                return code.name
            raise AssertionError(f"{app['application_id']}: {code.name}: {exc.details()}") from exc


def produce_payments(bootstrap: str, payments: list[payout_pb2.PaymentConfirmed]) -> None:
    confirm_payments(bootstrap, payments, "/tests/faults")


#: Where hostile records go (issue 17): every topic a service consumes.
HOSTILE_TOPICS = (
    topics.APPLICATIONS,
    topics.DECISIONS,
    topics.PAYOUTS,
    topics.PAYMENTS,
    topics.NOTICES,
    topics.FIRMS,
    topics.PROPOSALS,
)
#: Headers a hostile producer might send: a forged CloudEvents id with a
#: line break, a traceparent with control characters, a name nobody expects.
HOSTILE_HEADERS = [
    ("ce_id", b"x\r\nBcc: evil@example.com"),
    ("ce_traceparent", b"00-\x00\x1b[31m-zz"),
    ("x-\u2028", "\u2028\u0085".encode()),
]


def hostile_values() -> list[bytes | None]:
    """Values no consumer can read: not protobuf (a varint longer than ten
    bytes), a protobuf cut short, the same near the broker's 1 MiB limit,
    and a tombstone."""
    return [b"\xff" * 64, b"\x0a\x05ab", b"\xff" * 900_000, None]


def produce_hostile(bootstrap: str, seed: int) -> list[tuple[str, int, int]]:
    """Every hostile value on every consumed topic, keyed ``hostile-<seed>-<n>``;
    returns (topic, partition, offset) of each."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=10, max_request_size=1_000_000)
    placed = []
    try:
        n = 0
        for spec in HOSTILE_TOPICS:
            for value in hostile_values():
                n += 1
                meta = producer.send(
                    spec.name, key=f"hostile-{seed}-{n}".encode(), value=value, headers=HOSTILE_HEADERS
                ).get(timeout=60)
                placed.append((spec.name, meta.partition, meta.offset))
    finally:
        producer.close(timeout=10)
    # Protobuf of the wrong type, hostile ids in valid events (tests/faults/hostile.py).
    wl = workload(seed)
    firms = list(wl.firms)
    return placed + hostile.produce(bootstrap, seed, wl.applications[0], firms[0], firms[1])


def feed_problems(fs: FaultStack, wl: Workload) -> list[str]:
    """The data platform's feed under fault (issue 13): each of the seed's
    firms on subsidy.firms.v1 as the platform has it — the latest record's
    feed_sequence is the firm's latest change and its 一、适用范围 flags agree
    — and no proposal created twice."""
    from subsidy.v1 import firm_facts_pb2, proposal_pb2

    problems: list[str] = []
    state = fs.platform.state()
    latest: dict[str, Any] = {}
    for r in read_topic(fs.bootstrap, topics.FIRMS.name):
        code = r.key.decode() if r.key else ""
        if code not in wl.firms or not r.value:
            continue
        facts = firm_facts_pb2.FirmFacts.FromString(r.value)
        if code not in latest or facts.feed_sequence >= latest[code].feed_sequence:
            latest[code] = facts
    for code in wl.firms:
        want = fs.platform.latest_sequence(code)
        got = latest.get(code)
        if got is None:
            problems.append(f"feed: no facts on {topics.FIRMS.name} for {code}")
            continue
        if got.feed_sequence != want:
            problems.append(f"feed: {code} at sequence {got.feed_sequence} on the topic, the platform's is {want}")
        flags = (got.registered_in_district, got.tax_registered_in_district)
        platform = state.get(code, {})
        if flags != (platform.get("registered_in_district"), platform.get("tax_registered_in_district")):
            problems.append(f"feed: {code} registration {flags} on the topic, the platform says otherwise")
    # One proposal per fact: (firm, clause, the fact's reference) names at
    # most one proposal id, however often the fact was reported (a cursor
    # reset re-reads every change).
    ids: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for r in read_topic(fs.bootstrap, topics.PROPOSALS.name):
        if r.key and r.key.decode() in wl.firms and r.value:
            event = proposal_pb2.ProposalEvent.FromString(r.value)
            if event.WhichOneof("event") == "created":
                p = event.created.proposal
                ids[(p.credit_code, p.clause, p.fact_reference)].add(p.proposal_id)
    problems += [f"feed: one fact {fact} made proposals {sorted(made)}" for fact, made in ids.items() if len(made) > 1]
    return problems


def readers_of(topic: str) -> int:
    """How many consumer groups read ``topic``: each must dead-letter a record it cannot read."""
    return sum(topic in group_topics for groups in GROUPS.values() for group_topics in groups.values())


def hostile_problems(fs: FaultStack, seed: int, placed: list[tuple[str, int, int]]) -> list[str]:
    """Each hostile record dead-lettered once by every group that reads its
    topic, so none stalled a partition (lag 0 is checked besides)."""
    problems = hostile.problems(
        [p for p in placed if isinstance(p, hostile.Placed)],
        lambda t: read_topic(fs.bootstrap, t),
        passes=lambda consumer: 1 + fs.rereads_since_hostile(consumer.split("-")[0]),
    )
    placed = [p for p in placed if not isinstance(p, hostile.Placed)]
    by_record: dict[tuple[str, int, int], set[str]] = defaultdict(set)
    prefix = f"hostile-{seed}-".encode()
    for dlq in topics.ALL:
        if not dlq.name.endswith(".dlq"):
            continue
        for r in read_topic(fs.bootstrap, dlq.name):
            if r.key and r.key.startswith(prefix[:256]):
                letter = events_pb2.DeadLetter.FromString(r.value)
                by_record[(letter.source_topic, letter.source_partition, letter.source_offset)].add(letter.consumer)
    for topic, partition, offset in placed:
        consumers = by_record.get((topic, partition, offset), set())
        if len(consumers) != readers_of(topic):
            problems.append(
                f"hostile record {topic}/{partition}/{offset} dead-lettered by {sorted(consumers)}, "
                f"want {readers_of(topic)} consumers"
            )
    return problems


# -- reading ---------------------------------------------------------------------


def read_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> list:
    """Every record of ``topic`` from the beginning up to its end offsets now."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=15000)
    try:
        parts = [TopicPartition(topic, p) for p in range(_partitions(topic))]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fault-read", request_timeout_ms=10000)
        try:
            end = end_offsets(admin, parts)
        finally:
            admin.close()
        records = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(p) < end[p] for p in parts):
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end within {timeout}s")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(r for r in batch if r.offset < end[TopicPartition(r.topic, r.partition)])
        return records
    finally:
        consumer.close()


def end_offsets(admin: KafkaAdminClient, parts: list[TopicPartition]) -> dict[TopicPartition, int]:
    found = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in parts})
    return {tp: found[tp].offset for tp in parts}


def consumer_lag(bootstrap: str) -> dict[str, int]:
    """Per group: Σ (end offset − committed offset) over its topics' partitions
    (kafka-python's KafkaAdminClient: list_group_offsets, list_partition_offsets)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fault-lag", request_timeout_ms=10000)
    try:
        lag = {}
        for groups in GROUPS.values():
            for group, group_topics in groups.items():
                parts = [TopicPartition(t, p) for t in group_topics for p in range(_partitions(t))]
                end = end_offsets(admin, parts)
                committed = admin.list_group_offsets({group: parts}).get(group, {})
                total = 0
                for tp in parts:
                    c = committed.get(tp)
                    offset = c.offset if c is not None and c.offset is not None and c.offset >= 0 else 0
                    total += max(0, end[tp] - offset)
                lag[group] = total
        return lag
    finally:
        admin.close()


# -- the checker -----------------------------------------------------------------


@dataclasses.dataclass
class Observed:
    problems: list[str]
    notes: list[str]


def check(
    fs: FaultStack,
    wl: Workload,
    submitted: dict[str, str],
    refused: dict[str, str],
    payments: list[payout_pb2.PaymentConfirmed],
    allowed_resends: int,
    hostile: list[tuple[str, int, int]] = (),
    cancelled: dict[str, str] = None,
) -> Observed:
    problems: list[str] = hostile_problems(fs, wl.seed, list(hostile)) if hostile else []
    if fs.platform is not None:
        problems += feed_problems(fs, wl)
    notes: list[str] = []
    firms = set(wl.firms)
    accepted = [i for i in wl.application_ids if submitted.get(i) in ("accepted", "duplicate")]
    if len(accepted) != len(wl.application_ids):
        problems.append(f"not every application was accepted: {sorted(set(wl.application_ids) - set(accepted))}")
    expected = wl.expected()

    # Kafka: decisions and payout events of this seed's firms
    decisions = [r for r in read_topic(fs.bootstrap, topics.DECISIONS.name) if r.key and r.key.decode() in firms]
    decision_ids: dict[str, set] = defaultdict(set)
    held: set[str] = set()
    reviewed_amounts: dict[str, int] = {}
    for r in decisions:
        d = decision_pb2.Decision.FromString(r.value)
        decision_ids[d.application_id].add(d.decision_id)
        if d.review_required:
            held.add(d.application_id)
        if d.HasField("review"):
            reviewed_amounts[d.application_id] = d.max_award_fen
    for app_id in accepted:
        # One computed decision; one reviewed decision besides it when people had to look.
        want = 2 if app_id in held else 1
        if len(decision_ids[app_id]) != want:
            problems.append(f"decisions on Kafka for {app_id}: {sorted(decision_ids[app_id])} (want {want} ids)")
        if app_id in held and not any("/review:" in i for i in decision_ids[app_id]):
            problems.append(f"{app_id} needed review; no reviewed decision on Kafka")
    with psycopg.connect(fs.db_url, connect_timeout=5) as conn:
        q = lambda sql, *p: conn.execute(sql, p).fetchall()  # noqa: E731
        like = f"FLT{wl.seed}-%"
        states = dict(q("SELECT application_id, state FROM intake_applications WHERE application_id LIKE %s", like))
        for app_id in refused:
            if app_id in states:
                problems.append(f"intake stored refused application {app_id} ({refused[app_id]})")
        for app_id, code in refused.items():
            if code != "INVALID_ARGUMENT":
                problems.append(f"intake answered {code} to invalid {app_id}, not INVALID_ARGUMENT")
        pending = q("SELECT count(*) FROM intake_outbox WHERE published_at IS NULL")[0][0]
        if pending:
            problems.append(f"intake outbox: {pending} rows unpublished")
        # payout: one grant per application, equal to `subsidy simulate`
        grants = {
            r[0]: r
            for r in q(
                "SELECT application_id, decision_id, granted_fen, outcome, max_award_fen, state FROM payout_grants "
                "WHERE application_id LIKE %s",
                like,
            )
        }
        inbox = Counter(r[0] for r in q("SELECT application_id FROM payout_inbox WHERE application_id LIKE %s", like))
        tranches = defaultdict(list)
        tranche_rows = q(
            "SELECT tranche_id, application_id, number, amount_fen, budget_year, status, payment_id "
            "FROM payout_tranches WHERE application_id LIKE %s",
            like,
        )
        for tid, app_id, number, amount, year, status, payment_id in tranche_rows:
            tranches[app_id].append((number, year, amount, tid, status, payment_id))
        if len({(r[1], r[2]) for r in tranche_rows}) != len(tranche_rows):
            problems.append("payout: a (application, number) tranche twice")
        for app_id in accepted:
            if app_id not in grants:
                problems.append(f"payout: no grant for {app_id}")
                continue
            if inbox[app_id] != (2 if app_id in held else 1):  # held: the computed one and its reviewed one
                notes.append(f"payout inbox holds {inbox[app_id]} decisions for {app_id}")
            want = expected[app_id]
            granted, state = grants[app_id][2], grants[app_id][5]
            # intake: accepted → PAYABLE once its notice closed (RECORDED: a grant of 0); refused → nothing
            want_state = "PAYABLE" if granted else "RECORDED"
            if states.get(app_id) != want_state:
                problems.append(f"intake: {app_id} is {states.get(app_id)}, not {want_state}")
            if granted and state != "PAYABLE":
                problems.append(f"payout: {app_id} granted {granted} fen is {state}, not PAYABLE after its notice")
            if want["outcome"] == "NEEDS_REVIEW":  # the text sets no amount: the reviewer's, paid in full
                amount = reviewed_amounts.get(app_id)
                total = sum(a for _, _, a, *_ in tranches[app_id])
                if amount is None or grants[app_id][3] != "ELIGIBLE" or not granted == total == amount:
                    problems.append(
                        f"payout: {app_id} reviewed to {amount} fen is {grants[app_id][3]} {granted} fen, "
                        f"tranches {total} fen"
                    )
                continue
            got = (
                grants[app_id][3],
                grants[app_id][4],
                grants[app_id][2],
                [(y, a) for _, y, a, *_ in sorted(tranches[app_id])],
            )
            wanted = (
                want["outcome"],
                want["max_award_fen"],
                want["granted_fen"],
                [(t["year"], t["amount_fen"]) for t in want["tranches"]],
            )
            if got != wanted:
                problems.append(f"ledger disagrees with `subsidy simulate` on {app_id}: {got} != {wanted}")
        extra = set(grants) - set(accepted)
        if extra:
            problems.append(f"payout: grants for applications never accepted: {sorted(extra)}")
        # review: one item per held decision, decided once, by two people where four-eyes applies
        items = q("SELECT application_id, status FROM review_items WHERE application_id LIKE %s", like)
        per_app = Counter(a for a, _ in items)
        for app_id in held:
            if per_app[app_id] != 1:
                problems.append(f"review: {per_app[app_id]} items for {app_id} (want 1)")
        for app_id, status in items:
            if status != "APPROVED":
                problems.append(f"review: the item of {app_id} is {status}, not APPROVED")
        lines = q("SELECT status, count(*) FROM review_lines WHERE application_id LIKE %s GROUP BY status", like)
        if any(status != "PAYABLE" for status, _ in lines):
            problems.append(f"review: notice lines not all PAYABLE: {dict(lines)}")
        # caps
        for code, scope, kind, cap, used in q(
            "SELECT credit_code, scope, limit_kind, cap_fen, used_fen FROM payout_usage WHERE credit_code = ANY(%s)",
            list(firms),
        ):
            if kind == "cumulative_cap" and used > cap:
                problems.append(f"cap exceeded: {code} {scope} used {used} > cap {cap}")
        # payments: a tranche paid at most once, and by the first confirmation
        paid = Counter(r[0] for r in q("SELECT tranche_id FROM payout_payments WHERE tranche_id LIKE %s", like))
        if any(n > 1 for n in paid.values()):
            problems.append(f"a tranche paid twice: {[t for t, n in paid.items() if n > 1]}")
        first_payment = {}
        for p in payments:
            first_payment.setdefault(p.tranche_id, p.payment_id)
        status_of = {r[0]: (r[5], r[6]) for r in tranche_rows}
        for tid, pid in first_payment.items():
            if status_of.get(tid) != ("PAID", pid):
                problems.append(f"tranche {tid} is {status_of.get(tid)}, expected PAID by {pid}")
        # CancelTranche under fault: cancelled once, never paid
        for tid in cancelled or {}:
            if status_of.get(tid, ("?",))[0] != "CANCELLED":
                problems.append(f"tranche {tid} is {status_of.get(tid)}, expected CANCELLED")
        pending = q("SELECT count(*) FROM payout_outbox WHERE published_at IS NULL")[0][0]
        if pending:
            problems.append(f"payout outbox: {pending} rows unpublished")
        # intake's view of each grant equals the ledger
        for app_id, raw in q(
            "SELECT application_id, grant_proto FROM intake_grants WHERE application_id LIKE %s", like
        ):
            g = payout_pb2.Grant.FromString(bytes(raw))
            ledger = sorted((t[3], t[2]) for t in tranches.get(app_id, []))
            seen = sorted((t.tranche_id, t.amount_fen) for t in g.tranches)
            if app_id in grants and (g.granted_fen != grants[app_id][2] or seen != ledger):
                problems.append(
                    f"intake shows {app_id} as {g.granted_fen} fen {seen}, ledger {grants[app_id][2]} {ledger}"
                )

    events = [r for r in read_topic(fs.bootstrap, topics.PAYOUTS.name) if r.key and r.key.decode() in firms]
    by_id: dict[str, set] = defaultdict(set)
    scheduled: Counter = Counter()
    paid_events: Counter = Counter()
    payable_decisions: set[str] = set()
    for r in sorted(events, key=lambda r: (r.partition, r.offset)):  # one firm's events: one partition, in order
        e = payout_pb2.PayoutEvent.FromString(r.value)
        by_id[e.event_id].add(r.value)
        kind = e.WhichOneof("event")
        if kind == "grant_payable":
            payable_decisions.add(e.grant_payable.decision_id)
        elif kind == "tranche_scheduled":
            scheduled[e.tranche_scheduled.tranche_id] += 1
            if e.tranche_scheduled.decision_id not in payable_decisions:
                problems.append(f"{e.tranche_scheduled.tranche_id} scheduled before its grant was payable")
        elif kind == "tranche_paid":
            paid_events[e.tranche_paid.tranche_id] += 1
    changed = [i for i, values in by_id.items() if len(values) > 1]
    if changed:
        problems.append(f"payout events whose content differs between deliveries: {changed[:5]}")
    for tid in cancelled or {}:
        if f"cancelled:{tid}" not in by_id:
            problems.append(f"no TrancheCancelled on Kafka for the cancelled tranche {tid}")
    # dedupe by event id (as the contract says): one TrancheScheduled per ledger tranche
    scheduled_ids = {i.split(":", 1)[1] for i in by_id if i.startswith("scheduled:")}
    ledger_ids = {r[0] for r in tranche_rows}
    if scheduled_ids != ledger_ids:
        problems.append(
            f"TrancheScheduled ids != ledger tranches: missing {sorted(ledger_ids - scheduled_ids)[:5]}, "
            f"extra {sorted(scheduled_ids - ledger_ids)[:5]}"
        )
    redelivered = sum(n - 1 for n in scheduled.values())
    if redelivered:
        notes.append(f"{redelivered} TrancheScheduled re-deliveries on Kafka (same event id, same content)")
    grant_ids = {i for i in by_id if i.startswith("grant:")}
    for app_id in accepted:
        if f"grant:{app_id}" not in grant_ids:
            problems.append(f"no GrantRecorded on Kafka for {app_id}")

    # dead letters: valid traffic never lands in a DLQ (except the double payments we sent)
    doubles = {p.payment_id for p in payments} - set(first_payment.values())
    for dlq in (
        topics.APPLICATIONS_DLQ,
        topics.DECISIONS_DLQ,
        topics.PAYOUTS_DLQ,
        topics.PAYMENTS_DLQ,
        topics.NOTICES_DLQ,
        topics.NOTIFICATIONS_DLQ,
    ):
        for r in read_topic(fs.bootstrap, dlq.name):
            if not (r.key and r.key.decode() in firms):
                continue
            dl = events_pb2.DeadLetter.FromString(r.value)
            if dlq is topics.PAYMENTS_DLQ:
                p = payout_pb2.PaymentConfirmed.FromString(dl.value)
                if p.payment_id in doubles and "already paid" in dl.error:
                    continue
            problems.append(f"dead letter on {dlq.name} from {dl.consumer}: {dl.error}")

    # notifications: every event told (e-mail and webhook), none twice
    event_ids = {f"decision:{i}" for ids in decision_ids.values() for i in ids} | set(by_id)
    # (long header values are folded on the wire: strip what unfolding leaves)
    mails = [m for m in fs.smtp.messages() if str(m.get("X-Subsidy-Event-Id") or "").strip() in event_ids]
    hooks = [r for r in list(fs.webhook.requests) if r["headers"].get("X-Subsidy-Event-Id") in event_ids]
    mailed = {str(m.get("X-Subsidy-Event-Id")).strip() for m in mails}
    hooked = {r["headers"].get("X-Subsidy-Event-Id") for r in hooks}
    if event_ids - mailed:
        problems.append(f"events without an e-mail: {sorted(event_ids - mailed)[:5]} ({len(event_ids - mailed)})")
    if event_ids - hooked:
        problems.append(f"events without a webhook: {sorted(event_ids - hooked)[:5]} ({len(event_ids - hooked)})")
    twice = [k for k, n in Counter(str(m.get("Message-ID")).strip() for m in mails).items() if n > 1]
    twice += [k for k, n in Counter(r["headers"].get("Idempotency-Key") for r in hooks).items() if n > 1]
    if fs.sms is not None:  # SMS under fault too: every event, by its derived notification id
        wanted = {notification_id(e, "sms"): e for e in event_ids}
        texts = [r["headers"].get("Idempotency-Key") for r in list(fs.sms.requests)]
        texts = [k for k in texts if k in wanted]
        missing = set(wanted) - set(texts)
        if missing:
            problems.append(f"events without an SMS: {sorted(wanted[k] for k in missing)[:5]} ({len(missing)})")
        twice += [k for k, n in Counter(texts).items() if n > 1]
    if twice:
        msg = f"{len(twice)} notification ids delivered more than once: {twice[:4]}"
        # The documented at-least-once window: a SIGKILL of notify between a send
        # and its log row re-sends that one notification (same id) on restart.
        (notes if len(twice) <= allowed_resends else problems).append(msg)

    lag = consumer_lag(fs.bootstrap)
    if any(lag.values()):
        problems.append(f"consumer lag: {lag}")
    return Observed(problems, notes)
