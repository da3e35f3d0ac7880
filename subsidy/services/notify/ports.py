"""The ports the notify core talks to. Adapters: channels.py (SMTP, .eml
files, webhook, SMS gateway), store.py (the notification log on SQLite or
PostgreSQL), contacts.py (intake's registry adapters); the unit tests use
in-memory fakes."""

from __future__ import annotations

from typing import Protocol

from subsidy.platform.registry import Contacts, FirmRecord
from subsidy.services.notify.model import Notification


class Firms(Protocol):
    """The government data platform: facts and contacts of a firm
    (subsidy.platform.registry.FileRegistry / HttpRegistry fit as they are)."""

    def firm(self, credit_code: str) -> FirmRecord | None: ...


class Channel(Protocol):
    name: str  # "email", "webhook", "sms"

    def address(self, contacts: Contacts) -> str:
        """Where this channel reaches the firm; "" when the firm has no such contact."""

    def send(self, notification: Notification, address: str) -> None:
        """Deliver once. Raises DeliveryError (retry) or PermanentDeliveryError;
        their messages must never contain the address."""


class NotificationLog(Protocol):
    def was_sent(self, notification_id: str) -> bool: ...

    def record_sent(self, notification: Notification, trace_id: str | None, at: str) -> None:
        """Record a delivered notification (idempotent: a second record is a no-op)."""
