"""The notify service: informs enterprises of every step of their
application (decisions and payout events) by e-mail, webhook and SMS.
Skeleton: subsidy/services/__init__.py. See docs/notify.md."""
