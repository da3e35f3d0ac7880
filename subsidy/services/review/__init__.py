"""The review service (issue 12; docs/review.md): the review queue fed by
decisions with review_required, four-eyes by token subject, reviewed
decisions published on subsidy.decisions.v1, the public notice (公示) with its
objections, and LinePayable / LineWithdrawn on subsidy.notices.v1 when a
line's period closes. Same skeleton as payout (docs/architecture.md)."""
