"""The whole system on one machine: Kafka and the services as real processes.

    python -m subsidy_dev.stack demo [--exit]    # what `make run` does

`LocalStack` is also what the end-to-end tests start. Each service runs as
`python -m subsidy.services.<name>` with its configuration in environment variables,
its log (JSON lines) in `<var>/logs/<name>.log`, and is ready when its gRPC
health check answers SERVING.

Time in the stack is the dev clock (subsidy/platform/clock.py, DevClock): a
file under `<var>` that payout and review read, starting on DEV_CLOCK_START
so the story is the same whenever it is run; `advance_clock` (or `subsidy
dev clock advance`) moves every service at once, so a 5-working-day public
notice passes in seconds. People are tokens from the stack's own identity
provider (subsidy_dev/identities.py): the review service verifies them, since
four-eyes means two different subjects, and in `make run` eligibility too
(``demo_env``: policy version adoption is four-eyes as well).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from subsidy_dev import free_port, project_root, run_groups, tail
from subsidy_dev.identities import DevIdentityProvider
from subsidy_dev.kafka import ENV_BOOTSTRAP, KafkaBroker
from subsidy_dev.platform_fake import FakeDataPlatform

#: The dev clock's first instant: a Friday before the National Day holiday,
#: so the demo's public notice shows working days across 国庆 and its 调休.
DEV_CLOCK_START = dt.datetime(2026, 9, 25, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
#: The services whose rules read the clock (intake: the proposals' window;
#: registry-sync: changes dated ahead are held until their day).
CLOCKED = ("payout", "review", "intake", "registry_sync", "operations")


class StackError(RuntimeError):
    pass


@dataclass
class ServiceProcess:
    name: str
    grpc_address: str
    env: dict[str, str]
    log_path: Path
    health_service: str = ""
    process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"subsidy.services.{self.name}"],
            cwd=project_root(),
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        run_groups.register(self.process.pid, f"service {self.name}")

    def serving(self) -> bool:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        try:
            with grpc.insecure_channel(self.grpc_address) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                reply = stub.Check(health_pb2.HealthCheckRequest(service=self.health_service), timeout=1)
                return reply.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError:
            return False

    def wait_serving(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise StackError(
                    f"{self.name} exited with status {self.process.returncode}; last log lines:\n{tail(self.log_path)}"
                )
            if self.serving():
                return
            time.sleep(0.3)
        raise StackError(f"{self.name} not SERVING after {timeout:.0f}s; last log lines:\n{tail(self.log_path)}")

    def stop(self, timeout: float = 45.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit in time; returns the exit status."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)

    def diagnose(self, lines: int = 80) -> str:
        """Its threads' stacks (SIGUSR1: every service registers faulthandler
        for it) and the last lines of its log: what a failing test prints."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.process.send_signal(signal.SIGUSR1)
            time.sleep(1)
        return f"--- {self.name} log tail ---\n{tail(self.log_path, lines)}"

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


SERVICES = ("intake", "eligibility", "payout", "notify", "review", "registry_sync", "operations", "console")
#: The services with a database: the harness migrates it before starting them.
MIGRATED = ("intake", "payout", "notify", "review", "registry_sync", "operations")


def _available(name: str) -> bool:
    return (project_root() / "subsidy" / "services" / name / "__main__.py").exists()


def migrate(name: str, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """``python -m subsidy.cli migrate --service <name>`` with the service's own
    environment (so its SUBSIDY_<NAME>_DATABASE_URL), as production's migration
    Job runs it before a rollout: the services only check the schema version."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "subsidy.cli", "migrate", "--service", name, "--wait", "60"],
            cwd=project_root(),
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    run_groups.register(process.pid, f"migration of {name}")
    return process


class LocalStack:
    """Kafka (unless KAFKA_BOOTSTRAP_SERVERS names one) plus the services."""

    def __init__(
        self,
        var_dir: Path | str,
        kafka_bootstrap: str | None = None,
        broker: KafkaBroker | None = None,
        services: tuple[str, ...] | None = None,
        extra_env: dict[str, dict[str, str]] | None = None,
        platform_registry: Path | None = None,
        clock_start: dt.datetime = DEV_CLOCK_START,
    ):
        self.var_dir = Path(var_dir).resolve()
        #: The dev clock's first instant when the stack makes its clock file.
        self.clock_start = clock_start
        self.broker = broker
        self.kafka_bootstrap = kafka_bootstrap or os.environ.get(ENV_BOOTSTRAP)
        self.wanted = services or tuple(s for s in SERVICES if _available(s))
        self.extra_env = extra_env or {}
        #: The firms the data platform's test double serves (default demo/registry.json).
        self.platform_registry = platform_registry or project_root() / "demo" / "registry.json"
        self.services: dict[str, ServiceProcess] = {}
        #: Each wanted service's gRPC address, chosen before any starts.
        self._addresses: dict[str, str] = {}
        #: What each service's ``subsidy migrate`` printed (the last start).
        self.migrations: dict[str, str] = {}
        self.clock_file = self.var_dir / "clock.json"
        self.identities: DevIdentityProvider | None = None
        #: The data platform's test double (subsidy_dev/platform_fake.py), when registry-sync runs.
        self.platform: FakeDataPlatform | None = None

    def start_clock(self) -> None:
        """The dev clock's file, made once: a restarted stack goes on from where its time was."""
        from subsidy.platform.clock import DevClockState, write_dev_clock

        if not self.clock_file.exists():
            self.var_dir.mkdir(parents=True, exist_ok=True)
            write_dev_clock(self.clock_file, DevClockState(self.clock_start, time.time()))

    def advance_clock(self, days: float = 0, **delta: float) -> dt.datetime:
        """Move the stack's time forward; returns the new instant."""
        from subsidy.platform.clock import DevClock, advance_dev_clock

        advance_dev_clock(self.clock_file, dt.timedelta(days=days, **delta))
        return DevClock(self.clock_file).now()

    def today(self) -> dt.date:
        from subsidy.platform.clock import DevClock

        return DevClock(self.clock_file).today()

    def start(self) -> LocalStack:
        if self.kafka_bootstrap is None:
            self.broker = self.broker or KafkaBroker(self.var_dir / "kafka")
            self.kafka_bootstrap = self.broker.start()
        from subsidy.platform import topics as platform_topics

        platform_topics.ensure_all(self.kafka_bootstrap)
        self.start_clock()
        self.identities = DevIdentityProvider(self.var_dir / "dev-auth")
        if "registry_sync" in self.wanted and self.platform is None:
            self.start_platform()
        # Every address first: a service may call another started after it.
        self._addresses = {name: f"127.0.0.1:{free_port()}" for name in self.wanted}
        for name in self.wanted:
            address = self._addresses[name]
            env = {ENV_BOOTSTRAP: self.kafka_bootstrap, "PYTHONUNBUFFERED": "1", **self._env(name, address)}
            env.update(self.extra_env.get(name, {}))
            self.services[name] = ServiceProcess(name, address, env, self.var_dir / "logs" / f"{name}.log")
        try:
            self.migrate()
            rest = dict(self.services)
            sync = rest.pop("registry_sync", None)
            if sync is not None:
                # The firms first: intake and notify read them from subsidy.firms.v1
                # (one source, docs/data-platform.md), so it holds every firm the
                # platform serves before they start, as it does in production.
                sync.start()
                sync.wait_serving()
                self.wait_firms_published()
            for service in rest.values():
                service.start()
            for service in rest.values():
                service.wait_serving()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_firms_published(self, timeout: float = 90.0) -> None:
        """Until subsidy.firms.v1 holds the facts of every firm the data platform
        serves under a valid credit code (registry-sync dead-letters the others),
        read as intake and notify read it: through the TopicRegistry adapter."""
        from subsidy.core.credit_code import is_valid
        from subsidy.platform.topic_registry import TopicRegistry

        assert self.platform is not None
        wanted = {code for code in self.platform.state() if is_valid(code)}
        registry = TopicRegistry(self.kafka_bootstrap).start()
        try:
            deadline = time.monotonic() + timeout
            while missing := sorted(code for code in wanted if registry.facts(code) is None):
                if time.monotonic() > deadline:
                    raise StackError(
                        f"registry-sync did not publish every firm within {timeout:.0f}s "
                        f"(missing {', '.join(missing[:5])}); last log lines:\n"
                        f"{tail(self.services['registry_sync'].log_path)}"
                    )
                time.sleep(0.2)
        finally:
            registry.stop()

    def start_platform(self) -> None:
        """The data platform's test double on a thread of this process, serving
        demo/registry.json's firms and what the demo scripts (docs/data-platform.md),
        its day the stack's clock; its bearer token in ``<var>/platform.token``."""
        import secrets

        from subsidy.platform.clock import DevClock

        token_file = self.var_dir / "platform.token"
        if not token_file.exists():
            token_file.write_text(secrets.token_urlsafe(24) + "\n", encoding="utf-8")
            token_file.chmod(0o600)
        clock = DevClock(self.clock_file)
        self.platform = FakeDataPlatform.from_file(
            self.platform_registry,
            token=token_file.read_text(encoding="utf-8").strip(),
            today=clock.today,
            journal=self.var_dir / "platform-feed.jsonl",
        )
        self.platform.start()

    def migrate(self) -> None:
        """Migrate every started service's database, all at once (each has its
        own history and lock, so sharing one PostgreSQL database is fine)."""
        running = {}
        for name, service in self.services.items():
            if name in MIGRATED:
                log_path = self.var_dir / "logs" / f"{name}-migrate.log"
                log_path.unlink(missing_ok=True)
                running[name] = (migrate(name, service.env, log_path), log_path)
        for name, (process, log_path) in running.items():
            try:
                status = process.wait(180)
            except subprocess.TimeoutExpired:
                process.kill()
                status = process.wait(5)
            output = log_path.read_text(encoding="utf-8", errors="replace")
            if status != 0:
                raise StackError(f"`subsidy migrate --service {name}` exited with status {status}:\n{output}")
            self.migrations[name] = output

    def _env(self, name: str, address: str) -> dict[str, str]:
        """Each service's settings: its own port, store and data under var_dir."""
        upper = name.upper()
        database = os.environ.get(f"SUBSIDY_{upper}_DATABASE_URL", f"sqlite:///{self.var_dir / (name + '.db')}")
        env = {f"SUBSIDY_{upper}_GRPC_ADDRESS": address}
        if name == "intake":
            env.update(SUBSIDY_INTAKE_DATABASE_URL=database, SUBSIDY_INTAKE_METRICS_ADDRESS=f"127.0.0.1:{free_port()}")
        elif name == "eligibility":
            env.update(
                SUBSIDY_ELIGIBILITY_DATA_DIR=str(self.var_dir / "eligibility"),
                SUBSIDY_ELIGIBILITY_METRICS_PORT=str(free_port()),
                SUBSIDY_ELIGIBILITY_METRICS_ADDRESS="127.0.0.1",
                # The adoption trail is shared by every eligibility instance of one
                # deployment (ADR 0018): here, of one stack. Stacks sharing a broker
                # (the tests) must not see each other's adoptions; `make run` on the
                # same var/ keeps its own.
                SUBSIDY_ELIGIBILITY_ADOPTION_TOPIC="subsidy.policy.adoptions.v1.stack-"
                + hashlib.sha256(str(self.var_dir.resolve()).encode()).hexdigest()[:12],
            )
            if "intake" in self._addresses:  # where AdoptVersion finds what is open (ADR 0021)
                env.update(SUBSIDY_ELIGIBILITY_INTAKE_ADDRESS=self._addresses["intake"])
        elif name == "payout":
            env.update(
                SUBSIDY_PAYOUT_DATABASE_URL=database,
                SUBSIDY_PAYOUT_METRICS_ADDRESS=f"127.0.0.1:{free_port()}",
                # Tranches fall due, and held ones are cancelled, within seconds
                # of the dev clock passing their day (production: every minute).
                SUBSIDY_PAYOUT_SCHEDULER_INTERVAL_SECONDS="2",
            )
        elif name == "notify":
            env.update(
                SUBSIDY_NOTIFY_DATABASE_URL=database,
                SUBSIDY_NOTIFY_MAIL_DIR=str(self.mail_dir),
                SUBSIDY_NOTIFY_METRICS_ADDRESS=f"127.0.0.1:{free_port()}",
            )
        elif name == "review":
            assert self.identities is not None
            env.update(
                SUBSIDY_REVIEW_DATABASE_URL=database,
                SUBSIDY_REVIEW_METRICS_ADDRESS=f"127.0.0.1:{free_port()}",
                # Close notice periods within a second of the clock passing their end.
                SUBSIDY_REVIEW_SCHEDULER_INTERVAL_SECONDS="0.5",
                **self.identities.service_env("review"),
            )
        elif name == "registry_sync":
            assert self.platform is not None
            env.update(
                SUBSIDY_REGISTRY_SYNC_DATABASE_URL=database,
                SUBSIDY_REGISTRY_SYNC_METRICS_ADDRESS=f"127.0.0.1:{free_port()}",
                SUBSIDY_REGISTRY_SYNC_FEED_URL=self.platform.url,
                SUBSIDY_REGISTRY_SYNC_FEED_TOKEN_FILE=str(self.var_dir / "platform.token"),
                SUBSIDY_REGISTRY_SYNC_POLL_SECONDS="0.5",
            )
        elif name == "operations":
            assert self.identities is not None
            env.update(
                SUBSIDY_OPERATIONS_DATABASE_URL=database,
                SUBSIDY_OPERATIONS_METRICS_ADDRESS=f"127.0.0.1:{free_port()}",
                **self.identities.service_env("operations"),
            )
        elif name == "console":
            env.update(self._console_env())
        if name in ("intake", "notify") and "registry_sync" in self.wanted:
            env.update(SUBSIDY_REGISTRY_SOURCE="topic")  # what registry-sync publishes, not a second copy
        if name in CLOCKED:
            env.update(SUBSIDY_DEV_MODE="1", SUBSIDY_DEV_CLOCK_FILE=str(self.clock_file))
        return env

    def _console_env(self) -> dict[str, str]:
        """The staff console (docs/console.md): the services started before it
        (SERVICES puts it last, so their addresses are known), dev sign-in with
        the stack's identity provider key, verification with its JWKS."""
        import json
        import secrets

        from subsidy_dev.identities import KID, PEOPLE

        assert self.identities is not None
        address = {name: s.grpc_address for name, s in self.services.items()}
        env = {
            "SUBSIDY_CONSOLE_HTTP_ADDRESS": f"127.0.0.1:{free_port()}",
            "SUBSIDY_CONSOLE_METRICS_ADDRESS": f"127.0.0.1:{free_port()}",
            "SUBSIDY_CONSOLE_HEALTH_TARGETS": ",".join(f"{n}={a}" for n, a in address.items()),
            "SUBSIDY_CONSOLE_SESSION_SECRET": secrets.token_urlsafe(32),
            "SUBSIDY_DEV_MODE": "1",
            "SUBSIDY_CONSOLE_DEV_SIGNING_KEY_FILE": str(self.identities.key_path),
            "SUBSIDY_CONSOLE_DEV_KEY_ID": KID,
            "SUBSIDY_CONSOLE_DEV_IDENTITIES": json.dumps(
                [{"subject": p.subject, "role": p.role, "name": p.name} for p in PEOPLE], ensure_ascii=False
            ),
            **self.identities.service_env("console"),
        }
        for name in ("intake", "review", "payout", "operations", "eligibility"):
            if name in address:
                env[f"SUBSIDY_CONSOLE_{name.upper()}_ADDRESS"] = address[name]
        return env

    @property
    def console_url(self) -> str:
        """The console's address in a browser (when the stack runs it)."""
        return f"http://{self.services['console'].env['SUBSIDY_CONSOLE_HTTP_ADDRESS']}"

    @property
    def mail_dir(self) -> Path:
        return self.var_dir / "mail"

    def address(self, name: str) -> str:
        return self.services[name].grpc_address

    @property
    def intake_address(self) -> str:
        return self.services["intake"].grpc_address

    @property
    def eligibility_address(self) -> str:
        return self.services["eligibility"].grpc_address

    def stop(self) -> dict[str, int | None]:
        statuses = {name: service.stop() for name, service in reversed(list(self.services.items()))}
        if self.platform is not None:
            self.platform.stop()
            self.platform = None
        if self.broker is not None and self.broker.is_running():
            self.broker.stop()
        return statuses

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def demo_env(stack_dir: Path | str) -> dict[str, dict[str, str]]:
    """What `make run`'s stack in ``stack_dir`` sets beyond every stack's
    settings: the fictional final in shadow beside the draft (issue 14; the
    demo adopts it), and eligibility verifying the stack's dev tokens, so
    that AdoptVersion knows each reviewer by the token's subject, whether
    the demo story's reviewers call it (subsidy_dev/adoption_story.py) or the
    console forwards a signed-in reviewer's token (docs/console.md). The key
    is the one the stack itself loads (``<stack_dir>/dev-auth``). Other
    stacks (the fuzz and fault tests) keep eligibility without
    authentication, as before."""
    identities = DevIdentityProvider(Path(stack_dir).resolve() / "dev-auth")
    return {
        "eligibility": {
            "SUBSIDY_ELIGIBILITY_SHADOW_VERSION": "fictional-final-2023",
            **identities.service_env("eligibility"),
        }
    }


def _demo(args: argparse.Namespace) -> int:
    from subsidy_dev.demo import run_demo

    var_dir = Path(args.var_dir)
    for group, pids in run_groups.reap_orphans():
        print(f"Ended {group.what}, left behind by an interrupted run ({len(pids)} processes)", flush=True)
    print(f"Starting Kafka and the services (data and logs in {var_dir}/) ...", flush=True)
    # The fictional final in shadow, and eligibility verifying the dev tokens (demo_env).
    stack = LocalStack(var_dir / "stack", extra_env=demo_env(var_dir / "stack"))
    try:
        stack.start()
        for output in stack.migrations.values():  # what was applied (or adopted), and the version
            for line in output.strip().splitlines()[1:]:
                print("  " + line, flush=True)
        print(
            f"Kafka at {stack.kafka_bootstrap}; "
            + "; ".join(f"{name} gRPC at {s.grpc_address}" for name, s in stack.services.items()),
            flush=True,
        )
        run_demo(stack, Path(args.applications))
        if args.exit:
            return 0
        print(
            "\nServing until Ctrl-C. Logs: " + ", ".join(str(s.log_path) for s in stack.services.values()), flush=True
        )
        stopping = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopping.set())
        while not stopping.wait(1):
            pass
        return 0
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        print("Stopping ...", flush=True)
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m subsidy_dev.stack", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="start everything, submit the demo applications, show the decisions")
    demo.add_argument("--applications", default=str(project_root() / "demo" / "applications.jsonl"))
    demo.add_argument("--var-dir", default=str(project_root() / "var"))
    demo.add_argument("--exit", action="store_true", help="stop after the demo instead of serving until Ctrl-C")
    args = parser.parse_args(argv)
    return _demo(args)


if __name__ == "__main__":
    sys.exit(main())
