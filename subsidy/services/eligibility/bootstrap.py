"""The eligibility service's composition root.

``create_app(settings, policy=..., registry=..., sink=..., clock=...)``
builds, without starting or connecting anything, the running parts:

- the record handler (subsidy/services/eligibility/handlers.py: one
  application record in, its decision out, or ``RecordRejected``) over the
  policy and the clock;
- the faust-streaming app and its one agent over ``subsidy.applications.v1``
  (subsidy/services/eligibility/adapters/kafka.py: submitting, the in-flight
  window, acknowledging to faust, dead letters);
- the gRPC PolicyService (subsidy/services/eligibility/adapters/grpc.py);
- the Prometheus counters (subsidy/services/eligibility/metrics.py).

``main()`` reads its settings from the environment
(subsidy/services/eligibility/config.py), refuses to start on a malformed
policy (exit status 3, naming file and field) or a bad setting (exit status
2), creates the Kafka topics if they are missing, serves Prometheus metrics,
then runs the faust worker (the agent and the gRPC PolicyService) until
SIGTERM or SIGINT, and exits 0 after a clean shutdown.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import faulthandler
import logging
import signal
import sys
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from subsidy.contracts import topics
from subsidy.core.adoption import Router
from subsidy.core.policy import Policy, load_policy
from subsidy.platform import metrics as shared_metrics
from subsidy.services.eligibility.adapters import kafka
from subsidy.services.eligibility.adapters.adoption_log import AdoptionLog
from subsidy.services.eligibility.adapters.adoption_topic import ADOPTIONS, TopicAdoptionLog
from subsidy.services.eligibility.adapters.grpc import GrpcServer
from subsidy.services.eligibility.adapters.intake import IntakeOpenWork
from subsidy.services.eligibility.adoption import AdoptionDesk
from subsidy.services.eligibility.config import Settings
from subsidy.services.eligibility.handlers import CONSUMER, Handler, utc_now
from subsidy.services.eligibility.metrics import Metrics
from subsidy.services.eligibility.outbox import RedecisionOutbox
from subsidy.services.eligibility.shadow import ShadowTally

EXIT_BAD_CONFIG = 2
EXIT_BAD_POLICY = 3
EXIT_NO_KAFKA = 4

log = logging.getLogger("subsidy.eligibility")


def create_app(
    settings: Settings | None = None,
    *,
    policy: Policy | None = None,
    registry: CollectorRegistry | None = None,
    sink: kafka.Sink | None = None,
    clock: Callable[[], dt.datetime] = utc_now,
    shadow: Policy | None = None,
) -> kafka.Eligibility:
    """Build the service. Raises PolicyError (naming file and field) when the
    policy is malformed, or the shadow version (``shadow``, else
    SUBSIDY_ELIGIBILITY_SHADOW_VERSION) is not a loadable candidate; nothing
    is started and nothing is connected here."""
    settings = settings or Settings.from_env()
    policy = policy if policy is not None else load_policy(settings.policy_dir)
    shadow_policy = shadow if shadow is not None else shadow_version(settings, policy)
    tally = ShadowTally(shadow_policy.version, clock) if shadow_policy is not None else None
    service = kafka.Eligibility(
        settings=settings,
        policy=policy,
        metrics=Metrics(registry),
        app=kafka.faust_app(settings),
        handler=Handler(policy, clock, shadow_policy=shadow_policy),
        clock=clock,
        sink=sink,
        progress=shared_metrics.ConsumerProgress(CONSUMER, settings.stall_seconds),
        shadow_tally=tally,
    )
    # allow_empty: a tombstone reaches the agent (and the DLQ) instead of being skipped.
    service.applications = kafka.raw_topic(service.app, topics.APPLICATIONS, allow_empty=True)
    service.install_agent()
    desk = adoption_desk(settings, policy, service.handler, clock)
    # What adoptions recorded and the broker has not acknowledged yet: published
    # right after the approval, and at start and every few seconds until it has.
    outbox = (
        RedecisionOutbox(
            desk, service.publish_redecisions, service.metrics, retry_seconds=settings.redecisions_retry_seconds
        )
        if desk is not None
        else None
    )
    service.grpc = GrpcServer(
        settings.grpc_address,
        policy,
        ready=service.ready,
        grace_seconds=settings.grpc_grace_seconds,
        probe=service.probe,
        shadow_tally=tally,
        adoption=desk,
        outbox=outbox,
        publish_ready=service.consumer_running,
    )
    return service


def adoption_desk(
    settings: Settings, policy: Policy, handler: Handler, clock: Callable[[], dt.datetime]
) -> AdoptionDesk | None:
    """Adoption over the register beside the policy, this instance's audit
    trail and intake's applications; None without a register. The adoptions the trail records hold
    again from the start (their files checked: PolicyError naming a changed
    one): the handler then routes each application to its version."""
    from subsidy.core.versions import has_register, load_versions

    if not has_register(policy.directory):
        return None

    def adopted(router: Router) -> None:
        handler.router = router.policy_for

    log: AdoptionLog | TopicAdoptionLog
    if settings.adoption_store == "topic":
        log = TopicAdoptionLog(settings.bootstrap_servers, settings.adoption_topic)
    else:
        log = AdoptionLog(settings.adoption_log or settings.data_dir / "adoptions.jsonl")
    # What is open and what is past its notice: intake's applications, read as the
    # adopting reviewer at each step (ADR 0021); nothing connects before the first.
    open_work = IntakeOpenWork(
        settings.intake_address,
        ca_file=settings.intake_tls_ca_file,
        timeout_seconds=settings.intake_timeout_seconds,
    )
    return AdoptionDesk(load_versions(policy.directory), log, clock, adopted, policy, open_work=open_work)


def shadow_version(settings: Settings, policy: Policy) -> Policy | None:
    """The candidate of SUBSIDY_ELIGIBILITY_SHADOW_VERSION, loaded from the
    register beside the policy (policy/versions.yaml), or None when unset.
    Raises PolicyError naming the file and field: the register, the version's
    files, or the setting (a version that is not a candidate, e.g. the adopted
    one, shadows nothing)."""
    if not settings.shadow_version:
        return None
    from subsidy.core.policy import PolicyError
    from subsidy.core.versions import REGISTER, load_versions

    versions = load_versions(policy.directory)
    versions.verify()
    entry = versions.entries.get(settings.shadow_version)
    if entry is None:
        raise PolicyError(
            "SUBSIDY_ELIGIBILITY_SHADOW_VERSION",
            "",
            f"no version {settings.shadow_version!r} in {policy.directory / REGISTER} (listed: {', '.join(versions.ids())})",
        )
    if entry.status not in ("candidate", "draft"):
        raise PolicyError(
            "SUBSIDY_ELIGIBILITY_SHADOW_VERSION",
            "",
            f"{settings.shadow_version} is {entry.status}: only a candidate or draft version runs in shadow",
        )
    return versions.get(settings.shadow_version).policy


def main() -> int:
    from prometheus_client import disable_created_metrics, start_http_server

    from subsidy.core.policy import PolicyError
    from subsidy.platform import logs
    from subsidy.platform import topics as platform_topics
    from subsidy.services.eligibility.config import ConfigError

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"eligibility: error: {exc}", file=sys.stderr)  # noqa: T201 - before the logs exist
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
        shadow = shadow_version(settings, policy)
    except PolicyError as exc:
        log.error("shadow version refused: %s", exc)
        return EXIT_BAD_POLICY
    if shadow is not None:
        log.info("shadow evaluation under %s (to %s only)", shadow.version, topics.SHADOW_DECISIONS.name)
    from subsidy.core.workflow.settings import FILE_NAME, WorkflowSettingsError, load_workflow

    try:  # the review settings beside it (Handler reads them): refused like the policy
        load_workflow(policy.directory / FILE_NAME)
    except WorkflowSettingsError as exc:
        log.error("workflow settings refused: %s", exc)
        return EXIT_BAD_POLICY
    try:
        created = platform_topics.ensure_all(settings.bootstrap_servers)
    except Exception as exc:  # noqa: BLE001 - the broker is unreachable or refuses
        log.error("cannot create the Kafka topics on %s: %s", settings.bootstrap_servers, exc)
        return EXIT_NO_KAFKA
    if settings.adoption_store == "topic":
        try:  # eligibility's own: the adoption trail every instance reads (ADR 0018)
            spec = dataclasses.replace(ADOPTIONS, name=settings.adoption_topic)
            if platform_topics.creation_enabled():
                created.update(platform_topics.ensure_topics(settings.bootstrap_servers, [spec]))
            else:
                created.update(platform_topics.check_topics(settings.bootstrap_servers, [spec]))
        except Exception as exc:  # noqa: BLE001 - the broker is unreachable or refuses
            log.error("cannot create the Kafka topic %s: %s", settings.adoption_topic, exc)
            return EXIT_NO_KAFKA
    log.info("topics ready: %s", ", ".join(f"{k} ({v})" for k, v in sorted(created.items())))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    from subsidy.services.eligibility.adapters.adoption_log import AdoptionLogError

    try:
        service = create_app(settings, policy=policy, shadow=shadow)
    except (PolicyError, AdoptionLogError) as exc:  # an adoption recorded whose files changed since
        log.error("policy versions refused: %s", exc)
        return EXIT_BAD_POLICY
    desk = service.grpc.adoption if service.grpc is not None else None
    if desk is not None:
        try:  # the shared trail, to its end, before the agent decides anything
            desk.refresh()
        except (PolicyError, AdoptionLogError) as exc:
            log.error("policy versions refused: %s", exc)
            return EXIT_BAD_POLICY
        except OSError as exc:
            log.error("the adoption trail cannot be read: %s", exc)
            return EXIT_NO_KAFKA
        if desk.state.adopted:
            log.info("adopted policy versions: %s", ", ".join(sorted(desk.state.adopted)))
        owed = desk.owed_count()
        service.metrics.redecisions_owed.set(owed)
        if owed:
            log.warning(
                "the adoption trail owes %d re-decision(s) to %s (%s): published once the consumer has joined",
                owed,
                topics.DECISIONS.name,
                ", ".join(sorted(desk.state.owed)),
            )
    service.exit_after_crash_s = kafka.CRASH_EXIT_AFTER_S
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
