"""The intake service: the gRPC API where applications arrive (validation,
registry facts, the 名录, an outbox to `subsidy.applications.v1`) and where
their status is read back (a projection of the decisions and payout events).
Skeleton: subsidy/services/__init__.py. See docs/intake.md.
"""
