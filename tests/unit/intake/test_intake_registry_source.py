"""intake's registry adapter by SUBSIDY_REGISTRY_SOURCE (file, http, topic);
unset, what it always was: HTTP with SUBSIDY_REGISTRY_URL, else the file."""

from __future__ import annotations

import pytest

from subsidy.platform import topic_registry
from subsidy.platform.registry import FileRegistry, HttpRegistry
from subsidy.services.intake.bootstrap import build_registry
from subsidy.services.intake.config import Settings


def settings(**env: str) -> Settings:
    return Settings.from_env({"SUBSIDY_REGISTRY_FILE": "demo/registry.json", **env})


def test_unset_keeps_the_old_choice():
    assert isinstance(build_registry(settings()), FileRegistry)
    assert isinstance(build_registry(settings(SUBSIDY_REGISTRY_URL="http://127.0.0.1:1")), HttpRegistry)


def test_file_wins_over_a_url_when_asked_for():
    chosen = build_registry(settings(SUBSIDY_REGISTRY_SOURCE="file", SUBSIDY_REGISTRY_URL="http://127.0.0.1:1"))
    assert isinstance(chosen, FileRegistry)


def test_topic_reads_the_firm_facts_topic(monkeypatch):
    started = []
    monkeypatch.setattr(topic_registry.TopicRegistry, "start", lambda self: started.append(self) or self)
    chosen = build_registry(settings(SUBSIDY_REGISTRY_SOURCE="TOPIC", KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9"))
    assert isinstance(chosen, topic_registry.TopicRegistry) and started == [chosen]
    assert chosen.bootstrap == "127.0.0.1:9"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SUBSIDY_REGISTRY_SOURCE": "kafka"}, "SUBSIDY_REGISTRY_SOURCE: one of file, http, topic"),
        ({"SUBSIDY_REGISTRY_SOURCE": "http"}, "needs SUBSIDY_REGISTRY_URL"),
    ],
)
def test_a_wrong_source_is_refused_naming_the_variable(env, message):
    with pytest.raises(ValueError, match=message):
        build_registry(settings(**env))
