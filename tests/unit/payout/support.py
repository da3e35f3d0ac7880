"""No tests here: decisions and payments to feed the payout core in unit tests."""

from __future__ import annotations

import datetime as dt

from subsidy.contracts import codec
from subsidy.core import credit_code
from subsidy.core.domain import Decision, Entitlement, LimitKind, Reason
from subsidy.services.payout.model import NoticeLine

FIRM = credit_code.complete("91310117MA1K7D2E")
OTHER_FIRM = credit_code.complete("91310117MA1K8Q3P")
RENT_CAP = 500_000_000  # 500万元


def rent_decision(
    application_id: str,
    amount_fen: int = 240_000_000,
    *,
    firm: str = FIRM,
    submitted_on: str = "2025-02-20",
    year: int | None = None,
    shares=(100,),
    outcome: str = "ELIGIBLE",
    policy_version: str = "v1+test",
) -> Decision:
    submitted = dt.date.fromisoformat(submitted_on)
    eligible = outcome == "ELIGIBLE"
    return Decision(
        decision_id=f"{application_id}@{policy_version}",
        application_id=application_id,
        credit_code=firm,
        clause="1.rent",
        outcome=outcome,
        max_award_fen=amount_fen if eligible else 0,
        reasons=(Reason("AWARD_BASIS", "1", "依据第1条"),) if eligible else (Reason("REVIEW_REQUIRED", "1", "需复核"),),
        policy_version=policy_version,
        decision_year=year or submitted.year,
        submitted_on=submitted,
        entitlements=(Entitlement("1.rent", LimitKind.CUMULATIVE_CAP, amount_fen, RENT_CAP),) if eligible else (),
        tranche_shares_percent=tuple(shares) if eligible else (),
    )


def decision_bytes(decision: Decision) -> bytes:
    return codec.decision_to_proto(decision).SerializeToString()


def line(
    decision: Decision,
    kind: str = "payable",
    day: str | None = None,
    *,
    notice_id: str = "N-2025-01",
    reason: str = "",
) -> NoticeLine:
    """The public-notice line of ``decision`` as payout reads it (what
    handlers.parse_notice_line makes of a LinePayable or LineWithdrawn). By
    default payable on the submission day, so every tranche is due on its
    day in its budget year, as before the notice gate."""
    return NoticeLine(
        kind=kind,
        event_id=f"{kind}:{decision.decision_id}",
        decision_id=decision.decision_id,
        application_id=decision.application_id,
        credit_code=decision.credit_code,
        notice_id=notice_id,
        day=dt.date.fromisoformat(day) if day else decision.submitted_on,
        reason=reason,
    )


def notice_event_bytes(
    decision: Decision, kind: str = "payable", day: str | None = None, *, notice_id: str = "N-2025-01", reason: str = ""
) -> bytes:
    """A subsidy.v1.NoticeEvent (LinePayable or LineWithdrawn) for ``decision``, as the review service publishes it."""
    from subsidy.v1 import notice_pb2

    on = day or decision.submitted_on.isoformat()
    event = notice_pb2.NoticeEvent(event_id=f"{kind}:{decision.decision_id}")
    common = dict(
        decision_id=decision.decision_id,
        application_id=decision.application_id,
        credit_code=decision.credit_code,
        notice_id=notice_id,
    )
    if kind == "payable":
        event.line_payable.CopyFrom(notice_pb2.LinePayable(**common, payable_on=on))
    else:
        event.line_withdrawn.CopyFrom(notice_pb2.LineWithdrawn(**common, withdrawn_on=on, reason=reason))
    return event.SerializeToString()
