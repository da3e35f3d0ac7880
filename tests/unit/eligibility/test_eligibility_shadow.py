"""Shadow evaluation (issue 14, item 3): a candidate policy version decided
beside the adopted one for every application. Over the topics: shadow
decisions go to subsidy.decisions.shadow.v1 only, never to
subsidy.decisions.v1 or any topic the ledger reads or writes; metrics count
agreements and differences by clause; PolicyService reports the running
difference in money per budget year."""

from __future__ import annotations

import asyncio
import datetime as dt

import grpc
import pytest
from eligibility_support import POLICY, application_record, demo_applications
from prometheus_client import CollectorRegistry

from subsidy.contracts import cloudevents, topics
from subsidy.core import eligibility as rules
from subsidy.core.policy import PolicyError
from subsidy.core.versions import load_versions
from subsidy.services.eligibility import handlers
from subsidy.services.eligibility.adapters.grpc import GrpcServer
from subsidy.services.eligibility.bootstrap import create_app
from subsidy.services.eligibility.config import Settings
from subsidy.services.eligibility.shadow import ShadowTally, agree, by_year
from subsidy.v1 import decision_pb2, policy_service_pb2, policy_service_pb2_grpc

DEMO = demo_applications()
NOW = dt.datetime(2025, 11, 3, 9, 0, tzinfo=dt.UTC)
CANDIDATE = load_versions().get("fictional-final-2023").policy
# Every topic a ledger reads (decisions, notices, payments, firms) or writes (payouts).
LEDGER_TOPICS = {topics.DECISIONS.name, topics.PAYOUTS.name, topics.PAYMENTS.name, topics.NOTICES.name}


def run(tmp_path, applications, shadow=CANDIDATE):
    sent = []

    async def sink(topic, key, value, headers):
        sent.append((topic, key, value, headers))
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    service = create_app(
        Settings(data_dir=tmp_path / "data"),
        policy=POLICY,
        registry=CollectorRegistry(),
        sink=sink,
        clock=lambda: NOW,
        shadow=shadow,
    )

    async def main():
        async with service.agent.test_context() as agent:
            for app in applications:
                key, value, headers = application_record(app)
                await agent.put(value=value, key=key, headers=headers)
            await service.in_flight.drained()

    asyncio.run(main())
    return service, sent


def test_shadow_decisions_go_to_their_own_topic_and_never_to_the_decisions_topic_or_the_ledger(tmp_path):
    service, sent = run(tmp_path, DEMO)
    by_topic: dict[str, list] = {}
    for topic, key, value, headers in sent:
        by_topic.setdefault(topic, []).append((key, decision_pb2.Decision.FromString(value), dict(headers)))
    assert set(by_topic) == {topics.DECISIONS.name, topics.SHADOW_DECISIONS.name}
    decided = by_topic[topics.DECISIONS.name]
    shadowed = by_topic[topics.SHADOW_DECISIONS.name]
    assert len(decided) == len(shadowed) == len(DEMO)
    # Only the adopted version's decisions reach the decisions topic, exactly as without shadow.
    assert {d.policy_version for _, d, _ in decided} == {POLICY.version}
    assert [d.decision_id for _, d, _ in decided] == [f"{a.application_id}@{POLICY.version}" for a in DEMO]
    # The candidate's decisions only on the shadow topic, with their own derived ids and type.
    assert {d.policy_version for _, d, _ in shadowed} == {CANDIDATE.version}
    assert not {d.decision_id for _, d, _ in decided} & {d.decision_id for _, d, _ in shadowed}
    assert {h["ce_type"] for _, _, h in shadowed} == {cloudevents.TYPE_DECISION_SHADOWED.encode()}
    assert [k for k, _, _ in shadowed] == [a.firm.credit_code.encode() for a in DEMO]
    # Nothing the ledger consumes carries a shadow decision.
    for topic, _, value, _ in sent:
        if topic in LEDGER_TOPICS:
            assert decision_pb2.Decision.FromString(value).policy_version == POLICY.version


def test_without_a_shadow_version_nothing_goes_to_the_shadow_topic(tmp_path):
    service, sent = run(tmp_path, DEMO[:5], shadow=None)
    assert {topic for topic, *_ in sent} == {topics.DECISIONS.name}
    assert service.shadow_tally is None


def test_metrics_count_agreements_and_differences_by_clause(tmp_path):
    service, _ = run(tmp_path, DEMO)
    expected: dict[tuple[str, str], int] = {}
    for app in DEMO:
        result = "agree" if agree(rules.evaluate(app, POLICY), rules.evaluate(app, CANDIDATE)) else "differ"
        expected[(app.claim.CLAUSE, result)] = expected.get((app.claim.CLAUSE, result), 0) + 1
    assert ("11.identifiers", "differ") in expected and ("2", "agree") in expected
    for (clause, result), count in expected.items():
        assert service.metrics.value("subsidy_shadow_decisions_total", clause=clause, result=result) == count
    assert service.metrics.value("subsidy_messages_produced_total", topic=topics.SHADOW_DECISIONS.name) == len(DEMO)


def test_the_running_difference_per_budget_year_is_shadow_minus_adopted_over_the_applications(tmp_path):
    service, _ = run(tmp_path, DEMO + DEMO[:3])  # a redelivered record counts once
    tally = service.shadow_tally
    assert len(tally) == len({a.application_id for a in DEMO})
    adopted: dict[int, int] = {}
    shadow: dict[int, int] = {}
    for app in {a.application_id: a for a in DEMO}.values():
        for year, fen in by_year(rules.evaluate(app, POLICY)).items():
            adopted[year] = adopted.get(year, 0) + fen
        for year, fen in by_year(rules.evaluate(app, CANDIDATE)).items():
            shadow[year] = shadow.get(year, 0) + fen
    got = {y.year: (y.adopted_fen, y.shadow_fen, y.difference_fen) for y in tally.years()}
    assert got == {
        y: (adopted.get(y, 0), shadow.get(y, 0), shadow.get(y, 0) - adopted.get(y, 0))
        for y in adopted.keys() | shadow.keys()
    }
    assert any(d for _, _, d in got.values())


def test_a_candidate_that_fails_does_not_stop_the_adopted_decision():
    from eligibility_support import record

    class Broken(dict):
        def __getitem__(self, key):
            raise RuntimeError("broken candidate")

    broken = type(CANDIDATE)(
        **{**{f: getattr(CANDIDATE, f) for f in CANDIDATE.__dataclass_fields__}, "clauses": Broken()}
    )
    key, value, headers = application_record(DEMO[0])
    decided = handlers.process(record(key, value, headers), policy=POLICY, now=NOW, shadow_policy=broken)
    assert decided.shadow is None and "broken candidate" in decided.shadow_error
    assert decided.decision == rules.evaluate(DEMO[0], POLICY)


def test_get_shadow_difference_over_grpc():
    tally = ShadowTally(CANDIDATE.version, lambda: NOW)
    for app in DEMO[:12]:
        tally.record(rules.evaluate(app, POLICY), rules.evaluate(app, CANDIDATE))

    async def main(shadow_tally):
        server = GrpcServer("127.0.0.1:0", POLICY, ready=lambda: True, grace_seconds=1.0, shadow_tally=shadow_tally)
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = policy_service_pb2_grpc.PolicyServiceStub(channel)
                return await stub.GetShadowDifference(policy_service_pb2.GetShadowDifferenceRequest(), timeout=5)
        finally:
            await server.stop()

    response = asyncio.run(main(tally))
    assert (response.adopted_version, response.shadow_version) == (POLICY.version, CANDIDATE.version)
    assert response.applications == 12 and response.since == "2025-11-03T09:00:00.000000Z"
    assert [(y.year, y.adopted_fen, y.shadow_fen, y.difference_fen) for y in response.years] == [
        (y.year, y.adopted_fen, y.shadow_fen, y.difference_fen) for y in tally.years()
    ]
    assert {c.clause: (c.agreements, c.differences) for c in response.clauses} == tally.clauses()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        asyncio.run(main(None))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "SUBSIDY_ELIGIBILITY_SHADOW_VERSION" in caught.value.details()


def test_the_shadow_version_setting_is_read_and_refused_naming_it(tmp_path):
    settings = Settings.from_env({"SUBSIDY_ELIGIBILITY_SHADOW_VERSION": "fictional-final-2023"})
    assert settings.shadow_version == "fictional-final-2023"
    service = create_app(
        Settings(data_dir=tmp_path, shadow_version="fictional-final-2023"), registry=CollectorRegistry()
    )
    assert service.shadow_tally.shadow_version == CANDIDATE.version
    for bad, why in (("final-2099", "no version 'final-2099'"), ("songjiang-ii-2022-draft", "is adopted")):
        with pytest.raises(PolicyError, match=f"^SUBSIDY_ELIGIBILITY_SHADOW_VERSION: .*{why}"):
            create_app(Settings(data_dir=tmp_path, shadow_version=bad), registry=CollectorRegistry())
