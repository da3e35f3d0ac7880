"""An adoption's re-decisions are published until the broker has them
(issue 14; subsidy/services/eligibility/outbox.py): recorded with the
``adopted`` event, published right after the approval, and when that fails,
again by the retry loop (and at start, on a new app over the same trail),
each once acknowledged recorded as ``redecisions_published`` -- then
nothing more is published."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import grpc
from eligibility_support import POLICY, demo_applications
from prometheus_client import CollectorRegistry

from subsidy.core import eligibility as rules
from subsidy.core.versions import load_versions
from subsidy.services.eligibility.adapters.adoption_log import AdoptionLog
from subsidy.services.eligibility.adapters.grpc import GrpcServer
from subsidy.services.eligibility.adoption import AdoptionDesk, from_record_form
from subsidy.services.eligibility.metrics import Metrics
from subsidy.services.eligibility.model import Caller, OpenWorkFound
from subsidy.services.eligibility.outbox import RedecisionOutbox
from subsidy.v1 import policy_service_pb2, policy_service_pb2_grpc

DEMO = {a.application_id: a for a in demo_applications()}
NOW = dt.datetime(2025, 11, 3, 9, 0, tzinfo=dt.UTC)
FINAL = "fictional-final-2023"
FINAL_VERSION = load_versions().get(FINAL).policy.version
OPEN = ["SJ-2023-0003", "SJ-2023-0004"]
OWED = sorted(f"{a}@{FINAL_VERSION}" for a in OPEN)


class Found:
    def __init__(self, open_ids):
        self.open_ids = list(open_ids)

    def find(self, caller):
        return OpenWorkFound(tuple(DEMO[i] for i in self.open_ids), (), "intake (fake)")


class Broker:
    """The publisher: refuses while ``down``; ``calls`` holds the decision ids
    of every attempt, ``acknowledged`` those of the successful ones."""

    def __init__(self, down=False):
        self.down = down
        self.calls: list[list[str]] = []
        self.acknowledged: list[list[str]] = []

    async def __call__(self, decisions):
        ids = sorted(d.decision_id for d in decisions)
        self.calls.append(ids)
        if self.down:
            raise ConnectionError("broker gone")
        self.acknowledged.append(ids)
        return list(decisions)


def new_desk(path, open_ids=OPEN):
    return AdoptionDesk(
        load_versions(), AdoptionLog(path), lambda: NOW, lambda router: None, POLICY, open_work=Found(open_ids)
    )


def trail(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def owed_metric(metrics):
    return metrics.registry.get_sample_value("subsidy_policy_redecisions_owed")


def attempts(metrics, trigger, result):
    return metrics.value("subsidy_policy_redecision_publications_total", trigger=trigger, result=result)


async def eventually(check, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def adopt_request():
    return policy_service_pb2.AdoptVersionRequest(version_id=FINAL, policy_version=FINAL_VERSION, reason="测试")


def test_a_failed_publication_is_retried_until_acknowledged_then_stops(tmp_path):
    path = tmp_path / "adoptions.jsonl"
    desk = new_desk(path)
    broker = Broker(down=True)
    metrics = Metrics(CollectorRegistry())
    outbox = RedecisionOutbox(desk, broker, metrics, retry_seconds=0.05)

    async def main():
        server = GrpcServer("127.0.0.1:0", POLICY, ready=lambda: True, grace_seconds=1.0, adoption=desk, outbox=outbox)
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = policy_service_pb2_grpc.PolicyServiceStub(channel)
                answers = []
                for subject in ("reviewer-a", "reviewer-b"):
                    metadata = (("x-subsidy-subject", subject), ("x-subsidy-role", "REVIEWER"))
                    try:
                        answers.append(await stub.AdoptVersion(adopt_request(), metadata=metadata, timeout=10))
                    except grpc.aio.AioRpcError as exc:
                        answers.append(exc)
            proposed, failed = answers
            assert proposed.status == "proposed"
            assert failed.code() == grpc.StatusCode.UNAVAILABLE
            details = failed.details()
            # What the console maps ("is adopted, but"), and the truth: retried, not lost.
            assert details.startswith(f"{FINAL} is adopted, but its 2 re-decision(s) could not be published")
            assert "ConnectionError: broker gone" in details
            assert "publishes them again every 0.05 s until the broker has them" in details
            # The retry keeps failing while the broker is gone; everything still owed.
            await eventually(lambda: attempts(metrics, "retry", "failed") >= 2)
            assert attempts(metrics, "adoption", "failed") == 1
            assert owed_metric(metrics) == 2 and desk.owed_count() == 2
            assert broker.acknowledged == []
            broker.down = False
            await eventually(lambda: desk.owed_count() == 0)
            settled_at = len(broker.calls)
            await asyncio.sleep(0.3)  # several retry periods: nothing more is published
            return settled_at
        finally:
            await server.stop()

    settled_at = asyncio.run(main())
    assert len(broker.calls) == settled_at
    # Exactly the owed re-decisions, each attempt all of them, acknowledged once.
    assert all(ids == OWED for ids in broker.calls)
    assert broker.acknowledged == [OWED]
    assert attempts(metrics, "retry", "published") == 1 and owed_metric(metrics) == 0
    events = trail(path)
    assert [e["event"] for e in events] == ["proposed", "adopted", "redecisions_published"]
    recorded = [from_record_form(r) for r in events[1]["redecisions"]]
    assert sorted(d.decision_id for d in recorded) == OWED
    draft = rules.evaluate(DEMO["SJ-2023-0003"], POLICY)
    assert next(d for d in recorded if d.application_id == "SJ-2023-0003").supersedes_decision_id == draft.decision_id
    assert sorted(events[2]["decision_ids"]) == OWED and events[2]["subject"] == "eligibility"
    # ListVersions' read side: nothing owed any more.
    [final] = [v for v in desk.overview().versions if v.version_id == FINAL]
    assert final.status == "adopted" and final.owed_redecisions == ()


def test_a_restart_publishes_what_the_trail_owed(tmp_path):
    """Killed between the append of the adoption and its publication: the
    trail holds the adoption and its re-decisions, nothing published. A new
    desk over the same trail owes them, its outbox publishes them at its
    first attempt, and a third start owes nothing."""
    path = tmp_path / "adoptions.jsonl"
    first = new_desk(path)
    for subject in ("reviewer-a", "reviewer-b"):
        outcome = first.adopt(
            version_id=FINAL, policy_version=FINAL_VERSION, reason="", caller=Caller(subject, "REVIEWER")
        )
    assert outcome.event["event"] == "adopted"  # and then the process died: nothing published

    restarted = new_desk(path, open_ids=[])  # what intake shows now does not matter
    [state] = [v for v in restarted.overview().versions if v.version_id == FINAL]
    assert sorted(state.owed_redecisions) == OWED  # ListVersions shows what is owed
    broker = Broker()
    metrics = Metrics(CollectorRegistry())
    outbox = RedecisionOutbox(restarted, broker, metrics)
    assert asyncio.run(outbox.settle()) == 2
    assert broker.acknowledged == [OWED]
    published = asyncio.run(outbox.settle())
    assert published == 0 and broker.calls == [OWED]  # nothing more
    assert [e["event"] for e in trail(path)] == ["proposed", "adopted", "redecisions_published"]
    assert new_desk(path).owed() == []


def test_published_but_not_recorded_stays_owed_and_is_published_again(tmp_path):
    """The broker took them but the trail could not record it: still owed,
    published again (the same ids) at the next attempt, then recorded."""
    path = tmp_path / "adoptions.jsonl"
    desk = new_desk(path)
    for subject in ("reviewer-a", "reviewer-b"):
        desk.adopt(version_id=FINAL, policy_version=FINAL_VERSION, reason="", caller=Caller(subject, "REVIEWER"))
    append = desk.log.append
    full = True

    def append_or_fail(event):
        if full:
            raise OSError(28, "No space left on device")
        append(event)

    desk.log.append = append_or_fail
    broker = Broker()
    outbox = RedecisionOutbox(desk, broker, Metrics(CollectorRegistry()))
    assert asyncio.run(outbox.settle()) == 2
    assert desk.owed_count() == 2 and [e["event"] for e in trail(path)] == ["proposed", "adopted"]
    full = False
    asyncio.run(outbox.settle())
    assert broker.acknowledged == [OWED, OWED] and desk.owed_count() == 0
    assert [e["event"] for e in trail(path)][-1] == "redecisions_published"


def test_a_recorded_redecision_that_does_not_decode_is_never_dropped(tmp_path):
    path = tmp_path / "adoptions.jsonl"
    desk = new_desk(path)
    for subject in ("reviewer-a", "reviewer-b"):
        desk.adopt(version_id=FINAL, policy_version=FINAL_VERSION, reason="", caller=Caller(subject, "REVIEWER"))
    events = trail(path)
    events[1]["redecisions"][0]["outcome"] = "MAYBE"
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events))
    restarted = new_desk(path)
    broker = Broker()
    metrics = Metrics(CollectorRegistry())
    outbox = RedecisionOutbox(restarted, broker, metrics)
    assert asyncio.run(outbox.settle()) == 0
    assert broker.calls == [] and restarted.owed_count() == 2 and owed_metric(metrics) == 2
    assert attempts(metrics, "retry", "failed") == 1


def test_a_new_eligibility_app_over_the_same_trail_publishes_what_was_owed(tmp_path):
    """The composition as ``main`` builds it (create_app, a file trail): the
    first app adopts and dies before publishing; the next app over the same
    trail publishes exactly the owed re-decisions on subsidy.decisions.v1
    through its producer (superseding, stamped, keyed by the firm), records
    it, and its metrics show the backlog gone."""
    from subsidy.contracts import topics
    from subsidy.services.eligibility.bootstrap import create_app
    from subsidy.services.eligibility.config import Settings
    from subsidy.v1 import decision_pb2

    settings = Settings(data_dir=tmp_path / "data", adoption_store="file", adoption_log=tmp_path / "adoptions.jsonl")
    sent = []

    async def sink(topic, key, value, headers):
        sent.append((topic, key, value, dict(headers)))
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    def app():
        return create_app(settings, policy=POLICY, registry=CollectorRegistry(), sink=sink, clock=lambda: NOW)

    first = app().grpc.adoption
    first.open_work = Found(OPEN)
    for subject in ("reviewer-a", "reviewer-b"):
        first.adopt(version_id=FINAL, policy_version=FINAL_VERSION, reason="", caller=Caller(subject, "REVIEWER"))
    assert sent == [] and first.owed_count() == 2  # killed here: nothing published

    service = app()
    outbox = service.grpc.outbox
    assert outbox.retry_seconds == 5.0 and outbox.metrics is service.metrics
    assert asyncio.run(outbox.settle()) == 2
    assert [topic for topic, *_ in sent] == [topics.DECISIONS.name] * 2
    published = {decision_pb2.Decision.FromString(value).decision_id: (key, headers) for _, key, value, headers in sent}
    assert sorted(published) == OWED
    key, headers = published[f"SJ-2023-0003@{FINAL_VERSION}"]
    assert key == DEMO["SJ-2023-0003"].firm.credit_code.encode()
    assert headers["ce_type"] == b"cn.gov.songjiang.subsidy.decision.superseded.v1"
    counted = [
        sample.value
        for metric in service.metrics.registry.collect()
        for sample in metric.samples
        if sample.name == "subsidy_policy_redecisions_total"
    ]
    assert sum(counted) == 2
    assert owed_metric(service.metrics) == 0 and attempts(service.metrics, "retry", "published") == 1
    assert asyncio.run(outbox.settle()) == 0 and len(sent) == 2
    assert [e["event"] for e in trail(tmp_path / "adoptions.jsonl")][-1] == "redecisions_published"
