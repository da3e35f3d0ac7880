"""The payout service: the transactional ledger (caps, one-time awards,
multi-year tranches) and the events finance pays from.
Skeleton: subsidy/services/__init__.py. See docs/payout.md."""
