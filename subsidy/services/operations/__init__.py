"""The operations service (issue 15; docs/operations-service.md, ADR 0019):
reads every dead-letter topic (``*.dlq``) into its own database, lists the
letters per topic with the original record decoded, and lets an OPERATOR
replay a letter to its original topic (through an outbox) or discard it with
a reason, each step audited with the operator's token subject. Skeleton:
subsidy/services/__init__.py."""
