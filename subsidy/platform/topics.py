"""Creating the Kafka topics the contract names (subsidy.contracts.topics),
idempotently: what exists is left exactly as it is.

Services call ``ensure_all`` at start (and the outbox relay after a broker
failure); production also declares the same topics as Strimzi KafkaTopics
(deploy/k8s/base/kafka/topics.yaml), and tests/ops/test_k8s.py keeps the two
in step.

``SUBSIDY_KAFKA_TOPIC_CREATION=off`` (the prod overlay sets it: there the
KafkaTopic resources are the one source of truth) turns creation off:
``ensure_all`` then only checks that every topic exists and raises
``TopicsMissing`` naming the ones that do not, so a service never makes a
topic with its own partition count or configuration. Unset or ``on``:
created as before (dev, tests, ``make run``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from subsidy.contracts import topics
from subsidy.contracts.topics import TopicSpec
from subsidy.platform.security import kafka as kafka_security

#: ``on`` (default) or ``off``: whether services create missing topics (see the module).
CREATION_VARIABLE = "SUBSIDY_KAFKA_TOPIC_CREATION"


class TopicCreationFailed(RuntimeError):
    """The broker refused to create a topic (other than: it exists already)."""


class TopicsMissing(TopicCreationFailed):
    """Topic creation is off and topics the contract names do not exist."""

    def __init__(self, missing: list[str]):
        self.missing = sorted(missing)
        super().__init__(
            f"Kafka topic(s) missing and topic creation is off ({CREATION_VARIABLE}=off): "
            + ", ".join(self.missing)
            + " (declare them as KafkaTopic resources: deploy/k8s/base/kafka/topics.yaml)"
        )


def creation_enabled(env: Mapping[str, str] | None = None) -> bool:
    """``SUBSIDY_KAFKA_TOPIC_CREATION``: on (default) or off; anything else is refused, naming it."""
    value = (os.environ if env is None else env).get(CREATION_VARIABLE, "").strip().lower()
    if value in ("", "on", "true", "1"):
        return True
    if value in ("off", "false", "0"):
        return False
    raise ValueError(f"{CREATION_VARIABLE}: expected on or off, got {value!r}")


def check_topics(bootstrap: str, specs: Iterable[TopicSpec], *, timeout: float = 30.0) -> dict[str, str]:
    """``{name: "exists"}`` for every topic of ``specs``; TopicsMissing naming the ones the broker does not have."""
    from kafka import KafkaAdminClient

    wanted = [s.name for s in specs]
    if not wanted:
        return {}
    timeout_ms = int(timeout * 1000)
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="subsidy-check-topics",
        bootstrap_timeout_ms=timeout_ms,
        request_timeout_ms=timeout_ms,
        **kafka_security.client_config(),
    )
    try:
        existing = set(admin.list_topics())
    finally:
        admin.close()
    missing = [name for name in wanted if name not in existing]
    if missing:
        raise TopicsMissing(missing)
    return dict.fromkeys(wanted, "exists")


def ensure_topics(
    bootstrap: str, specs: Iterable[TopicSpec], *, replication_factor: int = -1, timeout: float = 30.0
) -> dict[str, str]:
    """Create the topics that do not exist yet; return ``{name: "created"|"exists"}``.

    ``replication_factor`` -1 is the broker's ``default.replication.factor``.
    A topic that already exists keeps its partitions and config. Returns once
    every topic has a leader for each partition.
    """
    from kafka import KafkaAdminClient
    from kafka import errors as Errors

    wanted = list(specs)
    if not wanted:
        return {}
    timeout_ms = int(timeout * 1000)
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="subsidy-ensure-topics",
        bootstrap_timeout_ms=timeout_ms,
        request_timeout_ms=timeout_ms,
        **kafka_security.client_config(),
    )
    try:
        request = {
            s.name: {
                "num_partitions": s.partitions,
                "replication_factor": replication_factor,
                "configs": {k: str(v) for k, v in s.config.items()},
            }
            for s in wanted
        }
        response = admin.create_topics(request, timeout_ms=timeout_ms, raise_errors=False)
        result: dict[str, str] = {}
        failures = []
        for topic in response["topics"]:
            error = Errors.for_code(topic["error_code"])
            if error is Errors.NoError:
                result[topic["name"]] = "created"
            elif error is Errors.TopicAlreadyExistsError:
                result[topic["name"]] = "exists"
            else:
                failures.append(f"{topic['name']}: {error.__name__} {topic.get('error_message') or ''}")
        if failures:
            raise TopicCreationFailed("creating topics failed: " + "; ".join(failures))
        admin.wait_for_topics(list(result), timeout_ms=timeout_ms)
        return result
    finally:
        admin.close()


def ensure_all(
    bootstrap: str, replication_factor: int = -1, timeout: float = 30.0, *, create: bool | None = None
) -> dict[str, str]:
    """Create every topic of the contract that does not exist yet; with
    creation off (``create`` False, or None and SUBSIDY_KAFKA_TOPIC_CREATION=off)
    only check that they all exist (TopicsMissing names those that do not)."""
    if create is None:
        create = creation_enabled()
    if not create:
        return check_topics(bootstrap, topics.ALL, timeout=timeout)
    return ensure_topics(bootstrap, topics.ALL, replication_factor=replication_factor, timeout=timeout)
