"""The console's composition root: settings in, the services' channels,
token verification and sign-in wired into the pages, served by uvicorn
(HTTP) beside a plaintext gRPC health server (the probes, the dev stack's
readiness check); SIGTERM/SIGINT stop both (exit 0)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator

import uvicorn
from grpc_health.v1 import health, health_pb2

from subsidy.platform import logs
from subsidy.platform.grpc.server import build_health_server
from subsidy.services.console.adapters.grpc import GrpcServices
from subsidy.services.console.adapters.signin import DevSigner, Tokens, oidc_client
from subsidy.services.console.adapters.web import Console
from subsidy.services.console.config import Settings, SettingsError

log = logging.getLogger("subsidy.console")


def build(settings: Settings) -> tuple[Console, GrpcServices]:
    services = GrpcServices(
        settings.intake_address,
        settings.review_address,
        settings.payout_address,
        settings.health_targets,
        settings.tls_ca_file,
        settings.operations_address,
        settings.eligibility_address,
        settings.grpc_balancing,
    )
    tokens = Tokens(settings.jwks_file, settings.audience, settings.issuer)
    dev = None
    if settings.dev_signin_enabled:
        dev = DevSigner(
            settings.dev_signing_key_file,
            settings.dev_key_id,
            settings.audience,
            settings.issuer,
            settings.dev_identities,
        )
        log.warning("dev sign-in is on (SUBSIDY_DEV_MODE=1): anyone reaching the console may pick any demo identity")
    oidc = None
    if settings.oidc_enabled:
        oidc = oidc_client(
            settings.oidc_issuer, settings.oidc_client_id, settings.oidc_client_secret, settings.oidc_scope
        )
    return Console(settings, services, tokens, dev, oidc), services


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: ours stops it and the health server together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


async def serve(settings: Settings) -> None:
    console, services = build(settings)
    health_servicer = health.aio.HealthServicer()
    probes, _ = build_health_server(settings.grpc_address, health_servicer)
    host, port = _host_port(settings.http_address)
    config = uvicorn.Config(
        console.app(),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=bool(settings.public_url),
        forwarded_allow_ips="*" if settings.public_url else None,
    )
    server = _Server(config)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, lambda: setattr(server, "should_exit", True))
    await probes.start()
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    if server.started:
        for name in ("", "subsidy.console"):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("console serving on http://%s (health gRPC on %s)", settings.http_address, settings.grpc_address)
    try:
        await task
    finally:
        await health_servicer.enter_graceful_shutdown()
        await probes.stop(None)
        await services.close()


def main(argv: list[str] | None = None) -> int:
    import os

    logs.setup("console", os.environ.get("SUBSIDY_LOG_LEVEL", "INFO"))
    try:
        settings = Settings.from_env()
    except (SettingsError, ValueError) as exc:
        print(f"console: {exc}", file=sys.stderr)  # noqa: T201 - the one line a refused start leaves
        return 2
    if settings.metrics_address and settings.metrics_address != "off":
        from prometheus_client import start_http_server

        host, port = _host_port(settings.metrics_address)
        start_http_server(port, addr=host)
    try:
        asyncio.run(serve(settings))
    except (OSError, SettingsError, ValueError) as exc:
        log.error("console stopped: %s", exc)
        return 1
    return 0
