"""Running one asyncio service process: the same for intake, payout and notify.

An app has ``async start()`` and ``async stop()``; ``serve`` starts it, waits
for SIGTERM/SIGINT (or ``stop``), then stops it gracefully. ``main`` sets up
the JSON logs and turns a failure into one error line and exit status 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import signal
from typing import Any, Callable, Protocol


class App(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def serve(app_factory: Callable[[], App], stop: asyncio.Event | None = None) -> None:
    """Run the app until SIGTERM/SIGINT (or ``stop`` is set), then stop it."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    app = app_factory()
    await app.start()
    try:
        await stop.wait()
    finally:
        await app.stop()


def quiet_kafka_client_logs() -> None:
    """kafka-python logs every refused connection at ERROR while a broker is
    down; the services' relays and consumers log that state themselves, with
    backoff. Its group coordinator's lines are kept: joins, assignments,
    heartbeat failures and the member leaving are rare and say why a
    consumer stopped receiving records."""
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    logging.getLogger("kafka.coordinator").setLevel(logging.INFO)


def main(name: str, settings: Any, app_factory: Callable[[], App]) -> int:
    """The body of ``python -m subsidy.services.<name>``: 0 after a clean stop, 1 on failure."""
    from subsidy.platform import logs

    logs.setup(name, settings.log_level)
    quiet_kafka_client_logs()
    # `kill -USR1 <pid>` writes every thread's stack to the log: the way to
    # see where a consumer that stopped making progress is waiting.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        asyncio.run(serve(app_factory))
    except Exception as exc:  # noqa: BLE001 - a clear line, not a traceback
        logging.getLogger(f"subsidy.services.{name}").error(f"{name} failed to start or stopped on an error", exc_info=exc)
        return 1
    return 0
