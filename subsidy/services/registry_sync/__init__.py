"""The registry-sync service: reads the government data platform's change
feed (docs/data-platform.md), folds each change into the firm's whole facts
and publishes them to the compacted topic subsidy.firms.v1 through an
outbox. Skeleton: subsidy/services/__init__.py. ADR 0016."""
