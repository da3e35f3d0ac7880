"""Review's outbox relay: publishes ``review_outbox`` (ReviewEvent on
subsidy.reviews.v1, NoticeEvent on subsidy.notices.v1, reviewed decisions on
subsidy.decisions.v1) with the shared relay (subsidy/platform/outbox.py).
Own thread; one relay of all replicas at a time on PostgreSQL."""

from __future__ import annotations

import logging
from typing import Any

from subsidy.platform import outbox
from subsidy.services.review import metrics
from subsidy.services.review.adapters.store import SqlStore

log = logging.getLogger("subsidy.services.review.adapters.relay")


class OutboxRelay(outbox.OutboxRelay):
    def __init__(self, store: SqlStore, bootstrap: str, **options: Any):
        super().__init__(
            store,
            bootstrap,
            service="review",
            published=metrics.OUTBOX_PUBLISHED,
            failures=metrics.OUTBOX_FAILURES,
            log=log,
            **options,
        )
