"""Intake's outbox relay: publishes ``intake_outbox`` (the accepted
applications, on ``subsidy.applications.v1``) to Kafka with the shared relay
(subsidy/platform/outbox.py: batches, pipelined sends, one mark per batch, retries
with backoff while Kafka is down, at-least-once delivery). Own thread.

On SQLite the marks go through the store's group commit, with the
submissions; on PostgreSQL several intake replicas take turns by an advisory
lock per batch (subsidy/services/intake/adapters/store.py ``RELAY_LOCK_KEY``).
"""

from __future__ import annotations

import logging
from typing import Any

from subsidy.platform import outbox
from subsidy.services.intake import metrics
from subsidy.services.intake.adapters.store import SqlStore

log = logging.getLogger("subsidy.services.intake.adapters.relay")


class OutboxRelay(outbox.OutboxRelay):
    def __init__(self, store: SqlStore, bootstrap: str, **options: Any):
        super().__init__(
            store,
            bootstrap,
            service="intake",
            published=metrics.OUTBOX_PUBLISHED,
            failures=metrics.OUTBOX_FAILURES,
            log=log,
            **options,
        )
