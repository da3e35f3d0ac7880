"""The notification log on subsidy.platform.db.Database (SQLite or PostgreSQL): one
row per notification delivered, keyed by the derived notification id. The
same SQL on both databases."""

from __future__ import annotations

from subsidy.platform import migrations
from subsidy.platform.db import Database
from subsidy.services.notify.adapters.migrations import HISTORY
from subsidy.services.notify.model import Notification


class SqlNotificationLog(migrations.OwnedSchema):
    """NotificationLog (ports.py); create_schema and ping: migrations.OwnedSchema."""

    history = HISTORY

    def __init__(self, db: Database):
        self.db = db

    def was_sent(self, notification_id: str) -> bool:
        with self.db.transaction() as tx:
            return tx.one("SELECT 1 FROM notify_log WHERE notification_id = ?", (notification_id,)) is not None

    def record_sent(self, notification: Notification, trace_id: str | None, at: str) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO notify_log (notification_id, event_id, channel, kind, credit_code, trace_id, sent_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (notification_id) DO NOTHING",
                (
                    notification.id,
                    notification.event_id,
                    notification.channel,
                    notification.kind,
                    notification.credit_code,
                    trace_id,
                    at,
                ),
            )

    def sent_for_event(self, event_id: str) -> list[tuple[str, str]]:
        """(channel, notification id) rows of one event, for operators and tests."""
        with self.db.transaction() as tx:
            return [
                (r[0], r[1])
                for r in tx.all(
                    "SELECT channel, notification_id FROM notify_log WHERE event_id = ? ORDER BY channel", (event_id,)
                )
            ]
