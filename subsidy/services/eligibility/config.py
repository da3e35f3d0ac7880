"""The eligibility service's settings, read from the environment once, at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

APP_ID = "subsidy-eligibility"


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    #: KAFKA_BOOTSTRAP_SERVERS: host:port[,host:port...]
    bootstrap_servers: str = "127.0.0.1:9092"
    #: SUBSIDY_ELIGIBILITY_GRPC_ADDRESS: where PolicyService, health and reflection listen.
    grpc_address: str = "127.0.0.1:50052"
    #: SUBSIDY_ELIGIBILITY_METRICS_PORT: Prometheus /metrics; 0 turns it off.
    metrics_port: int = 9102
    #: SUBSIDY_ELIGIBILITY_METRICS_ADDRESS: interface the metrics endpoint binds; loopback
    #: by default, like intake, payout and notify. A pod sets 0.0.0.0 explicitly so that
    #: Prometheus can scrape the pod IP (deploy/k8s/base/config/eligibility.env).
    metrics_address: str = "127.0.0.1"
    #: SUBSIDY_POLICY_DIR: the policy data (default: policy/ in the checkout).
    policy_dir: Path | None = None
    #: SUBSIDY_ELIGIBILITY_DATA_DIR: faust's data directory (memory store: little is written).
    data_dir: Path = Path("var/eligibility")
    #: SUBSIDY_ELIGIBILITY_TOPIC_REPLICATION_FACTOR: for topics faust itself creates
    #: (changelogs, if a table is ever added). 1 for a one-node dev broker.
    topic_replication_factor: int = 1
    #: SUBSIDY_ELIGIBILITY_GRPC_GRACE_SECONDS: in-flight RPCs get this long at shutdown.
    grpc_grace_seconds: float = 5.0
    #: SUBSIDY_ELIGIBILITY_SESSION_TIMEOUT_SECONDS: Kafka consumer session timeout;
    #: a crashed instance's partitions move after this long.
    session_timeout_seconds: float = 10.0
    #: SUBSIDY_ELIGIBILITY_COMMIT_INTERVAL_SECONDS: how often processed offsets are committed.
    commit_interval_seconds: float = 1.0
    #: SUBSIDY_ELIGIBILITY_MAX_IN_FLIGHT: decisions and dead letters handed to the producer
    #: and not yet acknowledged by the broker, at most; reading waits beyond that.
    max_in_flight: int = 1000
    #: SUBSIDY_ELIGIBILITY_STALL_SECONDS: health turns NOT_SERVING when the consumer
    #: has not reached the broker, or has lag and has not advanced, for this long.
    stall_seconds: float = 60.0
    #: SUBSIDY_ELIGIBILITY_LOG_LEVEL
    log_level: str = "INFO"
    #: SUBSIDY_ELIGIBILITY_SHADOW_VERSION: a candidate policy version of policy/versions.yaml
    #: to evaluate beside the adopted one for every application (shadow decisions go to
    #: subsidy.decisions.shadow.v1 only; docs/policy-versions.md). Empty: no shadow.
    shadow_version: str = ""
    #: SUBSIDY_ELIGIBILITY_ADOPTION_LOG: the audit trail of policy version adoptions
    #: (JSON lines; default <data dir>/adoptions.jsonl). Keep it on a persistent volume.
    adoption_log: Path | None = None
    #: SUBSIDY_ELIGIBILITY_ADOPTION_STORE: where the adoption trail lives -- ``topic``
    #: (default: subsidy.policy.adoptions.v1, shared by every instance, kept forever;
    #: ADR 0018) or ``file`` (SUBSIDY_ELIGIBILITY_ADOPTION_LOG, this instance's only).
    adoption_store: str = "topic"
    #: SUBSIDY_ELIGIBILITY_ADOPTION_TOPIC: the shared trail's topic. Every instance of one
    #: deployment names the same; a test stack on a shared broker names its own.
    adoption_topic: str = "subsidy.policy.adoptions.v1"
    #: SUBSIDY_ELIGIBILITY_INTAKE_ADDRESS: intake's gRPC host:port. AdoptVersion reads there,
    #: as the adopting reviewer, which applications are not yet past their public notice and
    #: which awards are past it (ListApplications; ADR 0021).
    intake_address: str = "127.0.0.1:50051"
    #: SUBSIDY_ELIGIBILITY_INTAKE_TLS_CA_FILE: CA bundle to verify intake's TLS certificate;
    #: empty: a plaintext channel (dev, tests).
    intake_tls_ca_file: str = ""
    #: SUBSIDY_ELIGIBILITY_INTAKE_TIMEOUT_SECONDS: the deadline of each ListApplications call.
    intake_timeout_seconds: float = 10.0
    #: SUBSIDY_ELIGIBILITY_REDECISIONS_RETRY_SECONDS: how often the re-decisions an adoption
    #: recorded and the broker has not acknowledged yet are published again (outbox.py).
    redecisions_retry_seconds: float = 5.0
    app_id: str = APP_ID

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        d = cls()

        def text(name: str, default: str) -> str:
            value = env.get(name, "").strip()
            return value or default

        def number(name: str, default: float, kind: type = float, minimum: float = 0) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise ConfigError(f"{name}: must be a {'whole ' if kind is int else ''}number, got {raw!r}") from None
            if value < minimum:
                raise ConfigError(f"{name}: must be >= {minimum}, got {raw!r}")
            return value

        grpc_address = text("SUBSIDY_ELIGIBILITY_GRPC_ADDRESS", d.grpc_address)
        if ":" not in grpc_address:
            raise ConfigError(f"SUBSIDY_ELIGIBILITY_GRPC_ADDRESS: must be host:port, got {grpc_address!r}")
        metrics_port = int(number("SUBSIDY_ELIGIBILITY_METRICS_PORT", d.metrics_port, int))
        if metrics_port > 65535:
            raise ConfigError(f"SUBSIDY_ELIGIBILITY_METRICS_PORT: not a port: {metrics_port}")
        policy_dir = env.get("SUBSIDY_POLICY_DIR", "").strip()
        adoption_log = env.get("SUBSIDY_ELIGIBILITY_ADOPTION_LOG", "").strip()
        adoption_store = text("SUBSIDY_ELIGIBILITY_ADOPTION_STORE", d.adoption_store).lower()
        if adoption_store not in ("topic", "file"):
            raise ConfigError(f"SUBSIDY_ELIGIBILITY_ADOPTION_STORE: expected topic or file, got {adoption_store!r}")
        intake_address = text("SUBSIDY_ELIGIBILITY_INTAKE_ADDRESS", d.intake_address)
        if ":" not in intake_address:
            raise ConfigError(f"SUBSIDY_ELIGIBILITY_INTAKE_ADDRESS: must be host:port, got {intake_address!r}")
        intake_tls_ca_file = text("SUBSIDY_ELIGIBILITY_INTAKE_TLS_CA_FILE", d.intake_tls_ca_file)
        if intake_tls_ca_file and not Path(intake_tls_ca_file).is_file():
            raise ConfigError(f"SUBSIDY_ELIGIBILITY_INTAKE_TLS_CA_FILE: no such file: {intake_tls_ca_file!r}")
        return cls(
            bootstrap_servers=text("KAFKA_BOOTSTRAP_SERVERS", d.bootstrap_servers),
            grpc_address=grpc_address,
            metrics_port=metrics_port,
            metrics_address=text("SUBSIDY_ELIGIBILITY_METRICS_ADDRESS", d.metrics_address),
            policy_dir=Path(policy_dir) if policy_dir else None,
            data_dir=Path(text("SUBSIDY_ELIGIBILITY_DATA_DIR", str(d.data_dir))),
            topic_replication_factor=int(
                number("SUBSIDY_ELIGIBILITY_TOPIC_REPLICATION_FACTOR", d.topic_replication_factor, int, 1)
            ),
            grpc_grace_seconds=number("SUBSIDY_ELIGIBILITY_GRPC_GRACE_SECONDS", d.grpc_grace_seconds),
            session_timeout_seconds=number(
                "SUBSIDY_ELIGIBILITY_SESSION_TIMEOUT_SECONDS", d.session_timeout_seconds, float, 1
            ),
            commit_interval_seconds=number(
                "SUBSIDY_ELIGIBILITY_COMMIT_INTERVAL_SECONDS", d.commit_interval_seconds, float, 0.1
            ),
            max_in_flight=int(number("SUBSIDY_ELIGIBILITY_MAX_IN_FLIGHT", d.max_in_flight, int, 1)),
            stall_seconds=number("SUBSIDY_ELIGIBILITY_STALL_SECONDS", d.stall_seconds, float, 1),
            # Its own variable first (it came first, and deploy/ sets it);
            # else the level every other service reads, so one setting quiets all.
            log_level=text("SUBSIDY_ELIGIBILITY_LOG_LEVEL", text("SUBSIDY_LOG_LEVEL", d.log_level)).upper(),
            shadow_version=text("SUBSIDY_ELIGIBILITY_SHADOW_VERSION", d.shadow_version),
            adoption_log=Path(adoption_log) if adoption_log else None,
            adoption_store=adoption_store,
            adoption_topic=text("SUBSIDY_ELIGIBILITY_ADOPTION_TOPIC", d.adoption_topic),
            intake_address=intake_address,
            intake_tls_ca_file=intake_tls_ca_file,
            intake_timeout_seconds=number(
                "SUBSIDY_ELIGIBILITY_INTAKE_TIMEOUT_SECONDS", d.intake_timeout_seconds, float, 0.1
            ),
            redecisions_retry_seconds=number(
                "SUBSIDY_ELIGIBILITY_REDECISIONS_RETRY_SECONDS", d.redecisions_retry_seconds, float, 0.1
            ),
        )

    @property
    def broker_urls(self) -> list[str]:
        return [f"kafka://{h.strip()}" for h in self.bootstrap_servers.split(",") if h.strip()]
