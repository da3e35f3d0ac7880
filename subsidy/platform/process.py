"""Running one asyncio service process: the same for intake, payout and notify.

An app has ``async start()`` and ``async stop()``; ``serve`` starts it, waits
for SIGTERM/SIGINT (or ``stop``), then stops it gracefully. ``main`` sets up
the JSON logs and turns a failure into one error line and exit status 1.

``ServiceApp`` is the skeleton of such an app, and ``watch_health`` the loop
that keeps its gRPC health answers true; a service's ``bootstrap.py``
subclasses the one and the other runs for it:

- start: check the schema (``migrations.require``: services never create
  tables), answer NOT_SERVING, build and start the gRPC server
  (subsidy/platform/grpc/server.py), start the service's own threads, the
  /metrics endpoint and the health watch, log that it runs;
- health: every interval, ask the service's ``readiness`` (in a thread: it
  touches the database) and set each health-checked name SERVING or
  NOT_SERVING, logging each change with the reason; refresh the service's
  gauges from the database every so often on the way;
- stop: stop the watch, answer NOT_SERVING (graceful shutdown), stop the
  server and the threads in the service's order, the /metrics endpoint, the
  database.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import faulthandler
import logging
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from grpc_health.v1 import health

from subsidy.platform import metrics as shared
from subsidy.platform import migrations
from subsidy.platform.db import Database
from subsidy.platform.grpc.server import NOT_SERVING, SERVING


class App(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class Readiness:
    """What the health watch answers: ``reason`` why the service as a whole
    is not ready (None: it is), whether each health-checked name is SERVING,
    and fields to log with a change."""

    reason: str | None
    serving: Mapping[str, bool]
    fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)


async def watch_health(
    health_servicer: health.aio.HealthServicer,
    readiness: Callable[[], Readiness],
    interval_s: float,
    log: logging.Logger,
    *,
    refresh: Callable[[], None] | None = None,
    refresh_s: float = 5.0,
) -> None:
    """Set the health answers from ``readiness`` (blocking: run in a thread)
    every ``interval_s`` until cancelled; with ``refresh``, also run it (in a
    thread) at most every ``refresh_s``."""
    current: tuple | None = None
    last_refresh = float("-inf")
    while True:
        ready = await asyncio.to_thread(readiness)
        status = tuple((name, SERVING if serving else NOT_SERVING) for name, serving in ready.serving.items())
        if status != current:
            for name, answer in status:
                await health_servicer.set(name, answer)
            log.info(
                "health",
                extra={
                    "fields": {
                        "status": "SERVING" if ready.reason is None else "NOT_SERVING",
                        **ready.fields,
                        "reason": ready.reason,
                    }
                },
            )
            current = status
        if refresh is not None and time.monotonic() - last_refresh >= refresh_s:
            last_refresh = time.monotonic()
            try:
                await asyncio.to_thread(refresh)
            except Exception as exc:  # noqa: BLE001 - the database is down: health says so
                log.debug("metrics refresh failed", extra={"fields": {"error": str(exc)[:200]}})
        await asyncio.sleep(interval_s)


def stalled(*consumers: Any) -> str | None:
    """The first of a service's Kafka consumer loops (subsidy/platform/consumer.py)
    that counts as stalled (subsidy.platform.metrics.stall_reason), as
    "<consumer>: <why>"; None when every one makes progress."""
    for consumer in consumers:
        reason = consumer.progress.stall_reason()
        if reason:
            return f"{consumer.name}: {reason}"
    return None


class ServiceApp(abc.ABC):
    """One running service (see the module doc). ``await app.start()`` …
    ``await app.stop()``. A service gives its name, its health-checked names
    (``""``, the whole process, first), and:

    - ``build_server()``: its gRPC server, not started, and the bound port;
    - ``start_work()`` / ``stop_work()``: its threads; ``stop_work`` stops the
      server too (``stop_server``), in the order the service needs;
    - ``not_ready_reason()`` (blocking), or ``readiness()`` when the names
      do not all follow it;
    - ``started_fields()``: what the start-up log line says;
    - ``gauges`` (blocking) and ``refresh_s`` to ``__init__``, when it has
      gauges to read from its database.
    """

    #: The service's name: its logs, the health task.
    name = "service"
    #: Health-checked names: "" (the whole process) and the service's own.
    health_names: tuple[str, ...] = ("",)
    #: The start-up log line: "<name> <started>".
    started = "listening"

    def __init__(
        self,
        settings: Any,
        db: Database,
        history: migrations.History,
        log: logging.Logger,
        *,
        gauges: Callable[[], None] | None = None,
        refresh_s: float = 5.0,
    ):
        self.settings = settings
        self.db = db
        self.history = history
        self.log = log
        self._gauges = gauges
        self._refresh_s = refresh_s
        self.health = health.aio.HealthServicer()
        self.server: Any = None
        self.port = 0
        self._health_task: asyncio.Task | None = None
        self._metrics: Any = None

    # -- what a service gives ---------------------------------------------------------

    @abc.abstractmethod
    def build_server(self) -> tuple[Any, int]: ...

    @abc.abstractmethod
    async def start_work(self) -> None: ...

    @abc.abstractmethod
    async def stop_work(self) -> None: ...

    @abc.abstractmethod
    def not_ready_reason(self) -> str | None: ...

    def readiness(self) -> Readiness:
        reason = self.not_ready_reason()
        return Readiness(reason, {name: reason is None for name in self.health_names})

    def started_fields(self) -> dict[str, Any]:
        return {}

    # -- the skeleton -----------------------------------------------------------------------

    async def start(self) -> None:
        # The tables are the migrations' (`subsidy migrate`, run before a rollout):
        # refuse a schema older than this code needs, before anything else starts.
        await asyncio.to_thread(migrations.require, self.db, self.history, self.log)
        for name in self.health_names:
            await self.health.set(name, NOT_SERVING)
        self.server, self.port = self.build_server()
        await self.server.start()
        await self.start_work()
        self._metrics = shared.start_endpoint(self.settings.metrics_address, self.log)
        self._health_task = asyncio.create_task(
            watch_health(
                self.health,
                self.readiness,
                self.settings.health_interval_s,
                self.log,
                refresh=self._gauges,
                refresh_s=self._refresh_s,
            ),
            name=f"{self.name}-health",
        )
        self.log.info(f"{self.name} {self.started}", extra={"fields": self.started_fields()})

    async def stop_server(self, grace_s: float) -> None:
        if self.server is not None:
            await self.server.stop(grace_s)

    async def stop(self) -> None:
        self.log.info(f"{self.name} shutting down", extra={"fields": {"grace_s": self.settings.grace_s}})
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        await self.health.enter_graceful_shutdown()
        await self.stop_work()
        shared.stop_endpoint(self._metrics)
        self.db.close()
        self.log.info(f"{self.name} stopped")


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
    except Exception as exc:
        logging.getLogger(f"subsidy.services.{name}").error(
            f"{name} failed to start or stopped on an error", exc_info=exc
        )
        return 1
    return 0
