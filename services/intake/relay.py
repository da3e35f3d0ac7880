"""Intake's outbox relay: publishes ``intake_outbox`` (the accepted
applications, on ``subsidy.applications.v1``) to Kafka with the shared relay
(subsidy/outbox.py: batches, pipelined sends, one mark per batch, retries
with backoff while Kafka is down, at-least-once delivery). Own thread.

On SQLite the marks go through the store's group commit, with the
submissions; on PostgreSQL several intake replicas take turns by an advisory
lock per batch (services/intake/store.py ``RELAY_LOCK_KEY``).
"""

from __future__ import annotations

import logging
from typing import Any

from subsidy import outbox
from services.intake import metrics
from services.intake.store import SqlStore

log = logging.getLogger("services.intake.relay")


class OutboxRelay(outbox.OutboxRelay):
    def __init__(self, store: SqlStore, bootstrap: str, **options: Any):
        super().__init__(store, bootstrap, service="intake", published=metrics.OUTBOX_PUBLISHED,
                         failures=metrics.OUTBOX_FAILURES, log=log, **options)
