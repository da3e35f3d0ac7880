"""Prometheus metrics of the eligibility service.

The service's own counters live in a registry handed in by the composition
root (the process default one in production, a fresh one per test), so
building the service twice in one process does not collide. The metrics all
services share (Kafka, gRPC, dead letters, progress) come from
``subsidy.platform.metrics`` and are always in the default registry.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from subsidy.platform import metrics as shared

CONSUMER = "eligibility"
PRODUCER = "eligibility"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else REGISTRY
        self.decisions = shared.metric(
            Counter,
            "subsidy_decisions",
            "Decisions produced to the decisions topic, by clause and outcome.",
            ["clause", "outcome"],
            registry=self.registry,
        )
        self.dead_letters = shared.metric(
            Counter,
            "subsidy_dead_letters",
            "Messages a consumer could not process, sent to the dead-letter topic, by source topic and consumer.",
            ["topic", "consumer"],
            registry=self.registry,
        )
        # Shadow evaluation (issue 14): a candidate version beside the adopted one.
        self.shadow_decisions = shared.metric(
            Counter,
            "subsidy_shadow_decisions",
            "Applications decided under the shadow (candidate) policy version, by clause and whether the shadow "
            "decision agrees with the adopted one (result: agree or differ: outcome, ceiling or schedule).",
            ["clause", "result"],
            registry=self.registry,
        )
        self.shadow_failures = shared.metric(
            Counter,
            "subsidy_shadow_failures",
            "Applications the shadow policy version failed to decide (the adopted decision went out), by clause.",
            ["clause"],
            registry=self.registry,
        )
        # Adoption (issue 14): the open applications re-decided under the adopted version.
        self.redecisions = shared.metric(
            Counter,
            "subsidy_policy_redecisions",
            "Re-decisions published on subsidy.decisions.v1 when a policy version was adopted, by clause and outcome.",
            ["clause", "outcome"],
            registry=self.registry,
        )
        # What an adoption owes subsidy.decisions.v1 until the broker acknowledges it (outbox.py).
        self.redecision_publications = shared.metric(
            Counter,
            "subsidy_policy_redecision_publications",
            "Attempts to publish the re-decisions an adoption recorded in the trail, by trigger (adoption: the "
            "approving call; retry: start-up and the periodic retry) and result (published: the broker "
            "acknowledged every one; failed).",
            ["trigger", "result"],
            registry=self.registry,
        )
        self.redecisions_owed = shared.metric(
            Gauge,
            "subsidy_policy_redecisions_owed",
            "Re-decisions recorded with an adoption in the trail that the broker has not acknowledged yet, as this "
            "instance read the trail at its last attempt: above 0, open applications still hold their previous "
            "decisions.",
            registry=self.registry,
        )
        # Older names, kept for existing dashboards and tests; the contract's
        # names are subsidy_kafka_messages_{consumed,produced}_total.
        self.consumed = shared.metric(
            Counter,
            "subsidy_messages_consumed",
            "Records consumed, by topic.",
            ["topic"],
            registry=self.registry,
        )
        self.produced = shared.metric(
            Counter,
            "subsidy_messages_produced",
            "Records produced and acknowledged by the broker, by topic.",
            ["topic"],
            registry=self.registry,
        )
        self.kafka_consumed = shared.KAFKA_CONSUMED
        self.kafka_produced = shared.KAFKA_PRODUCED

    def value(self, name: str, **labels: str) -> float:
        """Current value of a counter sample, 0 if never counted (for tests and logs)."""
        return self.registry.get_sample_value(name, labels) or 0.0
