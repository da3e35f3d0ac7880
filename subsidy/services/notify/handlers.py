"""The use cases of notify, as plain functions over the ports: no Kafka,
SQL, SMTP or HTTP here.

- ``parse_decision`` / ``parse_payout_event`` / ``parse_notice_event``: a
  consumed value -> its ``Event``s (a decision: under review, the review's
  result or the computed outcome; a notice list: one per firm on it, each
  with its own lines only; a kind no firm is told about: none), the fact
  decoded into notify's own values (or ``InvalidEvent``: the consumer
  dead-letters it).
- ``notify``: one event -> one notification per channel the firm can be
  reached on, each sent at most once per notification id (the log is checked
  before sending and written after a successful send), with bounded
  exponential-backoff retries; raises ``DeliveryFailed`` when a channel gives
  up (the other channels are still tried first). A channel that cannot build
  its message from the event (``BAD_EVENT_ERRORS``: e.g. CR/LF in an id bound
  for an e-mail header) gives up at once, as after a permanent error; a
  template that cannot render it raises ``InvalidEvent``. Both end as a dead
  letter: a bad event never rewinds the partition.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from google.protobuf.json_format import MessageToDict

from subsidy.contracts import codec, events
from subsidy.contracts.codec import BadInput
from subsidy.core.domain import Reason
from subsidy.platform import logs
from subsidy.platform.clock import CHINA
from subsidy.platform.registry import Contacts
from subsidy.services.notify import metrics, model, templates
from subsidy.services.notify.model import (
    BAD_EVENT_ERRORS,
    DecisionMade,
    DecisionUnderReview,
    DeliveryError,
    DeliveryFailed,
    Event,
    Fact,
    GrantAdjusted,
    GrantPayable,
    GrantRecorded,
    InformationRequested,
    InvalidEvent,
    ListedLine,
    NoticeListed,
    Notification,
    ObjectionResolved,
    PermanentDeliveryError,
    ProposalCreated,
    ProposalExpired,
    RecoveryOpened,
    ReviewDecided,
    TrancheCancelled,
    TrancheDue,
    TrancheHeld,
    TranchePaid,
    TrancheReleased,
    TrancheScheduled,
)
from subsidy.services.notify.ports import Channel, Firms, NotificationLog

log = logging.getLogger("subsidy.services.notify.handlers")

SOURCE = "/songjiang/subsidy/notify"


@dataclasses.dataclass
class Deps:
    firms: Firms
    log: NotificationLog
    channels: Sequence[Channel]
    titles: Mapping[str, str]  # clause id -> title, from the policy
    attempts: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    sleep: Callable[[float], None] = time.sleep  # may raise Interrupted when the service stops
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)


# ------------------------------------------------------------------ parsing


def _webhook_data(message: Any, money: tuple[str, ...]) -> dict[str, Any]:
    """The event's fields as the webhook's ``data`` has always shown them:
    the protobuf JSON mapping, names preserved, every field printed, the
    top-level fen amounts as numbers (nested 64-bit values stay strings)."""
    data = MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    for key in money:
        if key in data:
            data[key] = int(data[key])
    return data


def _day(text: str, path: str) -> dt.date | None:
    """An ISO date of a payout event; "" is "not given" (the texts say 未定)."""
    if not text:
        return None
    try:
        if len(text) == 10:
            return dt.date.fromisoformat(text)
    except ValueError:
        pass
    raise InvalidEvent(f"{path}: not a real date YYYY-MM-DD: {text!r}")


def _reasons(reasons: Any) -> tuple[Reason, ...]:
    return tuple(Reason(r.code, r.clause, r.message) for r in reasons)


def parse_decision(value: bytes | None, trace_id: str | None = None) -> Event:
    """A Decision's event: under review (review_required, not yet reviewed),
    the review's result (a reviewed decision), or the computed outcome."""
    try:
        message = events.decision(value)
        decision = codec.decision_from_proto(message)
    except (events.MalformedEvent, BadInput) as exc:
        raise InvalidEvent(str(exc)) from None
    data = _webhook_data(message, ("max_award_fen",))
    if isinstance(data.get("review"), dict):
        data["review"].pop("reviewers", None)  # staff token subjects: not the firm's business
    event_id = f"decision:{decision.decision_id}"
    fact: Fact
    if decision.review is not None:
        review = decision.review
        if review.result not in ("APPROVED", "REJECTED"):
            raise InvalidEvent(f"review.result: APPROVED or REJECTED, got {review.result!r}")
        fact = ReviewDecided(
            decision_id=decision.decision_id,
            application_id=decision.application_id,
            clause=decision.clause,
            result=review.result,
            amount_fen=decision.max_award_fen if review.result == "APPROVED" else 0,
            basis=review.basis,
            reasons=decision.reasons,
            decided_on=_instant_day(review.decided_at, "review.decided_at"),
            policy_version=decision.policy_version,
        )
        return Event(event_id, decision.credit_code, fact, data, trace_id)
    if decision.review_required:
        fact = DecisionUnderReview(
            decision_id=decision.decision_id,
            application_id=decision.application_id,
            clause=decision.clause,
            outcome=decision.outcome,
            review_reasons=decision.review_reasons,
            submitted_on=decision.submitted_on,
            policy_version=decision.policy_version,
        )
        return Event(event_id, decision.credit_code, fact, data, trace_id)
    fact = DecisionMade(
        decision_id=decision.decision_id,
        application_id=decision.application_id,
        clause=decision.clause,
        outcome=decision.outcome,
        max_award_fen=decision.max_award_fen,
        decision_year=decision.decision_year,
        submitted_on=decision.submitted_on,
        reasons=decision.reasons,
        policy_version=decision.policy_version,
    )
    return Event(event_id, decision.credit_code, fact, data, trace_id)


def _instant_day(text: str, path: str) -> dt.date | None:
    """The day in Songjiang of an RFC 3339 instant; "" is "not given"."""
    if not text:
        return None
    try:
        instant = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidEvent(f"{path}: not an RFC 3339 time: {text!r}") from None
    if instant.tzinfo is None:
        raise InvalidEvent(f"{path}: no UTC offset: {text!r}")
    return instant.astimezone(CHINA).date()


def _payout_fact(event: Any, kind: str, body: Any) -> Fact:
    """The payout event's fact. A tranche event published before it carried
    its application takes it from ``events.application_id_of``; its clause,
    if it had none, stays "" (the texts then say the clause is unknown)."""
    for key in ("max_award_fen", "granted_fen", "amount_fen"):
        if getattr(body, key, 0) < 0:
            raise InvalidEvent(f"{kind}.{key}: must not be negative")
    if kind == "grant_recorded":
        from subsidy.v1 import payout_pb2

        return GrantRecorded(
            application_id=body.application_id,
            clause=body.clause,
            max_award_fen=body.max_award_fen,
            granted_fen=body.granted_fen,
            tranche_count=body.tranche_count,
            decision_year=body.decision_year,
            reasons=_reasons(body.reasons),
            policy_version=body.policy_version,
            state="" if not body.state else payout_pb2.GrantState.Name(body.state).removeprefix("GRANT_STATE_"),
        )
    if kind == "grant_payable":
        return GrantPayable(
            application_id=body.application_id,
            clause=body.clause,
            notice_id=body.notice_id,
            payable_on=_day(body.payable_on, f"{kind}.payable_on"),
            granted_fen=body.granted_fen,
            tranche_count=body.tranche_count,
        )
    if kind == "grant_adjusted":
        return GrantAdjusted(
            application_id=body.application_id,
            clause=body.clause,
            previous_granted_fen=body.previous_granted_fen,
            granted_fen=body.granted_fen,
            released_fen=body.released_fen,
            topped_up_fen=body.topped_up_fen,
            max_award_fen=body.max_award_fen,
            outcome=body.outcome,
            reasons=_reasons(body.reasons),
            previous_policy_version=body.previous_policy_version,
            policy_version=body.policy_version,
        )
    application_id = events.application_id_of(event)
    if kind == "tranche_scheduled":
        return TrancheScheduled(
            tranche_id=body.tranche_id,
            application_id=application_id,
            clause=body.clause,
            number=body.number,
            amount_fen=body.amount_fen,
            due_on=_day(body.due_on, f"{kind}.due_on"),
            budget_year=body.budget_year,
        )
    if kind == "tranche_due":
        return TrancheDue(
            tranche_id=body.tranche_id,
            application_id=application_id,
            clause=body.clause,
            amount_fen=body.amount_fen,
            due_on=_day(body.due_on, f"{kind}.due_on"),
            budget_year=body.budget_year,
        )
    if kind == "tranche_paid":
        return TranchePaid(
            tranche_id=body.tranche_id,
            application_id=application_id,
            clause=body.clause,
            amount_fen=body.amount_fen,
            paid_on=_day(body.paid_on, f"{kind}.paid_on"),
            payment_id=body.payment_id,
        )
    if kind == "tranche_cancelled":
        return TrancheCancelled(
            tranche_id=body.tranche_id,
            application_id=application_id,
            clause=body.clause,
            amount_fen=body.amount_fen,
            cancelled_on=_day(body.cancelled_on, f"{kind}.cancelled_on"),
            reason=body.reason,
        )
    if kind in ("tranche_held", "tranche_released") and not body.tranche_id:
        raise InvalidEvent(f"{kind}.tranche_id: is required")
    if kind == "tranche_held":
        if not body.reason:
            raise InvalidEvent(f"{kind}.reason: is required (the firm is told why)")
        return TrancheHeld(
            tranche_id=body.tranche_id,
            application_id=application_id,
            clause=body.clause,
            amount_fen=body.amount_fen,
            due_on=_day(body.due_on, f"{kind}.due_on"),
            held_on=_day(body.held_on, f"{kind}.held_on"),
            hold_until=_day(body.hold_until, f"{kind}.hold_until"),
            reason=body.reason,
            facts_as_of=_day(body.facts_as_of, f"{kind}.facts_as_of"),
        )
    if kind == "tranche_released":
        return TrancheReleased(
            tranche_id=body.tranche_id,
            application_id=application_id,
            clause=body.clause,
            amount_fen=body.amount_fen,
            held_on=_day(body.held_on, f"{kind}.held_on"),
            released_on=_day(body.released_on, f"{kind}.released_on"),
        )
    if kind == "recovery_opened":
        if not body.reason:
            raise InvalidEvent(f"{kind}.reason: is required (the firm is told why)")
        if body.amount_fen <= 0:
            raise InvalidEvent(f"{kind}.amount_fen: must be positive")
        return RecoveryOpened(
            recovery_id=body.recovery_id,
            application_id=application_id,
            clause=body.clause,
            amount_fen=body.amount_fen,
            reason=body.reason,
            void_award=body.void_award,
            opened_on=_day(body.opened_on, f"{kind}.opened_on"),
            tranche_ids=tuple(body.tranche_ids),
        )
    raise InvalidEvent(f"event: unknown kind {kind!r}")


#: Payout kinds no firm is told about: a withdrawn grant is told by the
#: objection's outcome (ObjectionResolved UPHELD, subsidy.notices.v1); money
#: recovered is finance's record of what the firm itself paid back (the firm
#: was told when the recovery was opened).
SILENT_PAYOUT_KINDS = ("grant_withdrawn", "recovery_recorded")


def parse_payout_event(value: bytes | None, trace_id: str | None = None) -> Event | None:
    """The PayoutEvent's event; None for a kind no firm is told about (SILENT_PAYOUT_KINDS)."""
    try:
        message = events.payout_event(value)
    except events.MalformedEvent as exc:
        raise InvalidEvent(str(exc)) from None
    kind = message.WhichOneof("event")
    if kind in SILENT_PAYOUT_KINDS:
        return None
    body = getattr(message, kind)
    fact = _payout_fact(message, kind, body)
    data = _webhook_data(body, ("max_award_fen", "granted_fen", "amount_fen"))
    return Event(message.event_id, body.credit_code, fact, data, trace_id)


#: Notice kinds no firm is told about: a lodged objection is told by its
#: outcome; payable by the ledger's GrantPayable (what payout did, not what
#: it was asked); withdrawn by ObjectionResolved UPHELD.
SILENT_NOTICE_KINDS = ("objection_lodged", "line_payable", "line_withdrawn")


def parse_notice_event(value: bytes | None, trace_id: str | None = None) -> list[Event]:
    """A subsidy.v1.NoticeEvent's events: one per firm on a published notice
    (each with only its own lines; the review service publishes one record
    per firm, ``published:<notice id>:<credit code>``, which is told under
    its own id; a record of several firms under ``<event id>/<credit code>``), one for the firm of a resolved objection,
    none for the silent kinds (SILENT_NOTICE_KINDS); InvalidEvent naming the
    field for a record no message can come from."""
    from subsidy.v1 import notice_pb2

    try:
        message = events.notice_event(value)
    except events.MalformedEvent as exc:
        raise InvalidEvent(str(exc)) from None
    kind = message.WhichOneof("event")
    if kind in SILENT_NOTICE_KINDS:
        return []
    body = getattr(message, kind)
    if kind == "objection_resolved":
        if not body.credit_code:
            raise InvalidEvent("objection_resolved.credit_code: is required")
        if body.resolution not in ("UPHELD", "DISMISSED"):
            raise InvalidEvent(f"objection_resolved.resolution: UPHELD or DISMISSED, got {body.resolution!r}")
        fact: Fact = ObjectionResolved(
            objection_id=body.objection_id,
            notice_id=body.notice_id,
            decision_id=body.decision_id,
            resolution=body.resolution,
            reasons=body.reasons,
            resolved_on=_day(body.resolved_on, "objection_resolved.resolved_on"),
        )
        data = _webhook_data(body, ())
        data.pop("resolved_by", None)  # a staff token subject
        return [Event(message.event_id, body.credit_code, fact, data, trace_id)]
    # notice_published: each firm is told of its own lines only.
    days = {
        name: _day(getattr(body, name), f"notice_published.{name}")
        for name in ("published_on", "period_first_day", "period_last_day")
    }
    by_firm: dict[str, list[Any]] = {}
    for i, line in enumerate(body.lines):
        if not line.credit_code:
            raise InvalidEvent(f"notice_published.lines[{i}].credit_code: is required")
        if line.amount_fen < 0:
            raise InvalidEvent(f"notice_published.lines[{i}].amount_fen: must not be negative")
        by_firm.setdefault(line.credit_code, []).append(line)
    out = []
    for code, lines in by_firm.items():
        fact = NoticeListed(
            notice_id=body.notice_id,
            published_on=days["published_on"],
            period_first_day=days["period_first_day"],
            period_last_day=days["period_last_day"],
            lines=tuple(ListedLine(line.application_id, line.clause, line.amount_fen) for line in lines),
        )
        own = notice_pb2.NoticePublished(
            notice_id=body.notice_id,
            published_on=body.published_on,
            period_first_day=body.period_first_day,
            period_last_day=body.period_last_day,
            lines=lines,
        )
        data = _webhook_data(own, ())
        data.pop("published_by", None)
        for line in data.get("lines", []):
            line["amount_fen"] = int(line["amount_fen"])
        # The review service publishes one record per firm on a list (its id
        # already names the firm); a record of several firms is told per firm.
        event_id = message.event_id if len(by_firm) == 1 else f"{message.event_id}/{code}"
        out.append(Event(event_id, code, fact, data, trace_id))
    return out


#: Review steps no firm is told about from here: a queued decision is told by
#: the decision itself (review_required), the result by the reviewed decision,
#: an answer was the firm's own act. Only a request for information is told.
SILENT_REVIEW_KINDS = ("review_requested", "review_decided", "second_approval_given", "information_answered")


def parse_review_event(value: bytes | None, trace_id: str | None = None) -> list[Event]:
    """A subsidy.v1.ReviewEvent: the firm's request for information, or
    nothing for the silent kinds; InvalidEvent naming the field for a record
    no message can come from. The reviewer's subject never reaches the firm."""
    try:
        message = events.review_event(value)
    except events.MalformedEvent as exc:
        raise InvalidEvent(str(exc)) from None
    if message.WhichOneof("event") in SILENT_REVIEW_KINDS:
        return []
    body = message.information_requested
    for name in ("credit_code", "application_id", "missing"):
        if not getattr(body, name):
            raise InvalidEvent(f"information_requested.{name}: is required")
    if body.request_number < 1:
        raise InvalidEvent(f"information_requested.request_number: must be 1 or more, got {body.request_number}")
    try:  # the application's id, as intake took it (it reaches the e-mail's subject)
        codec.parse_identifier(body.application_id, "information_requested.application_id")
    except BadInput as exc:
        raise InvalidEvent(str(exc)) from None
    fact = InformationRequested(
        application_id=body.application_id,
        item_id=body.item_id,
        request_number=body.request_number,
        missing=body.missing,
    )
    data = _webhook_data(body, ())
    data.pop("requested_by", None)  # a staff token subject
    return [Event(message.event_id, body.credit_code, fact, data, trace_id)]


#: Proposal steps no firm is told about from here: a confirmation or a
#: decline was the firm's own act (a confirmed proposal is then an
#: application, told by its decision like any other).
SILENT_PROPOSAL_KINDS = ("confirmed", "declined")


def parse_proposal_event(value: bytes | None, trace_id: str | None = None) -> list[Event]:
    """A subsidy.v1.ProposalEvent (免申即享): the firm is told of a proposal
    made and of one that expired; nothing for the silent kinds; InvalidEvent
    naming the field for a record no message can come from. The webhook's
    data is the proposal's own fields, never the application it carries
    (firm facts and contacts stay out)."""
    try:  # the ids, and the proposal id as the application id it will be
        message = events.proposal_event(value)
    except events.MalformedEvent as exc:
        raise InvalidEvent(str(exc)) from None
    kind = message.WhichOneof("event")
    if kind in SILENT_PROPOSAL_KINDS:
        return []
    fact: Fact
    if kind == "expired":
        fact = ProposalExpired(
            proposal_id=message.proposal_id, expired_on=_day(message.expired.expired_on, "expired.expired_on")
        )
        data = {"proposal_id": message.proposal_id, "expired_on": message.expired.expired_on}
        return [Event(message.event_id, message.credit_code, fact, data, trace_id)]
    p = message.created.proposal
    if p.proposal_id != message.proposal_id:
        raise InvalidEvent(
            f"created.proposal.proposal_id: {p.proposal_id[:80]!r} is not the event's {message.proposal_id[:80]!r}"
        )
    if p.credit_code and p.credit_code != message.credit_code:
        raise InvalidEvent("created.proposal.credit_code: is not the event's credit_code")
    if not p.clause:
        raise InvalidEvent("created.proposal.clause: is required")
    if p.expected_award_fen < 0:
        raise InvalidEvent("created.proposal.expected_award_fen: must not be negative")
    expires_on = _day(p.expires_on, "created.proposal.expires_on")
    if expires_on is None:
        raise InvalidEvent("created.proposal.expires_on: is required (the firm is told until when)")
    fact = ProposalCreated(
        proposal_id=p.proposal_id,
        clause=p.clause,
        fact_reference=p.fact_reference,
        expected_award_fen=p.expected_award_fen,
        proposed_on=_day(p.proposed_on, "created.proposal.proposed_on"),
        expires_on=expires_on,
        policy_version=p.policy_version,
    )
    data = {
        "proposal_id": p.proposal_id,
        "clause": p.clause,
        "fact_reference": p.fact_reference,
        "expected_award_fen": int(p.expected_award_fen),
        "policy_version": p.policy_version,
        "proposed_on": p.proposed_on,
        "expires_on": p.expires_on,
    }
    return [Event(message.event_id, message.credit_code, fact, data, trace_id)]


# ------------------------------------------------------------------ notifying


@dataclasses.dataclass
class Outcome:
    sent: list[str] = dataclasses.field(default_factory=list)  # channels
    replayed: list[str] = dataclasses.field(default_factory=list)
    no_contact: list[str] = dataclasses.field(default_factory=list)
    unknown_firm: bool = False


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def one_line(text: str) -> str:
    """Control characters (CR/LF of a bad id) escaped, for a log or dead-letter reason."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _bad_event(exc: BaseException) -> str:
    return one_line(f"{type(exc).__name__}: {exc}"[:300])


def _redact(text: str, contacts: Contacts) -> str:
    """Belt and braces: an adapter's error must not carry a contact value."""
    for value in (contacts.email, contacts.phone, contacts.webhook_url):
        if value:
            text = text.replace(value, "<redacted>")
    return text


def notify(deps: Deps, event: Event) -> Outcome:
    outcome = Outcome()
    record = deps.firms.firm(event.credit_code)  # may raise RegistryUnavailable: the consumer retries
    base = logs.fields(event_id=event.event_id, kind=event.kind, credit_code=event.credit_code)
    if record is None:
        outcome.unknown_firm = True
        for channel in deps.channels:
            metrics.SKIPPED.labels(channel.name, "unknown_firm").inc()
        log.warning("firm unknown to the registry: nothing sent", extra=base)
        return outcome
    try:
        rendered = templates.render(event, deps.titles, record.firm.name)
    except BAD_EVENT_ERRORS as exc:
        raise InvalidEvent(f"{one_line(event.event_id)}: no message can be built: {_bad_event(exc)}") from None
    failures: list[tuple[str, str]] = []
    for channel in deps.channels:
        address = channel.address(record.contacts)
        nid = model.notification_id(event.event_id, channel.name)
        where = logs.fields(
            notification_id=nid,
            channel=channel.name,
            event_id=event.event_id,
            kind=event.kind,
            credit_code=event.credit_code,
        )
        if not address:
            outcome.no_contact.append(channel.name)
            metrics.SKIPPED.labels(channel.name, "no_contact").inc()
            log.info("firm has no contact for this channel: skipped", extra=where)
            continue
        if deps.log.was_sent(nid):
            outcome.replayed.append(channel.name)
            metrics.SKIPPED.labels(channel.name, "replayed").inc()
            log.info("notification already sent: skipped", extra=where)
            continue
        notification = Notification(
            id=nid,
            event_id=event.event_id,
            kind=event.kind,
            channel=channel.name,
            credit_code=event.credit_code,
            subject=rendered.subject,
            body=rendered.body,
            sms=rendered.sms,
            data=dict(event.data),
        )
        error = _deliver(deps, channel, notification, address, record.contacts)
        if error is not None:
            failures.append((channel.name, error))
            metrics.FAILED.labels(channel.name).inc()
            log.error("notification failed after its retries", extra={"fields": {**where["fields"], "error": error}})
            continue
        deps.log.record_sent(notification, event.trace_id, deps.now().isoformat(timespec="milliseconds"))
        metrics.SENT.labels(channel.name).inc()
        outcome.sent.append(channel.name)
        log.info("notification sent", extra=where)
    if failures:
        raise DeliveryFailed(failures)
    return outcome


def _deliver(deps: Deps, channel: Channel, notification: Notification, address: str, contacts: Contacts) -> str | None:
    """Send with retries; None when delivered, else the (redacted) last error."""
    attempts = max(1, deps.attempts)
    for attempt in range(1, attempts + 1):
        try:
            channel.send(notification, address)
            return None
        except DeliveryError as exc:
            metrics.ATTEMPTS_FAILED.labels(channel.name).inc()
            error = _redact(str(exc) or type(exc).__name__, contacts)
            if isinstance(exc, PermanentDeliveryError):
                return f"{error} (permanent, attempt {attempt})"
        except BAD_EVENT_ERRORS as exc:
            # The channel could not build its message from this event: a bad
            # event, not a delivery failure; retrying builds the same message.
            metrics.ATTEMPTS_FAILED.labels(channel.name).inc()
            error = _redact(_bad_event(exc), contacts)
            return f"message not built from the event: {error} (permanent, attempt {attempt})"
        if attempt == attempts:
            return f"{error} after {attempts} attempts"
        delay = min(deps.max_backoff_s, deps.backoff_s * 2 ** (attempt - 1))
        log.warning(
            "notification attempt failed, retrying",
            extra=logs.fields(
                notification_id=notification.id,
                channel=channel.name,
                event_id=notification.event_id,
                credit_code=notification.credit_code,
                attempt=attempt,
                error=error,
                retry_in_s=delay,
            ),
        )
        deps.sleep(delay)
    return "unreachable"  # pragma: no cover
