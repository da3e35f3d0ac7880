"""The use cases of notify, as plain functions over the ports: no Kafka,
SQL, SMTP or HTTP here.

- ``parse_decision`` / ``parse_payout_event``: a consumed value -> ``Event``
  (or ``InvalidEvent``: the consumer dead-letters it).
- ``notify``: one event -> one notification per channel the firm can be
  reached on, each sent at most once per notification id (the log is checked
  before sending and written after a successful send), with bounded
  exponential-backoff retries; raises ``DeliveryFailed`` when a channel gives
  up (the other channels are still tried first).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from typing import Any, Callable, Mapping, Sequence

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError

from subsidy.contracts import codec
from subsidy.platform import logs
from subsidy.contracts.codec import BadInput
from subsidy.platform.registry import Contacts
from subsidy.services.notify import metrics, model, templates
from subsidy.services.notify.model import (
    DeliveryError,
    DeliveryFailed,
    Event,
    InvalidEvent,
    Notification,
    PermanentDeliveryError,
    TrancheInfo,
)
from subsidy.services.notify.ports import Channel, Firms, NotificationLog

log = logging.getLogger("subsidy.services.notify.handlers")

SOURCE = "/songjiang/subsidy/notify"

_PAYOUT_KINDS = {
    "grant_recorded": model.GRANT_RECORDED,
    "tranche_scheduled": model.TRANCHE_SCHEDULED,
    "tranche_due": model.TRANCHE_DUE,
    "tranche_paid": model.TRANCHE_PAID,
    "tranche_cancelled": model.TRANCHE_CANCELLED,
}


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
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)


def _as_dict(message: Any) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


# ------------------------------------------------------------------ parsing


def parse_decision(value: bytes | None, trace_id: str | None = None) -> Event:
    from subsidy.v1 import decision_pb2

    if not value:
        raise InvalidEvent("empty message (no value)")
    try:
        message = decision_pb2.Decision.FromString(value)
    except DecodeError as exc:
        raise InvalidEvent(f"not a subsidy.v1.Decision protobuf: {exc}") from None
    for name in ("decision_id", "application_id", "credit_code", "clause"):
        if not getattr(message, name):
            raise InvalidEvent(f"{name}: is required")
    try:
        codec.decision_from_proto(message)
    except BadInput as exc:
        raise InvalidEvent(str(exc)) from None
    data = _as_dict(message)
    for key in ("max_award_fen",):
        data[key] = int(data.get(key, 0))
    return Event(f"decision:{message.decision_id}", model.DECISION, message.credit_code, data, trace_id)


def parse_payout_event(value: bytes | None, trace_id: str | None = None) -> Event:
    from subsidy.v1 import payout_pb2

    if not value:
        raise InvalidEvent("empty message (no value)")
    try:
        message = payout_pb2.PayoutEvent.FromString(value)
    except DecodeError as exc:
        raise InvalidEvent(f"not a subsidy.v1.PayoutEvent protobuf: {exc}") from None
    if not message.event_id:
        raise InvalidEvent("event_id: is required")
    which = message.WhichOneof("event")
    if which is None:
        raise InvalidEvent("event: none of grant_recorded, tranche_scheduled, tranche_due, tranche_paid, "
                           "tranche_cancelled is set")
    inner = getattr(message, which)
    if not inner.credit_code:
        raise InvalidEvent(f"{which}.credit_code: is required")
    data = _as_dict(inner)
    for key in ("max_award_fen", "granted_fen", "amount_fen"):
        if key in data:
            data[key] = int(data[key])
            if data[key] < 0:
                raise InvalidEvent(f"{which}.{key}: must not be negative")
    if which != "grant_recorded" and not inner.tranche_id:
        raise InvalidEvent(f"{which}.tranche_id: is required")
    return Event(message.event_id, _PAYOUT_KINDS[which], inner.credit_code, data, trace_id)


# ------------------------------------------------------------------ notifying


@dataclasses.dataclass
class Outcome:
    sent: list[str] = dataclasses.field(default_factory=list)  # channels
    replayed: list[str] = dataclasses.field(default_factory=list)
    no_contact: list[str] = dataclasses.field(default_factory=list)
    unknown_firm: bool = False


def _redact(text: str, contacts: Contacts) -> str:
    """Belt and braces: an adapter's error must not carry a contact value."""
    for value in (contacts.email, contacts.phone, contacts.webhook_url):
        if value:
            text = text.replace(value, "<redacted>")
    return text


def _tranche_info(deps: Deps, event: Event) -> TrancheInfo | None:
    d = event.data
    if event.kind == model.TRANCHE_SCHEDULED:
        info = TrancheInfo(d["tranche_id"], d.get("application_id", ""), d.get("clause", ""),
                           int(d.get("number", 0)), int(d.get("budget_year", 0)))
        deps.log.remember_tranche(info)
        return info
    if event.kind in (model.TRANCHE_DUE, model.TRANCHE_PAID, model.TRANCHE_CANCELLED):
        return deps.log.tranche(d["tranche_id"])
    return None


def notify(deps: Deps, event: Event) -> Outcome:
    outcome = Outcome()
    tranche = _tranche_info(deps, event)
    record = deps.firms.firm(event.credit_code)  # may raise RegistryUnavailable: the consumer retries
    base = logs.fields(event_id=event.event_id, kind=event.kind, credit_code=event.credit_code)
    if record is None:
        outcome.unknown_firm = True
        for channel in deps.channels:
            metrics.SKIPPED.labels(channel.name, "unknown_firm").inc()
        log.warning("firm unknown to the registry: nothing sent", extra=base)
        return outcome
    rendered = templates.render(event, deps.titles, record.firm.name, tranche)
    failures: list[tuple[str, str]] = []
    for channel in deps.channels:
        address = channel.address(record.contacts)
        nid = model.notification_id(event.event_id, channel.name)
        where = logs.fields(notification_id=nid, channel=channel.name, event_id=event.event_id,
                            kind=event.kind, credit_code=event.credit_code)
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
            id=nid, event_id=event.event_id, kind=event.kind, channel=channel.name,
            credit_code=event.credit_code, subject=rendered.subject, body=rendered.body, sms=rendered.sms,
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


def _deliver(deps: Deps, channel: Channel, notification: Notification, address: str,
             contacts: Contacts) -> str | None:
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
        if attempt == attempts:
            return f"{error} after {attempts} attempts"
        delay = min(deps.max_backoff_s, deps.backoff_s * 2 ** (attempt - 1))
        log.warning(
            "notification attempt failed, retrying",
            extra=logs.fields(notification_id=notification.id, channel=channel.name, event_id=notification.event_id,
                              credit_code=notification.credit_code, attempt=attempt, error=error, retry_in_s=delay),
        )
        deps.sleep(delay)
    return "unreachable"  # pragma: no cover
