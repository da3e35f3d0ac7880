"""What the in-process service runners of the integration tests share: a
service app (async ``start()``/``stop()``) on an event loop of its own in a
thread, the schema migration that production runs before a rollout, and a
bounded wait for a condition."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def migrate(service: str, database_url: str) -> None:
    """What ``subsidy migrate --service <service>`` does before a rollout, in
    process: the services only check the schema version at start."""
    from subsidy.platform import migrations
    from subsidy.platform.db import Database
    from subsidy.services.intake.adapters.migrations import HISTORY as intake
    from subsidy.services.notify.adapters.migrations import HISTORY as notify
    from subsidy.services.payout.adapters.migrations import HISTORY as payout

    db = Database(database_url, store=f"{service}-migrate")
    try:
        migrations.upgrade(db, {"intake": intake, "payout": payout, "notify": notify}[service])
    finally:
        db.close()


class RunningApp:
    """``with RunningApp(factory) as svc:`` ``factory()`` built and started on
    its own event loop in a thread (``svc.app``), stopped on exit."""

    def __init__(self, factory: Callable[[], Any]):
        self.factory = factory
        self.app: Any = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> Any:
        self._thread.start()

        async def start() -> Any:
            app = self.factory()
            await app.start()
            return app

        try:
            self.app = asyncio.run_coroutine_threadsafe(start(), self._loop).result(60)
        except BaseException:
            self._close_loop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.app is not None:
            asyncio.run_coroutine_threadsafe(self.app.stop(), self._loop).result(30)
        self._close_loop()

    def _close_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
