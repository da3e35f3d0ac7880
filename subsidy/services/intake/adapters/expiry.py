"""Proposals past their window become EXPIRED (proposals.expire_due), every
``interval_s`` on a thread of its own; a failure (the database down) is
logged and retried at the next round."""

from __future__ import annotations

import logging
from typing import Any

from subsidy.platform.worker import WorkerThread
from subsidy.services.intake import proposals

log = logging.getLogger("subsidy.services.intake.adapters.expiry")


class ProposalExpiry(WorkerThread):
    def __init__(self, deps: Any, interval_s: float = 60.0, on_expired: Any = None):
        super().__init__("intake-proposal-expiry", log)
        self.deps = deps
        self.interval_s = interval_s
        self._on_expired = on_expired

    def round(self) -> int:
        expired = proposals.expire_due(self.deps)
        if expired and self._on_expired is not None:
            self._on_expired()
        return expired

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.round()
            except Exception as exc:  # noqa: BLE001 - the database is down: next round
                log.warning("proposal expiry failed", extra={"fields": {"error": f"{type(exc).__name__}: {exc}"[:300]}})
            self._wake.wait(self.interval_s)
            self._wake.clear()
