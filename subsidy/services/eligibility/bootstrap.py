"""The eligibility service's composition root: ``main()`` runs it.

Reads its settings from the environment (subsidy/services/eligibility/config.py),
refuses to start on a malformed policy (exit status 3, naming file and
field) or a bad setting (exit status 2), creates the Kafka topics if they
are missing, serves Prometheus metrics, then runs the faust worker (the
agent and the gRPC PolicyService) until SIGTERM or SIGINT, and exits 0
after a clean shutdown.
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys

EXIT_BAD_CONFIG = 2
EXIT_BAD_POLICY = 3
EXIT_NO_KAFKA = 4

log = logging.getLogger("subsidy.eligibility")


def main() -> int:
    from prometheus_client import disable_created_metrics, start_http_server

    from subsidy.services.eligibility.adapters.kafka import CRASH_EXIT_AFTER_S, create_app
    from subsidy.services.eligibility.config import ConfigError, Settings
    from subsidy.platform import logs
    from subsidy.contracts import topics
    from subsidy.platform import topics as platform_topics
    from subsidy.core.policy import PolicyError, load_policy

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"eligibility: error: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    logs.setup("eligibility", settings.log_level)
    # `kill -USR1 <pid>` writes every thread's stack to the log (see subsidy/platform/process.py).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        policy = load_policy(settings.policy_dir)
    except PolicyError as exc:
        log.error("policy refused: %s", exc)
        return EXIT_BAD_POLICY
    log.info("policy %s loaded (%d clauses)", policy.version, len(policy.clauses))
    try:
        created = platform_topics.ensure_all(settings.bootstrap_servers)
    except Exception as exc:  # noqa: BLE001 - the broker is unreachable or refuses
        log.error("cannot create the Kafka topics on %s: %s", settings.bootstrap_servers, exc)
        return EXIT_NO_KAFKA
    log.info("topics ready: %s", ", ".join(f"{k} ({v})" for k, v in sorted(created.items())))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    service = create_app(settings, policy=policy)
    service.exit_after_crash_s = CRASH_EXIT_AFTER_S
    if settings.metrics_port:
        disable_created_metrics()
        start_http_server(settings.metrics_port, addr=settings.metrics_address, registry=service.metrics.registry)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_address, settings.metrics_port)
    worker = service.worker()
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if service.app.crashed:
            log.error("stopped after a crash: %r", service.app.crash_reason)
            return code or 1
        log.info("stopped", extra=logs.fields(exit_code=code))
        return code
    return 0

