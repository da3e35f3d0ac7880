"""TopicRegistry's fold of subsidy.firms.v1 (subsidy/platform/topic_registry.py),
without a broker: highest feed_sequence wins, tombstones remove, unusable
records are skipped and counted, and nothing is answered before the topic is
read to its end. The same over the real broker: tests/integration/test_registry_sync.py."""

from __future__ import annotations

import pytest

from subsidy.platform import topic_registry
from subsidy.platform.registry import FileRegistry, HttpRegistry, RegistryUnavailable
from subsidy.platform.topic_registry import REJECTED, TopicRegistry, registry_from_source
from subsidy.v1 import firm_facts_pb2

CODE = "91310117313Q6C3D6G"
OTHER = "913101171K0HG2QW66"


def facts(code: str = CODE, seq: int = 1, *, registered: bool = True, name: str = "九科") -> bytes:
    return firm_facts_pb2.FirmFacts(
        credit_code=code,
        name=name,
        as_of="2026-03-01",
        registered_in_district=registered,
        tax_registered_in_district=True,
        independent_legal_person=True,
        kinds=["INDUSTRIAL"],
        contacts=firm_facts_pb2.FirmContacts(email="a@example.cn"),
        feed_sequence=seq,
    ).SerializeToString()


@pytest.fixture
def registry() -> TopicRegistry:
    reg = TopicRegistry("127.0.0.1:1")
    reg._ready.set()  # read to its end (the broker's part is the integration test's)
    return reg


def test_nothing_is_answered_before_the_topic_is_read_to_its_end():
    reg = TopicRegistry("127.0.0.1:1")
    reg.apply(CODE.encode(), facts())
    with pytest.raises(RegistryUnavailable, match="not read to its end"):
        reg.firm(CODE)


def test_the_highest_feed_sequence_wins(registry):
    assert registry.apply(CODE.encode(), facts(seq=5, registered=False)) == "kept"
    assert registry.apply(CODE.encode(), facts(seq=3, registered=True)) == "older"
    assert registry.firm(CODE).firm.registered_in_district is False
    assert registry.apply(CODE.encode(), facts(seq=5, registered=False, name="九科二")) == "kept"
    assert registry.firm(CODE).firm.name == "九科二"
    assert registry.firm(CODE).contacts.email == "a@example.cn"
    assert registry.firm(OTHER) is None


def test_a_tombstone_removes_the_firm(registry):
    registry.apply(CODE.encode(), facts())
    assert registry.apply(CODE.encode(), None) == "removed"
    assert registry.firm(CODE) is None and registry.facts(CODE) is None


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (None, facts(), "no_key"),
        (CODE.encode(), b"\xff\xff\xff", "undecodable"),
        (OTHER.encode(), facts(CODE), "key_mismatch"),
        (CODE.encode(), facts(CODE[:-1] + "0"), "key_mismatch"),
    ],
)
def test_unusable_records_are_skipped_and_counted(registry, key, value, reason):
    before = REJECTED.labels(reason)._value.get()
    assert registry.apply(key, value) == f"rejected:{reason}"
    assert REJECTED.labels(reason)._value.get() == before + 1
    assert len(registry) == 0


def test_facts_the_contract_refuses_are_skipped(registry):
    bad = firm_facts_pb2.FirmFacts(credit_code=CODE, name="x", kinds=["SPACESHIP"], feed_sequence=1)
    assert registry.apply(CODE.encode(), bad.SerializeToString()) == "rejected:invalid"
    assert registry.firm(CODE) is None


def test_the_source_setting_chooses_the_adapter(monkeypatch):
    assert isinstance(registry_from_source("", file="demo/registry.json"), FileRegistry)
    assert isinstance(registry_from_source("", url="http://127.0.0.1:1"), HttpRegistry)
    assert isinstance(registry_from_source("file", url="http://127.0.0.1:1", file="demo/registry.json"), FileRegistry)
    started = []
    monkeypatch.setattr(topic_registry.TopicRegistry, "start", lambda self: started.append(self) or self)
    reg = registry_from_source("topic", bootstrap="127.0.0.1:9092")
    assert isinstance(reg, TopicRegistry) and started == [reg]
    with pytest.raises(ValueError, match="SUBSIDY_REGISTRY_SOURCE: one of file, http, topic"):
        registry_from_source("kafka")
    with pytest.raises(ValueError, match="needs KAFKA_BOOTSTRAP_SERVERS"):
        registry_from_source("topic")
    with pytest.raises(ValueError, match="needs SUBSIDY_REGISTRY_URL"):
        registry_from_source("http")
