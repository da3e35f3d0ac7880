"""registry-sync's outbox relay: publishes ``registry_sync_outbox`` (FirmFacts on
subsidy.firms.v1, dead letters on subsidy.firms.v1.dlq) with the shared relay
(subsidy/platform/outbox.py: batches, only an acknowledged prefix marked,
retries with backoff while Kafka is down). Own thread."""

from __future__ import annotations

import logging
from typing import Any

from subsidy.platform import outbox
from subsidy.services.registry_sync import metrics
from subsidy.services.registry_sync.adapters.store import SqlStore

log = logging.getLogger("subsidy.services.registry_sync.adapters.relay")


class OutboxRelay(outbox.OutboxRelay):
    def __init__(self, store: SqlStore, bootstrap: str, **options: Any):
        super().__init__(
            store,
            bootstrap,
            service="registry_sync",
            published=metrics.OUTBOX_PUBLISHED,
            failures=metrics.OUTBOX_FAILURES,
            log=log,
            **options,
        )
