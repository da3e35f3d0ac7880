"""Creating the Kafka topics the contract names (subsidy.contracts.topics),
idempotently: what exists is left exactly as it is.

Services call ``ensure_all`` at start (and the outbox relay after a broker
failure); production also declares the same topics as Strimzi KafkaTopics
(deploy/k8s/base/kafka/topics.yaml), and tests/ops/test_k8s.py keeps the two
in step.
"""

from __future__ import annotations

from collections.abc import Iterable

from subsidy.contracts import topics
from subsidy.contracts.topics import TopicSpec
from subsidy.platform.security import kafka as kafka_security


class TopicCreationFailed(RuntimeError):
    """The broker refused to create a topic (other than: it exists already)."""


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


def ensure_all(bootstrap: str, replication_factor: int = -1, timeout: float = 30.0) -> dict[str, str]:
    """Create every topic of the contract that does not exist yet."""
    return ensure_topics(bootstrap, topics.ALL, replication_factor=replication_factor, timeout=timeout)
