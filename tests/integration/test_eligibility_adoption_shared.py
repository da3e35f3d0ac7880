"""The adoption trail shared by every eligibility instance (issue 14, item 2;
ADR 0018), on the harness's real broker: a reviewer proposes on one
instance, another approves on a second, and both -- and a third started
afterwards -- route applications to the adopted version; one reviewer alone
is refused whichever instance they call; the trail keeps every step, and
every instance's ListVersions read side (``overview``) shows the pending
proposal and then the adoption with the same trail, each event once."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid

import pytest
from kafka import KafkaConsumer, TopicPartition

from subsidy.core import eligibility as rules
from subsidy.core.adoption import FourEyes
from subsidy.core.policy import load_policy
from subsidy.core.versions import load_versions
from subsidy.platform import topics as platform_topics
from subsidy.services.eligibility.adapters.adoption_topic import ADOPTIONS, TopicAdoptionLog
from subsidy.services.eligibility.adoption import AdoptionDesk
from subsidy.services.eligibility.model import Caller, OpenWorkFound

pytestmark = pytest.mark.integration

NOW = dt.datetime(2025, 11, 3, 9, 0, tzinfo=dt.UTC)
FINAL = "fictional-final-2023"
POLICY = load_policy()


def demo(application_id):
    from subsidy.contracts.codec import parse_application

    with open("demo/applications.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip() and json.loads(line)["application_id"] == application_id:
                return parse_application(json.loads(line))
    raise KeyError(application_id)


@pytest.fixture
def topic(kafka_bootstrap):
    spec = dataclasses.replace(ADOPTIONS, name=f"it.adoptions.{uuid.uuid4().hex[:8]}")
    platform_topics.ensure_topics(kafka_bootstrap, [spec])
    return spec.name


class NothingOpen:
    """The OpenWork port with no open application and no noticed award (what
    an adoption re-decides is not what this test is about: ADR 0021's is
    tests/e2e/test_adoption.py)."""

    def find(self, caller):
        return OpenWorkFound((), (), "none")


def instance(bootstrap, topic):
    routed = []
    desk = AdoptionDesk(
        load_versions(),
        TopicAdoptionLog(bootstrap, topic),
        lambda: NOW,
        routed.append,
        POLICY,
        open_work=NothingOpen(),
    )
    desk.refresh()
    return desk, routed


def reviewer(subject):
    return Caller(subject, "REVIEWER")


def test_two_instances_share_one_adoption(kafka_bootstrap, topic):
    final_version = load_versions().get(FINAL).policy.version
    a, routed_a = instance(kafka_bootstrap, topic)
    b, routed_b = instance(kafka_bootstrap, topic)
    step = dict(version_id=FINAL, policy_version=final_version, reason="")
    assert a.adopt(caller=reviewer("reviewer-a"), **step).event["event"] == "proposed"
    # The other instance shows the pending proposal (ListVersions' read side), read from the topic.
    pending = b.overview()
    [final] = [v for v in pending.versions if v.version_id == FINAL]
    assert (final.status, final.proposal.proposed_by, final.proposal_current) == ("candidate", "reviewer-a", True)
    assert pending.trail == f"topic {topic}" and [e["event"] for e in pending.events] == ["proposed"]
    # The same reviewer on the other instance is still the same reviewer.
    with pytest.raises(FourEyes):
        b.adopt(caller=reviewer("reviewer-a"), **step)
    outcome = b.adopt(caller=reviewer("reviewer-b"), **step)
    assert (outcome.event["event"], outcome.event["proposed_by"]) == ("adopted", "reviewer-a")
    assert b.router is not None and len(routed_b) == 1
    # Instance a learns it from the topic (the server's follower calls refresh every second).
    assert a.router is None
    assert a.refresh() >= 2
    assert a.router is not None and len(routed_a) == 1
    later = demo("SJ-2024-0003")  # submitted after the final's effective date
    assert a.router.policy_for(later).version == b.router.policy_for(later).version == final_version
    assert rules.evaluate(later, a.router.policy_for(later)).policy_version == final_version
    # A third instance started afterwards holds the adoption from its first read.
    c, routed_c = instance(kafka_bootstrap, topic)
    assert c.router is not None and c.router.policy_for(later).version == final_version and len(routed_c) == 1
    # The trail keeps every step, the refusal too, in one order.
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False, group_id=None)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        records = []
        while len(records) < 3:
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(batch)
    finally:
        consumer.close()
    trail = [json.loads(r.value) for r in records]
    assert [(e["event"], e["subject"]) for e in trail] == [
        ("proposed", "reviewer-a"),
        ("refused", "reviewer-a"),
        ("adopted", "reviewer-b"),
    ]
    # Every instance's ListVersions: the same trail, each event once, and the version adopted.
    for desk in (a, b, c):
        seen = desk.overview()
        assert seen.events == trail and seen.earlier == 0
        [final] = [v for v in seen.versions if v.version_id == FINAL]
        assert (final.status, final.register_status, final.adoption.approved_by) == (
            "adopted",
            "candidate",
            "reviewer-b",
        )
    for desk in (a, b, c):
        desk.log.close()
