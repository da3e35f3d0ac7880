"""notify: informs enterprises of every step of their application
(decisions and payout events) by e-mail, webhook and SMS. See docs/notify.md."""
