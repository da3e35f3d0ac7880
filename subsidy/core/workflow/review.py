"""Review (审核): which decisions people must look at, a review item's state
machine, and the reviewed decision it ends in
(../shared/policy/workflow.md "Review").

A review item is made from a computed decision with ``review_required``. Its
states:

    OPEN ──claim──► CLAIMED ──decide APPROVED──► APPROVED            (closed)
                      │  │                  └──► AWAITING_SECOND ──second approval──► APPROVED
                      │  ├─decide REJECTED───► REJECTED                (closed)
                      │  └─decide MORE_INFO_REQUESTED─► MORE_INFO_REQUESTED
                      │                                   └─answer──► CLAIMED
                      ◄──────────────────────────────────────────────┘
                      ◄── AWAITING_SECOND sent back by the second reviewer (amount cleared)

An APPROVED amount is at most the clause ceiling (the computed
``max_award_fen``: a reviewer confirms or lowers it, never raises it) or,
for a clause whose text sets no amount (13, 15), the manual award limit. Any
manual amount, and any amount at or above the four-eyes threshold, needs a
second reviewer's approval, from another subject than the first.

Every transition is a pure function returning the new item; a refused one
raises ``InvalidArgument`` (naming the field), ``FailedPrecondition`` or
``PermissionDenied`` and changes nothing. Times are passed in.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Mapping

from subsidy.core import clauses
from subsidy.core.clauses import AWARD_SET_BY_REVIEWER
from subsidy.core.domain import (
    ELIGIBLE,
    INELIGIBLE,
    NEEDS_REVIEW,
    Decision,
    Entitlement,
    LimitKind,
    Reason,
    ReviewRecord,
)
from subsidy.core.money import yuan
from subsidy.core.workflow import calendar
from subsidy.core.workflow.settings import Workflow

# -- why a decision goes to review ---------------------------------------------------------

NEEDS_REVIEW_OUTCOME = "NEEDS_REVIEW_OUTCOME"
ABOVE_FOUR_EYES_THRESHOLD = "ABOVE_FOUR_EYES_THRESHOLD"
REGISTRY_FACTS_CHANGED = "REGISTRY_FACTS_CHANGED"
#: A policy version adopted while the award was on a running notice changed its
#: amount: the new amount is reviewed, then noticed afresh (workflow.md).
POLICY_VERSION_IN_NOTICE = "POLICY_VERSION_IN_NOTICE"
REVIEW_REASONS = (NEEDS_REVIEW_OUTCOME, ABOVE_FOUR_EYES_THRESHOLD, REGISTRY_FACTS_CHANGED, POLICY_VERSION_IN_NOTICE)

# -- states and results --------------------------------------------------------------------

OPEN = "OPEN"
CLAIMED = "CLAIMED"
AWAITING_SECOND = "AWAITING_SECOND"
MORE_INFO_REQUESTED = "MORE_INFO_REQUESTED"
APPROVED = "APPROVED"
REJECTED = "REJECTED"
STATES = (OPEN, CLAIMED, AWAITING_SECOND, MORE_INFO_REQUESTED, APPROVED, REJECTED)
CLOSED = (APPROVED, REJECTED)
RESULTS = (APPROVED, REJECTED, MORE_INFO_REQUESTED)

BASIS_MAX = 2000
TEXT_MAX = 2000


class WorkflowError(ValueError):
    """A refused step; nothing changed."""


class InvalidArgument(WorkflowError):
    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field


class FailedPrecondition(WorkflowError):
    pass


class PermissionDenied(WorkflowError):
    pass


def review_reasons(decision: Decision, workflow: Workflow) -> tuple[str, ...]:
    """Why ``decision`` needs people before money moves; () when it does not."""
    reasons: list[str] = []
    if decision.review is not None:  # already a reviewed decision
        return ()
    if decision.outcome == NEEDS_REVIEW:
        reasons.append(NEEDS_REVIEW_OUTCOME)
    if decision.outcome == ELIGIBLE and decision.max_award_fen >= workflow.four_eyes_threshold_fen:
        reasons.append(ABOVE_FOUR_EYES_THRESHOLD)
    return tuple(reasons)


def stamp(decision: Decision, workflow: Workflow) -> Decision:
    """``decision`` with review_required and review_reasons set by the rule above."""
    reasons = review_reasons(decision, workflow)
    if not reasons:
        return decision
    return dataclasses.replace(decision, review_required=True, review_reasons=reasons)


def is_manual(decision: Decision) -> bool:
    """The text sets no amount: a reviewer sets it (clauses 13 and 15)."""
    clause = clauses.BY_ID.get(decision.clause)
    manual_clause = clause is not None and clause.inputs.award == AWARD_SET_BY_REVIEWER
    return decision.outcome == NEEDS_REVIEW or manual_clause


def reviewer_amount_fields(decision: Decision) -> tuple[str, ...]:
    """The claim amounts a reviewer may set for the decision's clause (Inputs.reviewer_amounts)."""
    clause = clauses.BY_ID.get(decision.clause)
    return clause.inputs.reviewer_amounts if clause is not None else ()


def item_id_for(decision_id: str) -> str:
    """Derived from the decision id: a redelivered decision lands on the same item."""
    return "rv-" + hashlib.sha256(decision_id.encode()).hexdigest()[:20]


#: Between the decision a reviewed decision supersedes and its item, in the reviewed decision's id.
REVIEWED_SEPARATOR = "/review:"


def reviewed_decision_id(supersedes: str, item_id: str) -> str:
    return f"{supersedes}{REVIEWED_SEPARATOR}{item_id}"


def reviewed_item_id(decision_id: str) -> str:
    """The item a reviewed decision's id names (``<supersedes>/review:<item>``); "" for any other id."""
    supersedes, sep, item_id = decision_id.rpartition(REVIEWED_SEPARATOR)
    return item_id if sep and supersedes and item_id else ""


# -- the item ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ReviewItem:
    item_id: str
    decision: Decision  # the computed decision under review (never applied)
    reasons: tuple[str, ...]
    queued_on: dt.date
    status: str = OPEN
    assignee: str = ""
    amount_fen: int = 0
    basis: str = ""
    reviewer_amounts: tuple[tuple[str, int], ...] = ()
    rejection_reasons: str = ""
    first_reviewer: str = ""
    second_reviewer: str = ""
    info_requests: tuple[str, ...] = ()  # what is missing, one per request
    info_answers: tuple[str, ...] = ()  # one per request at most
    decided_at: str = ""
    returns: tuple[str, ...] = ()  # why a second reviewer sent a first approval back, one per time

    @property
    def decision_round(self) -> int:
        """1 for the first decision, 2 after one send-back, ... (event ids count rounds)."""
        return len(self.returns) + 1

    @property
    def closed(self) -> bool:
        return self.status in CLOSED

    @property
    def manual(self) -> bool:
        return is_manual(self.decision)

    def closed_with(self, decision_id: str) -> bool:
        """Is ``decision_id`` the reviewed decision this item closed with? Such a
        decision is already reviewed: workflow.md's "new reviewed decision" for a
        change to an award in notice, to be noticed afresh, not reviewed again."""
        return self.closed and reviewed_decision_id(self.decision.decision_id, self.item_id) == decision_id

    def deadline(self, workflow: Workflow) -> dt.date:
        """The last working day of the review deadline, counted from the day the item was queued."""
        return calendar.add_working_days(self.queued_on, workflow.review_deadline_working_days)

    def overdue(self, today: dt.date, workflow: Workflow) -> bool:
        return not self.closed and today > self.deadline(workflow)

    def ceiling_fen(self, workflow: Workflow) -> tuple[str, int]:
        """(what limits the amount, the limit)."""
        if self.manual:
            return "manual_award_limit_fen", workflow.manual_award_limit_fen
        return "max_award_fen", self.decision.max_award_fen

    def needs_second(self, amount_fen: int, workflow: Workflow) -> bool:
        """workflow.md: "Any manual amount, and any amount at or above the
        four-eyes threshold, needs a second reviewer's approval." An amount a
        reviewer lowered is a manual amount too: otherwise one person could
        set an award just under the threshold alone."""
        lowered = amount_fen != self.decision.max_award_fen
        return self.manual or lowered or amount_fen >= workflow.four_eyes_threshold_fen


def new_item(decision: Decision, queued_on: dt.date) -> ReviewItem:
    if not decision.review_required:
        raise InvalidArgument("review_required", f"decision {decision.decision_id} does not need review")
    return ReviewItem(item_id_for(decision.decision_id), decision, decision.review_reasons, queued_on)


def _open(item: ReviewItem, action: str) -> None:
    if item.closed:
        raise FailedPrecondition(f"review item {item.item_id} is closed ({item.status}): cannot {action}")


def _subject(subject: str) -> str:
    subject = subject.strip()
    if not subject:
        raise PermissionDenied("a review step needs an identified subject (the token's sub)")
    return subject


def claim(item: ReviewItem, subject: str) -> ReviewItem:
    subject = _subject(subject)
    _open(item, "claim it")
    if item.status == OPEN:
        return dataclasses.replace(item, status=CLAIMED, assignee=subject)
    if item.assignee == subject and item.status == CLAIMED:
        return item  # claiming again: nothing changes
    raise FailedPrecondition(f"review item {item.item_id} is {item.status}, assigned to {item.assignee!r}")


def _text(field: str, value: str, limit: int = TEXT_MAX) -> str:
    value = value.strip()
    if not value:
        raise InvalidArgument(field, "is required")
    if len(value) > limit:
        raise InvalidArgument(field, f"at most {limit} characters, got {len(value)}")
    return value


def decide(
    item: ReviewItem,
    subject: str,
    result: str,
    workflow: Workflow,
    at: str,
    *,
    amount_fen: int = 0,
    basis: str = "",
    reasons: str = "",
    missing: str = "",
    reviewer_amounts: Mapping[str, int] | None = None,
) -> ReviewItem:
    """The assignee's decision. Validates everything before changing anything."""
    subject = _subject(subject)
    _open(item, "decide it")
    if item.status != CLAIMED:
        raise FailedPrecondition(f"review item {item.item_id} is {item.status}: only a CLAIMED item is decided")
    if item.assignee != subject:
        raise PermissionDenied(f"review item {item.item_id} is assigned to {item.assignee!r}, not to {subject!r}")
    if result == APPROVED:
        basis = _text("basis", basis, BASIS_MAX)
        if type(amount_fen) is not int or amount_fen <= 0:
            raise InvalidArgument(
                "amount_fen", f"an approved amount is a positive whole number of fen, got {amount_fen}"
            )
        limit_name, limit = item.ceiling_fen(workflow)
        if amount_fen > limit:
            raise InvalidArgument(
                "amount_fen",
                f"{amount_fen} fen ({yuan(amount_fen)}) is above the {limit_name} of {limit} fen ({yuan(limit)})",
            )
        allowed = reviewer_amount_fields(item.decision)
        amounts: list[tuple[str, int]] = []
        for name, value in sorted((reviewer_amounts or {}).items()):
            if name not in allowed:
                raise InvalidArgument(
                    f"reviewer_amounts[{name}]",
                    f"not an amount a reviewer sets for clause {item.decision.clause} (allowed: {', '.join(allowed) or 'none'})",
                )
            if type(value) is not int or value < 0:
                raise InvalidArgument(f"reviewer_amounts[{name}]", f"a whole number of fen, at least 0, got {value}")
            amounts.append((name, value))
        second = item.needs_second(amount_fen, workflow)
        return dataclasses.replace(
            item,
            status=AWAITING_SECOND if second else APPROVED,
            amount_fen=amount_fen,
            basis=basis,
            reviewer_amounts=tuple(amounts),
            first_reviewer=subject,
            decided_at="" if second else at,
        )
    if result == REJECTED:
        why = _text("reasons", reasons)
        return dataclasses.replace(item, status=REJECTED, rejection_reasons=why, first_reviewer=subject, decided_at=at)
    if result == MORE_INFO_REQUESTED:
        what = _text("missing", missing)
        return dataclasses.replace(item, status=MORE_INFO_REQUESTED, info_requests=(*item.info_requests, what))
    raise InvalidArgument("result", f"one of {', '.join(RESULTS)}, got {result!r}")


def answer_information(item: ReviewItem, answer: str, request_number: int) -> ReviewItem:
    """The firm answers the open request (``request_number``, 1-based), once."""
    _open(item, "answer it")
    if request_number < 1 or request_number > len(item.info_requests):
        raise InvalidArgument(
            "request_number",
            f"no information request {request_number} on item {item.item_id} ({len(item.info_requests)} made)",
        )
    if request_number <= len(item.info_answers):
        raise FailedPrecondition(f"information request {request_number} of item {item.item_id} was already answered")
    if item.status != MORE_INFO_REQUESTED or request_number != len(item.info_requests):
        raise FailedPrecondition(f"review item {item.item_id} is not waiting for an answer to request {request_number}")
    text = _text("answer", answer)
    return dataclasses.replace(item, status=CLAIMED, info_answers=(*item.info_answers, text))


def second_approve(item: ReviewItem, subject: str, at: str) -> ReviewItem:
    subject = _subject(subject)
    _open(item, "approve it")
    if item.status != AWAITING_SECOND:
        raise FailedPrecondition(f"review item {item.item_id} is {item.status}: it awaits no second approval")
    if subject == item.first_reviewer:
        raise PermissionDenied(
            f"four-eyes: {subject!r} made the first approval of item {item.item_id}; "
            "the second must come from another reviewer"
        )
    return dataclasses.replace(item, status=APPROVED, second_reviewer=subject, decided_at=at)


def send_back(item: ReviewItem, subject: str, reasons: str) -> ReviewItem:
    """The second reviewer does not approve: the item returns to its first
    reviewer (CLAIMED), the proposed amount and basis cleared, with why."""
    subject = _subject(subject)
    _open(item, "send it back")
    if item.status != AWAITING_SECOND:
        raise FailedPrecondition(f"review item {item.item_id} is {item.status}: it awaits no second approval")
    if subject == item.first_reviewer:
        raise PermissionDenied(
            f"four-eyes: {subject!r} made the first approval of item {item.item_id}; only another reviewer sends it back"
        )
    why = _text("reasons", reasons)
    return dataclasses.replace(
        item,
        status=CLAIMED,
        amount_fen=0,
        basis="",
        reviewer_amounts=(),
        first_reviewer="",
        returns=(*item.returns, why),
    )


# -- the decision a closed item becomes ----------------------------------------------------


def reviewed_decision(item: ReviewItem, workflow: Workflow) -> Decision:
    """The new decision for the same application (derived id, the reviewers,
    the basis, the same policy version and decision year) that supersedes the
    computed one; the ledger applies it like any other."""
    if not item.closed:
        raise FailedPrecondition(f"review item {item.item_id} is {item.status}: not decided yet")
    d = item.decision
    item_no = d.clause.split(".")[0]
    reviewers = tuple(s for s in (item.first_reviewer, item.second_reviewer) if s)
    record = ReviewRecord(
        supersedes_decision_id=d.decision_id,
        item_id=item.item_id,
        reviewers=reviewers,
        basis=item.basis if item.status == APPROVED else item.rejection_reasons,
        result=item.status,
        decided_at=item.decided_at,
    )
    item_no_reason = Reason("REVIEW_APPROVED", item_no, f"经审核核定补贴{yuan(item.amount_fen)}：{item.basis}")
    outcome, amount = ELIGIBLE, item.amount_fen
    shares: tuple[int, ...] = ()
    entitlements: tuple[Entitlement, ...] = ()
    if item.status == REJECTED:
        outcome, amount = INELIGIBLE, 0
        reasons: tuple[Reason, ...] = (Reason("REVIEW_REJECTED", item_no, f"经审核不予支持：{item.rejection_reasons}"),)
    elif item.manual:
        entitlements = (
            Entitlement(f"{d.clause}/application_id={d.application_id}", LimitKind.ONCE, item.amount_fen, 0),
        )
        shares = workflow.manual_award_tranche_shares_percent
        reasons = (item_no_reason,)
    else:
        entitlements = lowered(d.entitlements, item.amount_fen)
        shares = d.tranche_shares_percent
        reasons = (*d.reasons, item_no_reason)
    return Decision(
        decision_id=reviewed_decision_id(d.decision_id, item.item_id),
        application_id=d.application_id,
        credit_code=d.credit_code,
        clause=d.clause,
        outcome=outcome,
        max_award_fen=amount,
        reasons=reasons,
        policy_version=d.policy_version,
        decision_year=d.decision_year,
        submitted_on=d.submitted_on,
        entitlements=entitlements,
        tranche_shares_percent=shares,
        review=record,
    )


def lowered(lines: tuple[Entitlement, ...], amount_fen: int) -> tuple[Entitlement, ...]:
    """The computed lines cut down, in order, to ``amount_fen`` in all (a reviewer
    confirms or lowers a ceiling, never raises it); lines left at 0 are dropped."""
    out: list[Entitlement] = []
    left = amount_fen
    for line in lines:
        take = min(line.amount_fen, left)
        if take > 0:
            out.append(dataclasses.replace(line, amount_fen=take))
        left -= take
    if left > 0:
        raise InvalidArgument("amount_fen", f"above the computed lines' total by {left} fen")
    return tuple(out)
