"""Payout's outbox relay: publishes ``payout_outbox`` (GrantRecorded,
TrancheScheduled, ... on ``subsidy.payouts.v1``) to Kafka with the shared
relay (subsidy/platform/outbox.py: batches, pipelined sends, only an acknowledged
prefix marked, retries with backoff while Kafka is down, at-least-once
delivery under the same derived event ids). Own thread.

With several replicas on one PostgreSQL database, one relay at a time holds
the turn (a transaction-scoped advisory lock per batch, in the store's
``relay_batch``), so rows go out in id order — and one firm's rows are in the
order its transactions committed, because every write for a firm holds the
firm's row lock.
"""

from __future__ import annotations

import logging
from typing import Any

from subsidy.platform import outbox
from subsidy.services.payout import metrics
from subsidy.services.payout.adapters.store import SqlStore

log = logging.getLogger("subsidy.services.payout.adapters.relay")


class OutboxRelay(outbox.OutboxRelay):
    def __init__(self, store: SqlStore, bootstrap: str, **options: Any):
        super().__init__(
            store,
            bootstrap,
            service="payout",
            published=metrics.OUTBOX_PUBLISHED,
            failures=metrics.OUTBOX_FAILURES,
            log=log,
            **options,
        )
