"""Prometheus counters of the eligibility service.

Counters live in a registry handed in by the composition root (the process
default one in production, a fresh one per test), so building the service
twice in one process does not collide.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else REGISTRY
        self.decisions = Counter(
            "subsidy_decisions", "Decisions produced to the decisions topic, by clause and outcome.",
            ["clause", "outcome"], registry=self.registry,
        )
        self.dead_letters = Counter(
            "subsidy_dead_letters", "Records given up on and sent to a dead-letter topic, by source topic and consumer.",
            ["topic", "consumer"], registry=self.registry,
        )
        self.consumed = Counter(
            "subsidy_messages_consumed", "Records consumed, by topic.", ["topic"], registry=self.registry,
        )
        self.produced = Counter(
            "subsidy_messages_produced", "Records produced and acknowledged by the broker, by topic.",
            ["topic"], registry=self.registry,
        )

    def value(self, name: str, **labels: str) -> float:
        """Current value of a counter sample, 0 if never counted (for tests and logs)."""
        return self.registry.get_sample_value(name, labels) or 0.0
