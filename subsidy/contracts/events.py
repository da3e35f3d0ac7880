"""The one decoder of each event type consumed from Kafka: raw record value
in, the subsidy.v1 protobuf message out, or ``MalformedEvent`` saying, for a
person reading the dead letter, what is wrong.

    application(value)        subsidy.applications.v1   subsidy.v1.Application
    decision(value)           subsidy.decisions.v1      subsidy.v1.Decision
    payout_event(value)       subsidy.payouts.v1        subsidy.v1.PayoutEvent
    payment_confirmed(value)  subsidy.payments.v1       subsidy.v1.PaymentConfirmed
    notice_event(value)       subsidy.notices.v1        subsidy.v1.NoticeEvent
    review_event(value)       subsidy.reviews.v1        subsidy.v1.ReviewEvent
    proposal_event(value)     subsidy.proposals.v1      subsidy.v1.ProposalEvent
    firm_facts(value)         subsidy.firms.v1          subsidy.v1.FirmFacts, or None

A decoder refuses what no consumer can use: no value (a tombstone), an empty
value, bytes that are not the type's protobuf, and a message without the ids
that say what the event is and what it is about (an application's content is
checked by ``codec.application_from_proto``, which names the field), and an
application id outside the identifier grammar (``codec.parse_identifier``). What
each consumer then requires of the content (a known outcome, a positive
amount, a real date, …) stays with that consumer, which knows why.

``subsidy.firms.v1`` is compacted: there a tombstone (no value, or an empty
one) is a record, saying the platform no longer knows the firm under the
record's key, and ``firm_facts`` returns None for it. The key is the firm's
credit code; each reader checks the key, and the facts' ``credit_code``
against it, as it must (a reader may skip, dead-letter or keep such a record).

Tranche events published before TrancheDue, TrancheCancelled and TranchePaid
carried ``application_id`` may still be on ``subsidy.payouts.v1`` (kept ten
years). ``application_id_of`` is the one place that reads such an event's
application from its tranche id (``<application_id>/tranche-<k>``, the form
payout has always given it); a new event's own ``application_id`` is used
as it is. docs/finance-events.md says why and for how long.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError

#: The form of a tranche id (subsidy.core.ledger.tranche_id), read only for
#: events that predate the application_id field.
_LEGACY_TRANCHE_SEPARATOR = "/tranche-"

#: PayoutEvent kinds that are about one tranche.
TRANCHE_KINDS = (
    "tranche_scheduled",
    "tranche_due",
    "tranche_cancelled",
    "tranche_paid",
    "tranche_held",
    "tranche_released",
)
PAYOUT_KINDS = (
    "grant_recorded",
    "grant_payable",
    "grant_withdrawn",
    *TRANCHE_KINDS,
    "recovery_opened",
    "recovery_recorded",
    "grant_adjusted",
)
#: The kinds of the other events' ``event`` oneofs, in the order of their proto.
NOTICE_KINDS = ("notice_published", "objection_lodged", "objection_resolved", "line_payable", "line_withdrawn")
REVIEW_KINDS = (
    "review_requested",
    "review_decided",
    "second_approval_given",
    "information_requested",
    "information_answered",
)
PROPOSAL_KINDS = ("created", "confirmed", "declined", "expired")
#: The kinds whose application_id came after the first release (GrantRecorded
#: and TrancheScheduled always had it: without it they are malformed).
LEGACY_KINDS = ("tranche_due", "tranche_cancelled", "tranche_paid")


class MalformedEvent(ValueError):
    """A record value that is not a usable event of its topic: the consumer
    dead-letters it with this message."""


def _parse(message_type: Any, value: bytes | bytearray | memoryview | None) -> Any:
    name = message_type.DESCRIPTOR.full_name
    if value is None:
        raise MalformedEvent(f"no value (a tombstone): expected a {name}")
    try:
        raw = bytes(value)
    except TypeError:
        raise MalformedEvent(f"not bytes ({type(value).__name__}): expected a {name}") from None
    if not raw:
        # Every field at its default: no event of any topic is that.
        raise MalformedEvent(f"empty value: expected a {name}")
    try:
        return message_type.FromString(raw)
    except (DecodeError, ValueError) as exc:
        raise MalformedEvent(f"not a {name} protobuf: {exc}") from None


def _require(message: Any, names: tuple[str, ...], where: str = "") -> None:
    for name in names:
        if not getattr(message, name):
            raise MalformedEvent(f"{where}{name}: is required")


def _kind(message: Any, kinds: tuple[str, ...]) -> str:
    """The event of the message's ``event`` oneof; refused when none is set."""
    kind = message.WhichOneof("event")
    if kind is None:
        raise MalformedEvent(f"event: none of {', '.join(kinds)} is set")
    return str(kind)


def _identifier(value: str, where: str) -> None:
    """An id that names an application follows the identifier grammar intake
    enforces at the edge (codec.parse_identifier): one that does not (a line
    break, a formula prefix, markup, 5,000 characters) came from no producer
    of ours, and is refused before it reaches a ledger, an e-mail or a CSV."""
    from subsidy.contracts.codec import BadInput, parse_identifier

    try:
        parse_identifier(value, where)
    except BadInput as exc:
        raise MalformedEvent(str(exc)) from None


def _credit_code(value: str, where: str) -> None:
    """A firm named by an event is a unified social credit code with its
    check character (GB 32100-2015), as intake and the firm topic's readers
    require: a code that fails the check came from no producer of ours."""
    from subsidy.core import credit_code

    try:
        credit_code.validate(value)
    except credit_code.InvalidCreditCode as exc:
        raise MalformedEvent(f"{where}: not a valid unified social credit code: {exc}") from None


def application(value: bytes | None) -> Any:
    """A subsidy.v1.Application (its content: ``codec.application_from_proto``)."""
    from subsidy.v1 import application_pb2

    return _parse(application_pb2.Application, value)


def decision(value: bytes | None) -> Any:
    """A subsidy.v1.Decision naming itself, its application, the firm and the clause."""
    from subsidy.v1 import decision_pb2

    message = _parse(decision_pb2.Decision, value)
    _require(message, ("decision_id", "application_id", "credit_code", "clause"))
    _identifier(message.application_id, "application_id")
    _credit_code(message.credit_code, "credit_code")
    return message


def payout_event(value: bytes | None, checked_kinds: tuple[str, ...] | None = None) -> Any:
    """A subsidy.v1.PayoutEvent with its event id, one event of the oneof, the
    payee, and (for a tranche event) the tranche and its application.

    ``checked_kinds``: for a consumer that passes over most kinds, the kinds
    whose ids are checked; an event of any other kind (or of none) is returned
    as read, only its bytes checked, so that consumer does not dead-letter
    what it would never use (its other readers judge it)."""
    from subsidy.v1 import payout_pb2

    message = _parse(payout_pb2.PayoutEvent, value)
    if checked_kinds is not None and message.WhichOneof("event") not in checked_kinds:
        return message
    _require(message, ("event_id",))
    kind = _kind(message, PAYOUT_KINDS)
    body = getattr(message, kind)
    _require(body, ("credit_code",), f"{kind}.")
    if kind in TRANCHE_KINDS:
        _require(body, ("tranche_id",), f"{kind}.")
    if not application_id_of(message):
        raise MalformedEvent(f"{kind}.application_id: is required")
    _identifier(application_id_of(message), f"{kind}.application_id")
    _credit_code(body.credit_code, f"{kind}.credit_code")
    return message


def payment_confirmed(value: bytes | None) -> Any:
    """A subsidy.v1.PaymentConfirmed naming the payment, its tranche and the payee."""
    from subsidy.v1 import payout_pb2

    message = _parse(payout_pb2.PaymentConfirmed, value)
    _require(message, ("payment_id", "tranche_id", "credit_code"))
    _credit_code(message.credit_code, "credit_code")
    return message


def notice_event(value: bytes | None) -> Any:
    """A subsidy.v1.NoticeEvent with its event id and one event of the oneof."""
    from subsidy.v1 import notice_pb2

    message = _parse(notice_pb2.NoticeEvent, value)
    _require(message, ("event_id",))
    _kind(message, NOTICE_KINDS)
    return message


def review_event(value: bytes | None) -> Any:
    """A subsidy.v1.ReviewEvent with its event id and one event of the oneof."""
    from subsidy.v1 import review_pb2

    message = _parse(review_pb2.ReviewEvent, value)
    _require(message, ("event_id",))
    _kind(message, REVIEW_KINDS)
    return message


def proposal_event(value: bytes | None) -> Any:
    """A subsidy.v1.ProposalEvent naming itself, its proposal and the firm, with
    one event of the oneof; the proposal id is an application id to be
    (subsidy.core.proposals.proposal_id), so it follows the identifier grammar."""
    from subsidy.v1 import proposal_pb2

    message = _parse(proposal_pb2.ProposalEvent, value)
    _require(message, ("event_id", "proposal_id", "credit_code"))
    _identifier(message.proposal_id, "proposal_id")
    _kind(message, PROPOSAL_KINDS)
    return message


def firm_facts(value: bytes | None) -> Any | None:
    """A subsidy.v1.FirmFacts, or None for a tombstone (no value, or an empty
    one): on the compacted subsidy.firms.v1 the platform no longer knows the
    firm under the record's key. What the facts must hold (the key's credit
    code, a sequence, a date) each reader checks, as it must."""
    from subsidy.v1 import firm_facts_pb2

    if not value:
        return None
    return _parse(firm_facts_pb2.FirmFacts, value)


def is_legacy(event: Any) -> bool:
    """A tranche event published before its type carried ``application_id``."""
    kind = event.WhichOneof("event")
    return kind in LEGACY_KINDS and not getattr(event, kind).application_id


def application_id_of(event: Any) -> str:
    """The application a PayoutEvent is about: its ``application_id``; for a
    legacy tranche event (``is_legacy``), the tranche id's prefix; "" when
    neither says (``payout_event`` refuses such an event)."""
    kind = event.WhichOneof("event")
    if kind is None:
        return ""
    body = getattr(event, kind)
    if body.application_id:
        return body.application_id
    if kind not in LEGACY_KINDS:
        return ""
    application_id, separator, number = body.tranche_id.rpartition(_LEGACY_TRANCHE_SEPARATOR)
    return application_id if separator and number.isdigit() else ""
