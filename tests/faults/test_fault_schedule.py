"""Fault injection against the real thing: a Kafka broker and a PostgreSQL
server of the test's own, the five services as real processes (intake,
payout, notify and review on that PostgreSQL), a real SMTP server and
webhook receiver.

Per seed, random.Random(seed) draws the schedule: the seed's applications
(the demo set on firms of the seed's own) are cut into one chunk per fault;
while a chunk is being submitted, at a seeded point, one fault strikes:

- ``kill9:<service>``   SIGKILL of intake, eligibility, payout, notify and review (each once), restart;
- ``broker``            the broker restarted (SIGTERM, or SIGKILL when ``hard``);
- ``database``          PostgreSQL restarted (fast, or ``immediate`` = crash when ``hard``);
- ``pause:<service>``   SIGSTOP for longer than the consumer's session timeout, then SIGCONT;
- ``rewind:<service>``  stopped, its consumer groups reset to offset 0, started: a full replay;
- ``replicas``          a second payout process in the same group on the same database,
                        racing the first, then stopped (SIGTERM, or SIGKILL when ``hard``);
- ``latency:<svc>``, ``bandwidth:<svc>``, ``reset:<svc>``, ``halfopen:<svc>``
                        the service's link to Kafka slowed, throttled, reset or stalled
                        half-open through Toxiproxy for a few seconds, then healed;
- ``partition:<svc>``   the service cut off from Kafka for longer than its session
                        timeout and the stall limit: its health must say NOT_SERVING
                        meanwhile, SERVING after;
- ``slowdb:<svc>``      the service's PostgreSQL answers 300–800 ms late;
- ``kill9:registry_sync``, ``platform_down`` (the data platform answers 503 for
                        8–15 s), ``cursor_reset`` (the platform forgets its history:
                        registry-sync's cursor gets 410 Gone and it resynchronises).
Each step also puts one change on the platform's feed for the seed's firms.

Then hostile records land on every consumed topic (issue 17: garbage, a
protobuf cut short, 900 KB of it, a tombstone, headers with line breaks and
control characters): each must be dead-lettered by every group that reads
its topic while the pipeline goes on. Then the people's part (subsidy_dev/review_story.py), while one more seeded
fault strikes (``PEOPLE_FAULTS``: review killed, review's groups rewound to
offset 0 and replayed, payout killed, the broker restarted): every decision
that needs people is reviewed (four-eyes), the public notice is published,
an objection lodged and dismissed, the clock moved past the period. Then
finance's payment confirmations for some tranches are produced (each twice,
and for some tranches a second, different payment: a double payment).
Then the checker (harness.check) is polled until every promise holds or a
deadline passes. The failing seed is printed; ``--fault-seeds <seed>`` replays
the same schedule (see docs/faults.md).
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time

import grpc
import psycopg
import pytest
from integration.test_notify_support import HttpSink, SmtpSink

from subsidy.v1 import payout_pb2

from .conftest import fault_seeds
from .harness import (
    DB_SERVICES,
    SESSION_TIMEOUT_S,
    STALL_S,
    TARGETS,
    TODAY,
    FaultStack,
    Observed,
    Submitter,
    Workload,
    check,
    log,
    produce_hostile,
    produce_payments,
    wait_until,
    workload,
)

pytestmark = pytest.mark.integration

FAULT_KINDS = (
    "kill9:intake",
    "kill9:eligibility",
    "kill9:payout",
    "kill9:notify",
    "kill9:review",
    "kill9:registry_sync",
    "broker",
    "database",
    "pause",
    "rewind",
    "replicas",
    # The network, through Toxiproxy (issue 19): one service's link degraded.
    "latency",
    "bandwidth",
    "reset",
    "halfopen",
    "partition",
    "slowdb",
    # The data platform's feed (issue 13).
    "platform_down",
    "cursor_reset",
)
NETWORK_KINDS = ("latency", "bandwidth", "reset", "halfopen", "partition", "slowdb")
CONVERGE_TIMEOUT_S = 240.0
#: One of these strikes during the people's part of each seed.
PEOPLE_FAULTS = ("kill9:review", "rewind:review", "kill9:payout", "broker")


@dataclasses.dataclass
class Step:
    kind: str
    target: str
    hard: bool
    at: float  # seconds after the chunk's first submission
    hold: float  # pause length / how long the replica races
    apps: list[dict]
    delays: list[float]
    bad: list[dict]

    def describe(self) -> str:
        extra = f" hard={self.hard}" if self.kind in ("broker", "database", "replicas") else ""
        extra += f" for {self.hold:.1f}s" if self.kind in ("pause", "replicas", "platform_down", *NETWORK_KINDS) else ""
        targeted = self.kind in ("pause", "rewind", *NETWORK_KINDS)
        return (
            f"{self.kind}{':' + self.target if targeted else ''}{extra} "
            f"at +{self.at:.2f}s of {len(self.apps)} submissions"
        )


def schedule(seed: int, wl: Workload) -> list[Step]:
    rng = random.Random(seed)
    kinds = list(FAULT_KINDS)
    rng.shuffle(kinds)
    n = len(kinds)
    apps = wl.applications
    cuts = sorted(rng.sample(range(1, len(apps)), n - 1))
    chunks = [apps[a:b] for a, b in zip([0] + cuts, cuts + [len(apps)])]
    bad_at = {i: [] for i in range(n)}
    for b in wl.bad:
        bad_at[rng.randrange(n)].append(b)
    steps = []
    for i, kind in enumerate(kinds):
        delays = [rng.uniform(0.02, 0.25) for _ in chunks[i]]
        target = rng.choice(DB_SERVICES if kind == "slowdb" else TARGETS)
        if kind == "pause":
            hold = SESSION_TIMEOUT_S[target] + rng.uniform(2.0, 5.0)
        elif kind == "partition":
            hold = max(SESSION_TIMEOUT_S[target], STALL_S) + rng.uniform(5.0, 10.0)
        elif kind in NETWORK_KINDS:
            hold = rng.uniform(4.0, 8.0)
        elif kind == "platform_down":
            hold = rng.uniform(8.0, 15.0)
        else:
            hold = rng.uniform(2.0, 6.0)
        steps.append(
            Step(kind, target, rng.random() < 0.5, rng.uniform(0, sum(delays)), hold, chunks[i], delays, bad_at[i])
        )
    return steps


def inject(fs: FaultStack, step: Step) -> None:
    kind = step.kind
    if kind.startswith("kill9:"):
        fs.kill9(kind.split(":", 1)[1])
    elif kind == "broker":
        fs.broker_restart(step.hard)
    elif kind == "database":
        fs.database_restart(step.hard)
    elif kind == "pause":
        fs.pause(step.target, step.hold)
    elif kind == "rewind":
        fs.rewind(step.target)
    elif kind == "replicas":
        fs.start_replica()
    elif kind in NETWORK_KINDS:
        fs.network(kind, step.target, step.hold)
    elif kind == "platform_down":
        fs.platform_down(step.hold)
    elif kind == "cursor_reset":
        fs.cursor_reset()
    else:  # pragma: no cover
        raise ValueError(kind)


def choose_payments(fs: FaultStack, wl: Workload, rng: random.Random, ready: list[str]) -> list:
    """Confirmations for tranches of some already-submitted applications: each
    sent twice (same payment id: ignored), some followed by a second, different
    payment (a double payment: dead-lettered)."""
    expected = wl.expected()
    candidates = sorted(i for i in ready if expected[i]["granted_fen"] > 0)
    chosen = rng.sample(candidates, min(4, len(candidates)))
    if not chosen:
        return []

    def tranches() -> list | None:
        with psycopg.connect(fs.db_url, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT tranche_id, application_id, credit_code, amount_fen FROM payout_tranches "
                "WHERE application_id = ANY(%s) ORDER BY tranche_id",
                (chosen,),
            ).fetchall()
        want = sum(len(expected[i]["tranches"]) for i in chosen)
        return rows if len(rows) == want else None

    rows = wait_until(tranches, 180, 0.5, "the chosen applications' tranches in the ledger")
    payments = []
    for n, (tranche_id, _app, code, amount) in enumerate(rows):
        if rng.random() < 0.6:
            p = payout_pb2.PaymentConfirmed(
                payment_id=f"PAY-{wl.seed}-{n}",
                tranche_id=tranche_id,
                credit_code=code,
                amount_fen=amount,
                paid_on="2024-06-01",
            )
            payments += [p, p]
            if rng.random() < 0.4:
                payments.append(
                    payout_pb2.PaymentConfirmed(
                        payment_id=f"PAY-{wl.seed}-{n}-again",
                        tranche_id=tranche_id,
                        credit_code=code,
                        amount_fen=amount,
                        paid_on="2024-06-02",
                    )
                )
    return payments


def people(fs: FaultStack, wl: Workload, submitted: dict[str, str], rng: random.Random) -> str:
    """Review, four-eyes and the public notice as the demo's people do them,
    while a seeded fault strikes; returns the fault. The story is resumable
    (each item goes on from its state), so a call cut short by the fault is
    made again until it passes."""
    from subsidy.v1 import intake_pb2, intake_pb2_grpc
    from subsidy_dev import review_story
    from subsidy_dev.demo import ledger_acted_states, wait_for_state

    fault = rng.choice(PEOPLE_FAULTS)
    ids = [i for i in wl.application_ids if submitted.get(i) in ("accepted", "duplicate")]
    idp = fs.stack.identities

    def intake_states(states: set[int]) -> dict:
        with grpc.insecure_channel(fs.stack.intake_address) as channel:
            return wait_for_state(intake_pb2_grpc.IntakeServiceStub(channel), ids, states, 240, "taken up")

    statuses = intake_states(ledger_acted_states())
    held = [i for i, st in statuses.items() if st.state == intake_pb2.APPLICATION_STATE_UNDER_REVIEW]
    strike = threading.Timer(rng.uniform(0.0, 3.0), lambda: inject(fs, _people_step(fault)))
    strike.start()
    try:
        retrying(lambda: review_story.review_all(fs.stack.address("review"), idp, held), "the review")
    finally:
        strike.join()
        fs.ensure_running()
    statuses = intake_states(ledger_acted_states() - {intake_pb2.APPLICATION_STATE_UNDER_REVIEW})
    reserved = [i for i, st in statuses.items() if st.state == intake_pb2.APPLICATION_STATE_RESERVED]
    if reserved:
        retrying(
            lambda: review_story.publish_and_close_notices(fs.stack, idp, reserved, object_to=reserved[0]),
            "the notice",
        )
    return fault


def feed_change(fs: FaultStack, wl: Workload, step: int) -> None:
    """One change on the data platform's feed per step, for the seed's firms
    in turn: a certification (a proposal may follow: DCMM level 3), a firm
    moving out and back (the facts flip), a recognition, new contacts."""
    firms = sorted(wl.firms)
    code = firms[step % len(firms)]
    kind = step % 4
    if kind == 0:
        fs.platform.certify(code, reference=f"DCMM-FLT{wl.seed}-{step}")
    elif kind == 1:
        fs.platform.move_out(code)
        fs.platform.move_back(code)
    elif kind == 2:
        fs.platform.certify(
            code, kind="WORKSHOP", level="市级", reference=f"WS-FLT{wl.seed}-{step}", issuer="上海市经信委"
        )
    else:
        # A CONTACTS change carries the firm's whole contacts (it replaces them):
        # a new e-mail address, the same phone and webhook.
        contacts = dict((fs.platform.firm(code) or {}).get("contacts", {}))
        fs.platform.change("CONTACTS", code, {**contacts, "email": f"new-{wl.seed}-{step}@example.cn"})


def cancel_some(fs: FaultStack, wl: Workload, rng: random.Random, payments: list) -> dict[str, str]:
    """CancelTranche over gRPC for two tranches nobody pays (the firm left,
    say), while the broker is restarted: each must end CANCELLED with one
    TrancheCancelled, never paid. Returns tranche id -> reason."""
    from subsidy.v1 import payout_pb2, payout_pb2_grpc

    paid = {p.tranche_id for p in payments}
    with psycopg.connect(fs.db_url, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT tranche_id FROM payout_tranches WHERE application_id LIKE %s AND status = 'SCHEDULED' "
            "ORDER BY tranche_id",
            (f"FLT{wl.seed}-%",),
        ).fetchall()
    candidates = [r[0] for r in rows if r[0] not in paid]
    chosen = {tid: "企业已迁出本区（故障测试）" for tid in rng.sample(candidates, min(2, len(candidates)))}
    strike = threading.Timer(rng.uniform(0.0, 1.0), lambda: fs.broker_restart(hard=rng.random() < 0.5))
    strike.start()
    try:
        for tranche_id, reason in chosen.items():

            def cancel(tranche_id=tranche_id, reason=reason):
                with grpc.insecure_channel(fs.service("payout").grpc_address) as channel:
                    return payout_pb2_grpc.PayoutServiceStub(channel).CancelTranche(
                        payout_pb2.CancelTrancheRequest(tranche_id=tranche_id, reason=reason), timeout=30
                    )

            retrying(cancel, f"CancelTranche {tranche_id}")
    finally:
        strike.join()
        fs.ensure_running()
    return chosen


#: TrancheDue under fault (issue 19, item 2): payout's day moves from TODAY to
#: the seed's first due date (restarting it), the scheduler raises TrancheDue
#: for every tranche due by then (those of the budget years already begun fall
#: due on the day their grant became payable; later years' stay SCHEDULED),
#: while one of these strikes. Then the day goes back, so the next seed's
#: tranches start SCHEDULED as before (each seed has firms of its own).
DUE_FAULTS = ("broker", "database", "kill9:payout", "rewind:payout")


def set_payout_day(fs: FaultStack, day: str) -> None:
    """Restart payout (SIGTERM) with SUBSIDY_PAYOUT_TODAY = ``day``."""
    svc = fs.service("payout")
    svc.env["SUBSIDY_PAYOUT_TODAY"] = day
    svc.stop()
    svc.start()
    svc.wait_serving(120)


def due_problems(fs: FaultStack, wl: Workload, due_day: str) -> list[str]:
    """Every tranche of the seed due by ``due_day`` has left SCHEDULED (DUE, or
    HELD by the release gate, or PAID/CANCELLED before), none due later is DUE,
    and Kafka carries a TrancheDue (one event id) for each DUE one and for no
    tranche due later (duplicates by id with different content are the main
    checker's finding)."""
    from subsidy.contracts import topics

    from .harness import read_topic

    with psycopg.connect(fs.db_url, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT tranche_id, due_on, status FROM payout_tranches WHERE application_id LIKE %s",
            (f"FLT{wl.seed}-%",),
        ).fetchall()
    firms = set(wl.firms)
    due_events = set()
    for r in read_topic(fs.bootstrap, topics.PAYOUTS.name):
        if r.key and r.key.decode() in firms:
            event = payout_pb2.PayoutEvent.FromString(r.value)
            if event.WhichOneof("event") == "tranche_due":
                due_events.add(event.tranche_due.tranche_id)
    problems = []
    for tranche_id, due_on, status in rows:
        if due_on <= due_day and status == "SCHEDULED":
            problems.append(f"{tranche_id} due on {due_on} is still SCHEDULED on {due_day}")
        if due_on > due_day and (status == "DUE" or tranche_id in due_events):
            problems.append(f"{tranche_id} due on {due_on} was made DUE on {due_day}")
        if status == "DUE" and tranche_id not in due_events:
            problems.append(f"{tranche_id} is DUE but no TrancheDue reached Kafka")
    if not any(due_on > due_day for _, due_on, _ in rows):
        problems.append(f"every tranche of seed {wl.seed} falls due by {due_day}: none shows the day is kept")
    return problems


def first_due_day(fs: FaultStack, wl: Workload) -> str:
    with psycopg.connect(fs.db_url, connect_timeout=5) as conn:
        (day,) = conn.execute(
            "SELECT min(due_on) FROM payout_tranches WHERE application_id LIKE %s", (f"FLT{wl.seed}-%",)
        ).fetchone()
    assert day, f"seed {wl.seed} has no tranches: the due phase would test nothing"
    return day


def fall_due(fs: FaultStack, wl: Workload, rng: random.Random, observe) -> tuple[str, str]:
    """The due phase; returns the fault that struck and payout's day. Its
    promises and every promise of the main checker (``observe``: nothing lost
    or paid twice, no duplicate notification of the TrancheDue events, lag
    back to 0) must hold."""
    fault = rng.choice(DUE_FAULTS)
    due_day = first_due_day(fs, wl)
    strike = threading.Timer(rng.uniform(0.0, 3.0), lambda: inject(fs, _people_step(fault)))
    set_payout_day(fs, due_day)
    strike.start()
    try:
        strike.join()
        fs.ensure_running()
        deadline = time.monotonic() + CONVERGE_TIMEOUT_S
        problems = due_problems(fs, wl, due_day) + observe().problems
        while problems and time.monotonic() < deadline:
            time.sleep(2)
            problems = due_problems(fs, wl, due_day) + observe().problems
        assert not problems, (
            f"seed {wl.seed} (replay: pytest tests/faults --fault-seeds {wl.seed}) due phase under {fault}:\n  "
            + "\n  ".join(problems[:40])
            + "\n"
            + fs.logs()
        )
    finally:
        set_payout_day(fs, TODAY)
    return fault, due_day


def _people_step(fault: str) -> Step:
    kind, _, target = fault.partition(":")
    if kind == "kill9":
        return Step(fault, target, True, 0, 0, [], [], [])
    return Step(kind, target or "broker", False, 0, 0, [], [], [])


def retrying(action, what: str, timeout: float = 240.0):
    """``action`` again while a service it calls is down (UNAVAILABLE, a
    deadline passed, a connection reset), until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return action()
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
            if time.monotonic() > deadline:
                raise
            log(f"{what}: {exc.code().name}, again in 1 s")
            time.sleep(1)


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory, request):
    seeds = fault_seeds(request.config)
    with SmtpSink() as smtp, HttpSink() as webhook, HttpSink() as sms:
        fs = FaultStack(tmp_path_factory.mktemp("faults"), seeds, smtp, webhook, sms)
        try:
            fs.start()
            yield fs
        finally:
            fs.stop()


def test_every_promise_holds_under_a_seeded_fault_schedule(fault_stack: FaultStack, fault_seed: int):
    fs = fault_stack
    wl = workload(fault_seed)
    steps = schedule(fault_seed, wl)
    rng = random.Random(fault_seed * 7919 + 1)
    log(
        f"seed {fault_seed}: {len(wl.applications)} submissions, {len(wl.bad)} invalid, "
        f"schedule: " + "; ".join(s.describe() for s in steps)
    )
    kills_before = fs.kills["notify"]
    exits_before = len(fs.unexpected_exits)
    submitted: dict[str, str] = {}
    refused: dict[str, str] = {}
    payments: list = []
    started = time.monotonic()
    for i, step in enumerate(steps):
        t0 = time.monotonic()
        submitter = Submitter(fs.stack.intake_address, step.apps, step.delays, step.bad)
        submitter.start()
        time.sleep(step.at)  # the seeded point of the load at which the fault strikes
        feed_change(fs, wl, i)
        inject(fs, step)
        submitter.join(300)
        assert not submitter.is_alive(), "submissions did not finish within 300 s"
        if submitter.error:
            raise submitter.error
        if step.kind == "replicas":
            time.sleep(step.hold)  # let the two replicas race over the decisions in flight
            fs.stop_replica(step.hard)
        submitted.update(submitter.results)
        refused.update(submitter.refused)
        fs.ensure_running()
        log(f"seed {fault_seed} step {i + 1}/{len(steps)} {step.describe()} done in {time.monotonic() - t0:.1f}s")

    # Hostile records on every consumed topic (issue 17): each is dead-lettered, none stalls a partition.
    hostile = produce_hostile(fs.bootstrap, fault_seed)
    fs.hostile_placed()
    log(f"seed {fault_seed}: {len(hostile)} hostile records produced")
    t0 = time.monotonic()
    people_fault = people(fs, wl, submitted, random.Random(fault_seed * 104729 + 3))
    log(f"seed {fault_seed}: review and notice under {people_fault} done in {time.monotonic() - t0:.1f}s")
    payments = choose_payments(fs, wl, rng, list(submitted))
    cancelled = cancel_some(fs, wl, rng, payments)
    # Out of order: finance's confirmations (duplicates and double payments
    # included) arrive shuffled across tranches and firms.
    rng.shuffle(payments)
    produce_payments(fs.bootstrap, payments)

    allowed = 2 * (fs.kills["notify"] - kills_before)
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S

    def observe():
        try:
            return check(fs, wl, submitted, refused, payments, allowed, hostile, cancelled)
        except Exception as exc:  # noqa: BLE001 - a read that failed is retried like a promise not yet kept
            return Observed([f"checker could not read: {exc!r}"], [])

    observed = observe()
    while observed.problems and time.monotonic() < deadline:
        time.sleep(2)  # between polls of the whole checker
        observed = observe()
    log(
        f"seed {fault_seed}: faults done after {time.monotonic() - started:.0f}s; "
        f"problems {len(observed.problems)}; notes: {observed.notes}"
    )
    assert not observed.problems, (
        f"seed {fault_seed} (replay: pytest tests/faults --fault-seeds {fault_seed}) broke a promise:\n  "
        + "\n  ".join(observed.problems[:40])
        + "\n"
        + fs.logs()
    )
    t0 = time.monotonic()
    allowed = 2 * (fs.kills["notify"] - kills_before)
    due_fault, due_day = fall_due(fs, wl, random.Random(fault_seed * 15485863 + 5), observe)
    log(f"seed {fault_seed}: tranches due by {due_day} under {due_fault} in {time.monotonic() - t0:.1f}s")
    assert len(fs.unexpected_exits) == exits_before, f"services died on their own: {fs.unexpected_exits[exits_before:]}"
    assert not fs.health_lies, f"health did not tell the truth: {fs.health_lies}"
