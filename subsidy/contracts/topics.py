"""Kafka topics: names, partitions and retention (the contract). Created by
subsidy.platform.topics, idempotently.

Names carry the schema version (`.v1`): a breaking change to an event gets a
new topic beside the old one, so consumers migrate on their own schedule.
The key of every event is the firm's credit code, so one firm's events stay
in order on one partition.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    purpose: str = ""


# Applications and decisions are the programme's record: kept for ten years
# (retention is a backstop; the stores hold the audit trail too).
_RECORD = {"cleanup.policy": "delete", "retention.ms": str(3650 * DAY_MS)}
# Dead letters wait for a person: kept 90 days.
_DLQ = {"cleanup.policy": "delete", "retention.ms": str(90 * DAY_MS)}

APPLICATIONS = TopicSpec("subsidy.applications.v1", 6, _RECORD, "Application (protobuf), key credit code, from intake")
DECISIONS = TopicSpec("subsidy.decisions.v1", 6, _RECORD, "Decision (protobuf), key credit code, from eligibility")
APPLICATIONS_DLQ = TopicSpec(
    "subsidy.applications.v1.dlq", 1, _DLQ, "DeadLetter: application messages eligibility could not process"
)
DECISIONS_DLQ = TopicSpec(
    "subsidy.decisions.v1.dlq", 1, _DLQ, "DeadLetter: decision messages a consumer could not process"
)

PAYOUTS = TopicSpec(
    "subsidy.payouts.v1",
    6,
    _RECORD,
    "PayoutEvent (protobuf: GrantRecorded, TrancheScheduled, TrancheDue, TrancheCancelled, TranchePaid), key credit code, from payout, for finance",
)
PAYMENTS = TopicSpec("subsidy.payments.v1", 6, _RECORD, "PaymentConfirmed (protobuf), key credit code, from finance")
PAYOUTS_DLQ = TopicSpec("subsidy.payouts.v1.dlq", 1, _DLQ, "DeadLetter: payout events a consumer could not process")
PAYMENTS_DLQ = TopicSpec("subsidy.payments.v1.dlq", 1, _DLQ, "DeadLetter: payment confirmations payout could not apply")
# Firm facts: the latest record per firm is the truth (compacted), kept
# forever; a tombstone removes a firm the platform no longer knows.
_COMPACTED = {"cleanup.policy": "compact", "min.compaction.lag.ms": str(DAY_MS)}
FIRMS = TopicSpec(
    "subsidy.firms.v1",
    6,
    _COMPACTED,
    "FirmFacts (protobuf: a firm's facts from the government data platform as of a day), key credit code, "
    "compacted, from registry-sync",
)
FIRMS_DLQ = TopicSpec(
    "subsidy.firms.v1.dlq",
    1,
    _DLQ,
    "DeadLetter: firm facts a consumer could not use, and feed changes registry-sync could not",
)
# 免申即享 proposals (issue 13, item 4): a record of the programme like the applications.
PROPOSALS = TopicSpec(
    "subsidy.proposals.v1",
    6,
    _RECORD,
    "ProposalEvent (protobuf: a 免申即享 proposal created, confirmed, declined or expired), key credit code, from intake",
)
REVIEWS = TopicSpec(
    "subsidy.reviews.v1",
    6,
    _RECORD,
    "ReviewEvent (protobuf: each step of a review, four-eyes included), key credit code, from review",
)
NOTICES = TopicSpec(
    "subsidy.notices.v1",
    6,
    _RECORD,
    "NoticeEvent (protobuf: public notice 公示 published, objections, lines payable or withdrawn), key credit code, from review",
)
# Shadow decisions (issue 14): a candidate policy version's decision beside
# the adopted one's, for the difference report; never read by review or the
# payout ledger. Kept like the decisions, as the record of what was compared.
SHADOW_DECISIONS = TopicSpec(
    "subsidy.decisions.shadow.v1",
    6,
    _RECORD,
    "Decision (protobuf) under a candidate policy version (shadow evaluation), key credit code, from eligibility; "
    "never applied",
)
NOTICES_DLQ = TopicSpec("subsidy.notices.v1.dlq", 1, _DLQ, "DeadLetter: notice events a consumer could not process")
NOTIFICATIONS_DLQ = TopicSpec(
    "subsidy.notifications.v1.dlq", 1, _DLQ, "DeadLetter: events notify could not deliver after its retries"
)

#: The audit trail of policy version adoptions (ADR 0018): every proposal,
#: adoption and refusal, read by every eligibility instance from its beginning;
#: kept forever (retention.ms -1) and one partition, so the trail has one order.
POLICY_ADOPTIONS = TopicSpec(
    "subsidy.policy.adoptions.v1",
    1,
    {"cleanup.policy": "delete", "retention.ms": "-1"},
    "Adoption events of policy versions (JSON: proposed, adopted, refused), key the version id; eligibility's own",
)

ALL = (
    APPLICATIONS,
    DECISIONS,
    PAYOUTS,
    PAYMENTS,
    REVIEWS,
    NOTICES,
    FIRMS,
    PROPOSALS,
    SHADOW_DECISIONS,
    POLICY_ADOPTIONS,
    APPLICATIONS_DLQ,
    DECISIONS_DLQ,
    PAYOUTS_DLQ,
    PAYMENTS_DLQ,
    NOTICES_DLQ,
    FIRMS_DLQ,
    NOTIFICATIONS_DLQ,
)
