"""operations' outbox relay: publishes ``operations_outbox`` (replayed records,
each to its original topic) with the shared relay (subsidy/platform/outbox.py:
batches, only an acknowledged prefix marked, retries with backoff while Kafka
is down). Own thread."""

from __future__ import annotations

import logging
from typing import Any

from subsidy.platform import outbox
from subsidy.services.operations import metrics
from subsidy.services.operations.adapters.store import SqlStore

log = logging.getLogger("subsidy.services.operations.adapters.relay")


class OutboxRelay(outbox.OutboxRelay):
    def __init__(self, store: SqlStore, bootstrap: str, **options: Any):
        super().__init__(
            store,
            bootstrap,
            service="operations",
            published=metrics.OUTBOX_PUBLISHED,
            failures=metrics.OUTBOX_FAILURES,
            log=log,
            **options,
        )
