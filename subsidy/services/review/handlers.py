"""Review's use cases over ports.py's unit of work; no Kafka, gRPC or SQL.

Each use case checks everything first (the rules raise InvalidArgument,
FailedPrecondition or PermissionDenied, NotFound here) and then writes the
new state, one append-only audit entry per change (who, what, when, before,
after) and the events announcing it, in one commit. A refused step writes
nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from subsidy.contracts import codec
from subsidy.contracts import events as contract_events
from subsidy.core.dates import rfc3339
from subsidy.core.domain import Decision
from subsidy.core.workflow import notice as notice_rules
from subsidy.core.workflow import review as rules
from subsidy.core.workflow.calendar import CalendarNotCovered
from subsidy.core.workflow.notice import Objection
from subsidy.core.workflow.review import ReviewItem
from subsidy.core.workflow.settings import WorkflowSettings
from subsidy.platform import paging
from subsidy.services.review import events
from subsidy.services.review.model import (
    Actor,
    AuditEntry,
    GrantRow,
    InvalidArgument,
    LineRow,
    NotFound,
    NoticePoolEmpty,
    NoticeRow,
    PermissionDenied,
    Rejected,
)
from subsidy.services.review.ports import UnitOfWork
from subsidy.v1 import notice_pb2, payout_pb2, review_pb2

SYSTEM = Actor("system:review", "SYSTEM")
MAX_PAGE = 200
DEFAULT_PAGE = 50


def _json(value: Any) -> str:
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def item_state(item: ReviewItem | None) -> dict[str, Any] | None:
    """What the audit trail records of an item (the computed decision is named, not copied)."""
    if item is None:
        return None
    out = dataclasses.asdict(item)
    out.pop("decision")
    out["decision_id"] = item.decision.decision_id
    return out


#: Stored for an item whose deadline the holiday calendar cannot count yet (a year the
#: chinesecalendar release does not know): never overdue until the package is upgraded.
NO_DEADLINE = dt.date.max


def deadline_of(item: ReviewItem, workflow: WorkflowSettings) -> dt.date:
    """The item's review deadline, or NO_DEADLINE when its year's working days are not known:
    an item is never lost (nor a step refused) for want of a calendar."""
    try:
        return item.deadline(workflow.on(item.queued_on))
    except CalendarNotCovered:
        return NO_DEADLINE


def _audit(uow: UnitOfWork, actor: Actor, action: str, target: str, before: Any, after: Any, at: str) -> None:
    uow.audit.add(actor.subject, actor.role, action, target, _json(before), _json(after), at)


# -- the queue, fed by subsidy.decisions.v1 ------------------------------------------------


def parse_decision(value: bytes | None) -> Decision:
    if not value:
        raise Rejected("empty record: not a Decision")
    try:
        # The contract's decoder: the ids it requires, the application id's grammar.
        return codec.decision_from_proto(contract_events.decision(value))
    except Exception as exc:  # noqa: BLE001 - any decoding failure is a dead letter
        raise Rejected(f"not a valid Decision: {type(exc).__name__}: {exc}"[:300]) from None


def queue_decision(
    uow: UnitOfWork, decision: Decision, workflow: WorkflowSettings, today: dt.date, now: dt.datetime, trace_id: str
) -> str:
    """A decision with review_required becomes an item (once: by its derived
    id); so does a re-decision at a policy version's adoption whose award is
    on a notice still running (POLICY_VERSION_IN_NOTICE: workflow.md, "a
    change to an award in notice is a new reviewed decision"); others are
    ignored. Returns queued, replayed or ignored."""
    if decision.review is not None or not (decision.review_required or decision.supersedes_decision_id):
        return "ignored"
    at = rfc3339(now)
    with uow:
        if not decision.review_required:
            if not _in_notice(uow, decision):
                return "ignored"
            decision = dataclasses.replace(decision, review_required=True, review_reasons=(IN_NOTICE,))
        elif decision.supersedes_decision_id and IN_NOTICE not in decision.review_reasons and _in_notice(uow, decision):
            # Reviewed for its own reasons too: the reviewer is also told the public saw the old amount.
            decision = dataclasses.replace(decision, review_reasons=(*decision.review_reasons, IN_NOTICE))
        item = rules.new_item(decision, today)
        deadline = deadline_of(item, workflow)  # stored, so ListQueue filters overdue items in SQL
        if not uow.items.add(item, deadline, trace_id, at):
            return "replayed"
        _audit(uow, SYSTEM, "QUEUED", item.item_id, None, item_state(item), at)
        body = review_pb2.ReviewRequested(
            item_id=item.item_id,
            decision_id=decision.decision_id,
            application_id=decision.application_id,
            credit_code=decision.credit_code,
            clause=decision.clause,
            review_reasons=list(item.reasons),
            queued_on=today.isoformat(),
        )
        uow.outbox.add(
            [
                events.review_event(
                    f"requested:{item.item_id}", "review_requested", body, decision.credit_code, trace_id, now
                )
            ],
            at,
        )
        uow.commit()
    return "queued"


# -- the ledger projection and the applications (subsidy.payouts.v1, subsidy.applications.v1) --


#: A grant or notice line whose decision another decision superseded (a policy
#: version's adoption, issue 14): off the pool, never payable at its amount.
SUPERSEDED = "SUPERSEDED"
#: An adjusted grant whose old amount was on a running notice and whose
#: decision is not itself reviewed: off the pool until its review (IN_NOTICE)
#: is decided and the reviewed amount adjusts it.
AWAITING_REVIEW = "AWAITING_REVIEW"
#: The review reason of such a re-decision.
IN_NOTICE = rules.POLICY_VERSION_IN_NOTICE


def _in_notice(uow: UnitOfWork, decision: Decision) -> bool:
    """Is the award this re-decision supersedes on a notice whose period runs?
    Either its line is still NOTICED, or the ledger's adjustment arrived first
    and record_adjustment already holds the new grant for review."""
    for g in uow.grants.of_firm(decision.credit_code):
        if g.application_id != decision.application_id:
            continue
        if g.decision_id == decision.decision_id:
            if g.state == AWAITING_REVIEW:
                return True
            continue
        if g.notice_id and g.state == "RESERVED":
            line = uow.lines.get(f"{g.notice_id}/{g.decision_id}")
            if line is not None and line.status == notice_rules.NOTICED:
                return True
    return False


def _reviewed(uow: UnitOfWork, decision_id: str) -> bool:
    """Is this the reviewed decision of an item review closed? (A re-decision
    that needed review for the usual reasons is held by the ledger, which then
    supersedes the old grant with its reviewed decision: no item will ever be
    opened for that one, and none is needed.)"""
    item_id = rules.reviewed_item_id(decision_id)
    item = uow.items.get(item_id) if item_id else None
    return item is not None and item.closed_with(decision_id)


def record_payout_event(uow: UnitOfWork, value: bytes | None, now: dt.datetime) -> str:
    """GrantRecorded with an amount fills the pool of awards to notice;
    GrantAdjusted replaces the grant's decision (``record_adjustment``); every
    other event is ignored, its content left to its readers."""
    try:  # a GrantRecorded or GrantAdjusted goes on a public notice: its ids as the contract has them
        event = contract_events.payout_event(value, checked_kinds=("grant_recorded", "grant_adjusted"))
    except contract_events.MalformedEvent as exc:
        raise Rejected(str(exc)[:300]) from None
    if event.WhichOneof("event") == "grant_adjusted":
        return record_adjustment(uow, event.grant_adjusted, now)
    if event.WhichOneof("event") != "grant_recorded":
        return "ignored"
    g = event.grant_recorded
    if not g.decision_id or not g.credit_code:
        raise Rejected("GrantRecorded without decision_id or credit_code")
    state = payout_pb2.GrantState.Name(g.state).removeprefix("GRANT_STATE_")
    grant = GrantRow(
        g.decision_id, g.application_id, g.credit_code, g.clause, int(g.granted_fen), int(g.decision_year), "", state
    )
    with uow:
        added = uow.grants.add(grant, rfc3339(now))
        uow.commit()
    return "recorded" if added else "replayed"


def record_adjustment(uow: UnitOfWork, adjusted: Any, now: dt.datetime) -> str:
    """A RESERVED grant now holds a superseding decision (issue 14): the new
    decision's grant joins the pool at its amount (the next notice lists it);
    the old one leaves it (SUPERSEDED). If the old one is on a notice whose
    line still runs (NOTICED), that line is SUPERSEDED too: it never becomes
    payable at the amount it showed, and takes no objection; a new grant
    whose decision is not yet reviewed waits for its review (AWAITING_REVIEW,
    the item queue_decision opens), whose reviewed decision adjusts it again
    and is then noticed afresh; one whose decision is the reviewed decision
    of a closed item (a re-decision the ledger held for review, reviewed
    during the period) already is that new reviewed decision: it joins the
    pool. A line held by an objection, payable or withdrawn is left as it is
    (the ledger refuses a line naming a superseded decision).
    Returns adjusted, or replayed for a GrantAdjusted already recorded."""
    if not adjusted.decision_id or not adjusted.previous_decision_id or not adjusted.credit_code:
        raise Rejected("GrantAdjusted without decision_id, previous_decision_id or credit_code")
    at = rfc3339(now)
    state = payout_pb2.GrantState.Name(adjusted.state).removeprefix("GRANT_STATE_")
    grant = GrantRow(
        adjusted.decision_id,
        adjusted.application_id,
        adjusted.credit_code,
        adjusted.clause,
        int(adjusted.granted_fen),
        int(adjusted.decision_year),
        "",
        state,
    )
    with uow:
        firm = uow.grants.of_firm(adjusted.credit_code)
        if any(g.decision_id == adjusted.decision_id for g in firm):
            return "replayed"
        old = next((g for g in firm if g.decision_id == adjusted.previous_decision_id), None)
        before = dataclasses.asdict(old) if old is not None else None
        running = None
        if old is not None and old.notice_id:
            line = uow.lines.get(f"{old.notice_id}/{old.decision_id}")
            running = line if line is not None and line.status == notice_rules.NOTICED else None
        if running is not None and not _reviewed(uow, adjusted.decision_id):
            # The public saw the old amount: the new one is reviewed (its item is
            # queued from the re-decision itself) before it goes on a notice. A
            # reviewed decision already is that review: it goes on the next notice.
            grant = dataclasses.replace(grant, state=AWAITING_REVIEW)
        uow.grants.add(grant, at)
        line_superseded = ""
        if old is not None:
            uow.grants.set_state(old.decision_id, SUPERSEDED)
        if running is not None:
            uow.lines.set_status(running.line_id, SUPERSEDED, "", at)
            line_superseded = running.line_id
        _audit(
            uow,
            SYSTEM,
            "GRANT_ADJUSTED",
            adjusted.application_id,
            before,
            {"grant": dataclasses.asdict(grant), "line_superseded": line_superseded},
            at,
        )
        uow.commit()
    return "adjusted"


def record_application(uow: UnitOfWork, value: bytes | None, now: dt.datetime) -> str:
    """Keep the application for GetItem and the firm name for the notice list."""
    try:
        app = contract_events.application(value)
    except contract_events.MalformedEvent as exc:
        raise Rejected(str(exc)[:300]) from None
    if not app.application_id:
        raise Rejected("Application without application_id")
    try:
        codec.parse_identifier(app.application_id, "application_id")
    except codec.BadInput as exc:
        raise Rejected(f"not a valid Application: {exc}"[:300]) from None
    with uow:
        uow.applications.put(app.application_id, app.firm.credit_code, app.firm.name, value, rfc3339(now))
        uow.commit()
    return "recorded"


# -- review steps ----------------------------------------------------------------------------


def _load(uow: UnitOfWork, item_id: str) -> ReviewItem:
    if not item_id:
        raise InvalidArgument("item_id", "is required")
    item = uow.items.get(item_id)
    if item is None:
        raise NotFound(f"item_id: no review item {item_id!r}")
    return item


def _reviewer(actor: Actor) -> None:
    if actor.role not in ("REVIEWER", ""):
        raise PermissionDenied(f"only a REVIEWER may do this, not {actor.role}")


def claim(uow: UnitOfWork, item_id: str, actor: Actor, now: dt.datetime) -> ReviewItem:
    _reviewer(actor)
    at = rfc3339(now)
    with uow:
        before = _load(uow, item_id)
        after = rules.claim(before, actor.subject)
        if after == before:
            return after
        uow.items.update(after, at)
        _audit(uow, actor, "CLAIMED", item_id, item_state(before), item_state(after), at)
        uow.commit()
    return after


def decide(
    uow: UnitOfWork,
    item_id: str,
    actor: Actor,
    workflow: WorkflowSettings,
    today: dt.date,
    now: dt.datetime,
    *,
    result: str,
    amount_fen: int = 0,
    basis: str = "",
    reasons: str = "",
    missing: str = "",
    reviewer_amounts: Mapping[str, int] | None = None,
) -> ReviewItem:
    _reviewer(actor)
    at = rfc3339(now)
    wf = workflow.on(today)
    with uow:
        before = _load(uow, item_id)
        after = rules.decide(
            before,
            actor.subject,
            result,
            wf,
            at,
            amount_fen=amount_fen,
            basis=basis,
            reasons=reasons,
            missing=missing,
            reviewer_amounts=reviewer_amounts,
        )
        uow.items.update(after, at)
        _audit(uow, actor, f"DECIDED_{result}", item_id, item_state(before), item_state(after), at)
        trace = uow.items.trace_id(item_id)
        d = after.decision
        messages = []
        if result == rules.MORE_INFO_REQUESTED:
            n = len(after.info_requests)
            body: Any = review_pb2.InformationRequested(
                item_id=item_id,
                application_id=d.application_id,
                credit_code=d.credit_code,
                request_number=n,
                missing=after.info_requests[-1],
                requested_by=actor.subject,
            )
            messages.append(
                events.review_event(
                    f"info-requested:{item_id}:{n}", "information_requested", body, d.credit_code, trace, now
                )
            )
        else:
            reviewed = rules.reviewed_decision(after, wf) if after.closed else None
            body = review_pb2.ReviewDecided(
                item_id=item_id,
                decision_id=d.decision_id,
                application_id=d.application_id,
                credit_code=d.credit_code,
                clause=d.clause,
                result=result,
                amount_fen=after.amount_fen,
                basis=after.basis,
                reasons=after.rejection_reasons,
                reviewer=actor.subject,
                awaiting_second=after.status == rules.AWAITING_SECOND,
                reviewed_decision_id=reviewed.decision_id if reviewed else "",
                decided_at=at,
            )
            messages.append(
                events.review_event(decided_event_id(after), "review_decided", body, d.credit_code, trace, now)
            )
            if reviewed is not None:
                messages.append(events.decision_message(reviewed, trace, now))
        uow.outbox.add(messages, at)
        uow.commit()
    return after


def decided_event_id(item: ReviewItem) -> str:
    """``decided:<item>``, then ``decided:<item>:<round>`` after a send-back: each decision announced once."""
    n = item.decision_round
    return f"decided:{item.item_id}" if n == 1 else f"decided:{item.item_id}:{n}"


def send_back(uow: UnitOfWork, item_id: str, actor: Actor, reasons: str, now: dt.datetime) -> ReviewItem:
    """The second reviewer returns a first approval to its reviewer (audit only: nothing is decided yet)."""
    _reviewer(actor)
    at = rfc3339(now)
    with uow:
        before = _load(uow, item_id)
        after = rules.send_back(before, actor.subject, reasons)
        uow.items.update(after, at)
        _audit(uow, actor, "SENT_BACK", item_id, item_state(before), item_state(after), at)
        uow.commit()
    return after


def second_approve(
    uow: UnitOfWork, item_id: str, actor: Actor, workflow: WorkflowSettings, today: dt.date, now: dt.datetime
) -> ReviewItem:
    _reviewer(actor)
    at = rfc3339(now)
    with uow:
        before = _load(uow, item_id)
        after = rules.second_approve(before, actor.subject, at)
        reviewed = rules.reviewed_decision(after, workflow.on(today))
        uow.items.update(after, at)
        _audit(uow, actor, "SECOND_APPROVED", item_id, item_state(before), item_state(after), at)
        trace = uow.items.trace_id(item_id)
        d = after.decision
        body = review_pb2.SecondApprovalGiven(
            item_id=item_id,
            decision_id=d.decision_id,
            application_id=d.application_id,
            credit_code=d.credit_code,
            first_reviewer=after.first_reviewer,
            second_reviewer=after.second_reviewer,
            amount_fen=after.amount_fen,
            reviewed_decision_id=reviewed.decision_id,
            approved_at=at,
        )
        uow.outbox.add(
            [
                events.review_event(f"second:{item_id}", "second_approval_given", body, d.credit_code, trace, now),
                events.decision_message(reviewed, trace, now),
            ],
            at,
        )
        uow.commit()
    return after


def answer_information(
    uow: UnitOfWork, item_id: str, actor: Actor, credit_code: str, request_number: int, answer: str, now: dt.datetime
) -> ReviewItem:
    if actor.role not in ("ENTERPRISE", "PORTAL", ""):
        raise PermissionDenied(f"information is answered by the firm or the portal, not by {actor.role}")
    at = rfc3339(now)
    with uow:
        before = _load(uow, item_id)
        d = before.decision
        if credit_code != d.credit_code or (actor.role == "ENTERPRISE" and actor.credit_code != d.credit_code):
            # The same answer as for an unknown item: no existence oracle for another firm's items.
            raise NotFound(f"item_id: no review item {item_id!r} for credit_code {credit_code!r}")
        after = rules.answer_information(before, answer, request_number)
        uow.items.update(after, at)
        _audit(uow, actor, "INFORMATION_ANSWERED", item_id, item_state(before), item_state(after), at)
        body = review_pb2.InformationAnswered(
            item_id=item_id,
            application_id=d.application_id,
            credit_code=d.credit_code,
            request_number=request_number,
            answered_by=actor.subject,
        )
        trace = uow.items.trace_id(item_id)
        uow.outbox.add(
            [
                events.review_event(
                    f"info-answered:{item_id}:{request_number}", "information_answered", body, d.credit_code, trace, now
                )
            ],
            at,
        )
        uow.commit()
    return after


# -- listings --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class QueueQuery:
    clause: str = ""
    reason: str = ""
    statuses: tuple[str, ...] = ()
    assignee: str = ""
    overdue: bool = False
    page_size: int = DEFAULT_PAGE
    after: tuple[str, str] | None = None

    def fingerprint(self) -> str:
        return _json([self.clause, self.reason, list(self.statuses), self.assignee, self.overdue])


def page_size(value: int) -> int:
    if value < 0 or value > MAX_PAGE:
        raise InvalidArgument("page_size", f"0 to {MAX_PAGE} (0: {DEFAULT_PAGE}), got {value}")
    return value or DEFAULT_PAGE


def queue_query(
    clause: str, reason: str, statuses: list[str], assignee: str, overdue: bool, size: int, token: str
) -> QueueQuery:
    for i, status in enumerate(statuses):
        if status not in rules.STATES:
            raise InvalidArgument(f"statuses[{i}]", f"one of {', '.join(rules.STATES)}, got {status!r}")
    if reason and reason not in rules.REVIEW_REASONS:
        raise InvalidArgument("review_reason", f"one of {', '.join(rules.REVIEW_REASONS)}, got {reason!r}")
    query = QueueQuery(clause, reason, tuple(statuses), assignee, overdue, page_size(size))
    if token:
        try:
            position = paging.decode(token)
            if position.get("q") != query.fingerprint():
                raise paging.BadPageToken("filters changed")
            after = position["after"]
            if not (isinstance(after, list) and len(after) == 2 and all(isinstance(p, str) for p in after)):
                raise paging.BadPageToken("bad position")
        except (paging.BadPageToken, KeyError):
            raise InvalidArgument("page_token", "not a page token of this listing with these filters") from None
        query = dataclasses.replace(query, after=(after[0], after[1]))
    return query


def list_queue(uow: UnitOfWork, query: QueueQuery, today: dt.date) -> tuple[list[tuple[ReviewItem, dt.date]], str]:
    with uow:
        rows = uow.items.page(
            clause=query.clause,
            reason=query.reason,
            statuses=query.statuses,
            assignee=query.assignee,
            overdue_on=today if query.overdue else None,
            after=query.after,
            limit=query.page_size + 1,
        )
    token = ""
    if len(rows) > query.page_size:
        rows = rows[: query.page_size]
        last = rows[-1][0]
        token = paging.encode({"q": query.fingerprint(), "after": [last.queued_on.isoformat(), last.item_id]})
    return rows, token


def item_detail(
    uow: UnitOfWork, item_id: str, workflow: WorkflowSettings
) -> tuple[ReviewItem, dt.date, bytes | None, list[GrantRow]]:
    """The item, its deadline, the application (protobuf bytes, if seen) and the firm's grants."""
    with uow:
        item = _load(uow, item_id)
        app = uow.applications.get(item.decision.application_id)
        ledger = uow.grants.of_firm(item.decision.credit_code)
    return item, deadline_of(item, workflow), app[1] if app else None, ledger


def audit_trail(uow: UnitOfWork, target: str, size: int, token: str) -> tuple[list[AuditEntry], str]:
    if not target:
        raise InvalidArgument("target", "is required (an item id or a notice id)")
    size = page_size(size)
    after = 0
    if token:
        try:
            position = paging.decode(token)
            after = position["after"]
            if position.get("t") != target or type(after) is not int:
                raise paging.BadPageToken("other listing")
        except (paging.BadPageToken, KeyError):
            raise InvalidArgument("page_token", "not a page token of this audit trail") from None
    with uow:
        rows = uow.audit.page(target, after, size + 1)
    next_token = ""
    if len(rows) > size:
        rows = rows[:size]
        next_token = paging.encode({"t": target, "after": rows[-1].sequence})
    return rows, next_token


# -- the public notice ----------------------------------------------------------------------


def publish_notice(
    uow: UnitOfWork, actor: Actor, workflow: WorkflowSettings, today: dt.date, now: dt.datetime, title: str = ""
) -> tuple[NoticeRow, list[LineRow]]:
    _reviewer(actor)
    if not actor.subject:
        raise PermissionDenied("publishing a notice needs an identified subject (the token's sub)")
    if len(title) > 200:
        raise InvalidArgument("title", f"at most 200 characters, got {len(title)}")
    period = notice_rules.notice_period(today, workflow.on(today).notice_period_working_days)
    at = rfc3339(now)
    with uow:
        pool = [g for g in uow.grants.pool() if g.granted_fen > 0 and g.state == "RESERVED"]
        if not pool:
            raise NoticePoolEmpty("no approved award awaits a notice: the pool is empty")
        notice_id = f"notice-{today.isoformat()}-{uow.notices.count() + 1:04d}"
        row = NoticeRow(notice_id, today, period.first_day, period.last_day, actor.subject, title.strip())
        lines = []
        for g in pool:
            app = uow.applications.get(g.application_id)
            lines.append(
                LineRow(
                    line_id=f"{notice_id}/{g.decision_id}",
                    notice_id=notice_id,
                    decision_id=g.decision_id,
                    application_id=g.application_id,
                    credit_code=g.credit_code,
                    firm_name=app[0] if app else "",
                    clause=g.clause,
                    amount_fen=g.granted_fen,
                    status=notice_rules.NOTICED,
                )
            )
        uow.notices.add(row, at)
        for line in lines:
            uow.lines.add(line)
        uow.grants.mark_noticed([g.decision_id for g in pool], notice_id)
        _audit(
            uow,
            actor,
            "NOTICE_PUBLISHED",
            notice_id,
            None,
            {"notice": dataclasses.asdict(row), "lines": [dataclasses.asdict(x) for x in lines]},
            at,
        )
        body = notice_pb2.NoticePublished(
            notice_id=notice_id,
            published_on=today.isoformat(),
            period_first_day=period.first_day.isoformat(),
            period_last_day=period.last_day.isoformat(),
            lines=[line_to_proto(x) for x in lines],
            published_by=actor.subject,
        )
        trace = events.derived_trace_id(notice_id)
        # One NoticePublished per firm on the list (key: its credit code), each with the firm's own lines,
        # so the firm's events stay in one partition; the whole list is GetNotice's.
        by_firm: dict[str, list[LineRow]] = {}
        for line in lines:
            by_firm.setdefault(line.credit_code, []).append(line)
        messages = []
        for code, own in sorted(by_firm.items()):
            part = notice_pb2.NoticePublished()
            part.CopyFrom(body)
            del part.lines[:]
            part.lines.extend(line_to_proto(x) for x in own)
            messages.append(
                events.notice_event(f"published:{notice_id}:{code}", "notice_published", part, code, trace, now)
            )
        uow.outbox.add(messages, at)
        uow.commit()
    return row, lines


def line_to_proto(line: LineRow) -> Any:
    return notice_pb2.NoticeLine(
        line_id=line.line_id,
        decision_id=line.decision_id,
        application_id=line.application_id,
        credit_code=line.credit_code,
        firm_name=line.firm_name,
        clause=line.clause,
        amount_fen=line.amount_fen,
    )


def notice_detail(uow: UnitOfWork, notice_id: str) -> tuple[NoticeRow, list[LineRow]]:
    if not notice_id:
        raise InvalidArgument("notice_id", "is required")
    with uow:
        row = uow.notices.get(notice_id)
        if row is None:
            raise NotFound(f"notice_id: no notice {notice_id!r}")
        return row, uow.lines.of_notice(notice_id)


def list_notices(uow: UnitOfWork, size: int, token: str) -> tuple[list[tuple[NoticeRow, list[LineRow]]], str]:
    size = page_size(size)
    after = None
    if token:
        try:
            after = paging.decode(token)["after"]
            if not isinstance(after, str):
                raise paging.BadPageToken("bad position")
        except (paging.BadPageToken, KeyError):
            raise InvalidArgument("page_token", "not a page token of ListNotices") from None
    with uow:
        rows = uow.notices.page(after, size + 1)
        out = [(r, uow.lines.of_notice(r.notice_id)) for r in rows[:size]]
    return out, paging.encode({"after": rows[size - 1].notice_id}) if len(rows) > size else ""


def lodge_objection(
    uow: UnitOfWork,
    actor: Actor,
    line_id: str,
    objector_credit_code: str,
    reason: str,
    today: dt.date,
    now: dt.datetime,
) -> Objection:
    if not line_id:
        raise InvalidArgument("line_id", "is required")
    at = rfc3339(now)
    with uow:
        line = uow.lines.get(line_id)
        if line is None:
            raise NotFound(f"line_id: no notice line {line_id!r}")
        row = uow.notices.get(line.notice_id)
        assert row is not None
        existing = uow.objections.of_line(line_id)
        objection = notice_rules.lodge(
            line_id, line.status, row.period, today, actor.role, actor.subject, reason, len(existing) + 1
        )
        uow.objections.add(objection, line.notice_id, line.credit_code, objector_credit_code)
        status = notice_rules.line_after(line.status, [*existing, objection])
        uow.lines.set_status(line_id, status, "", at)
        _audit(
            uow,
            actor,
            "OBJECTION_LODGED",
            line.notice_id,
            {"line_id": line_id, "status": line.status},
            {"line_id": line_id, "status": status, "objection": dataclasses.asdict(objection)},
            at,
        )
        body = notice_pb2.ObjectionLodged(
            objection_id=objection.objection_id,
            notice_id=line.notice_id,
            line_id=line_id,
            decision_id=line.decision_id,
            credit_code=line.credit_code,
            lodged_on=today.isoformat(),
        )
        trace = events.derived_trace_id(line.notice_id)
        uow.outbox.add(
            [
                events.notice_event(
                    f"objection:{objection.objection_id}", "objection_lodged", body, line.credit_code, trace, now
                )
            ],
            at,
        )
        uow.commit()
    return objection


def resolve_objection(
    uow: UnitOfWork, actor: Actor, objection_id: str, resolution: str, reasons: str, today: dt.date, now: dt.datetime
) -> tuple[Objection, LineRow]:
    _reviewer(actor)
    if not objection_id:
        raise InvalidArgument("objection_id", "is required")
    at = rfc3339(now)
    with uow:
        found = uow.objections.get(objection_id)
        if found is None:
            raise NotFound(f"objection_id: no objection {objection_id!r}")
        before = found[0]
        after = notice_rules.resolve(before, resolution, reasons, actor.subject, today)
        line = uow.lines.get(before.line_id)
        assert line is not None
        row = uow.notices.get(line.notice_id)
        assert row is not None
        uow.objections.update(after)
        others = [o for o in uow.objections.of_line(line.line_id) if o.objection_id != objection_id]
        status = notice_rules.line_after(line.status, [*others, after])
        trace = events.derived_trace_id(line.notice_id)
        body = notice_pb2.ObjectionResolved(
            objection_id=objection_id,
            notice_id=line.notice_id,
            line_id=line.line_id,
            decision_id=line.decision_id,
            credit_code=line.credit_code,
            resolution=resolution,
            reasons=after.resolution_reasons,
            resolved_by=actor.subject,
            resolved_on=today.isoformat(),
        )
        messages = [
            events.notice_event(f"resolved:{objection_id}", "objection_resolved", body, line.credit_code, trace, now)
        ]
        payable_on = ""
        if status == notice_rules.WITHDRAWN and line.status != notice_rules.WITHDRAWN:
            messages.append(withdrawn_message(line, after.resolution_reasons, today, trace, now))
        elif notice_rules.becomes_payable(status, row.period, today):
            status, payable_on = notice_rules.PAYABLE, today.isoformat()  # dismissed after the period ended: at once
            messages.append(payable_message(line, today, trace, now))
        uow.lines.set_status(line.line_id, status, payable_on, at)
        _audit(
            uow,
            actor,
            f"OBJECTION_{resolution}",
            line.notice_id,
            {"line_id": line.line_id, "status": line.status, "objection": dataclasses.asdict(before)},
            {"line_id": line.line_id, "status": status, "objection": dataclasses.asdict(after)},
            at,
        )
        uow.outbox.add(messages, at)
        uow.commit()
    return after, dataclasses.replace(line, status=status, payable_on=payable_on)


def payable_message(line: LineRow, today: dt.date, trace: str, now: dt.datetime) -> Any:
    body = notice_pb2.LinePayable(
        decision_id=line.decision_id,
        application_id=line.application_id,
        credit_code=line.credit_code,
        notice_id=line.notice_id,
        payable_on=today.isoformat(),
    )
    return events.notice_event(f"payable:{line.decision_id}", "line_payable", body, line.credit_code, trace, now)


def withdrawn_message(line: LineRow, reason: str, today: dt.date, trace: str, now: dt.datetime) -> Any:
    body = notice_pb2.LineWithdrawn(
        decision_id=line.decision_id,
        application_id=line.application_id,
        credit_code=line.credit_code,
        notice_id=line.notice_id,
        reason=reason,
        withdrawn_on=today.isoformat(),
    )
    return events.notice_event(f"withdrawn:{line.decision_id}", "line_withdrawn", body, line.credit_code, trace, now)


def close_notice_periods(uow: UnitOfWork, today: dt.date, now: dt.datetime) -> list[LineRow]:
    """The scheduler's step: every NOTICED line whose period ended before
    ``today`` (no objection open) becomes PAYABLE, with LinePayable. Idempotent."""
    at = rfc3339(now)
    with uow:
        lines = uow.lines.waiting(notice_rules.NOTICED, today)
        done = []
        for line in lines:
            row = uow.notices.get(line.notice_id)
            assert row is not None
            if not notice_rules.becomes_payable(line.status, row.period, today):
                continue
            payable_on = max(today, row.period.payable_on).isoformat()
            uow.lines.set_status(line.line_id, notice_rules.PAYABLE, payable_on, at)
            _audit(
                uow,
                SYSTEM,
                "LINE_PAYABLE",
                line.notice_id,
                {"line_id": line.line_id, "status": line.status},
                {"line_id": line.line_id, "status": notice_rules.PAYABLE, "payable_on": payable_on},
                at,
            )
            uow.outbox.add(
                [
                    payable_message(
                        line, dt.date.fromisoformat(payable_on), events.derived_trace_id(line.notice_id), now
                    )
                ],
                at,
            )
            done.append(dataclasses.replace(line, status=notice_rules.PAYABLE, payable_on=payable_on))
        uow.commit()
    return done
