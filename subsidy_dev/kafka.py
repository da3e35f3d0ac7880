"""A single-node Apache Kafka broker (KRaft, broker + controller) without Docker.

Maven resolves ``org.apache.kafka:kafka_2.13`` and its runtime dependencies
from Maven Central (``deploy/kafka/pom.xml``) into a cache directory; the
broker then runs as ``java -cp 'libs/*' kafka.Kafka server.properties`` on
127.0.0.1 only, the same main class ``bin/kafka-server-start.sh`` uses.

Library::

    from subsidy_dev.kafka import KafkaBroker
    from subsidy.platform.topics import ensure_topics
    from subsidy.contracts.topics import TopicSpec

    with KafkaBroker("var/kafka") as broker:      # fetches jars if needed
        ensure_topics(broker.bootstrap, [TopicSpec("subsidy.applications", 3)])
        broker.restart()                          # same ports, data kept

CLI::

    python -m subsidy_dev.kafka fetch
    python -m subsidy_dev.kafka start --data-dir var/kafka [--port 9092]
    python -m subsidy_dev.kafka status --data-dir var/kafka [--json]
    python -m subsidy_dev.kafka stop --data-dir var/kafka

Data directory layout: ``config/`` (server.properties, log4j2.yaml),
``kraft/`` (the log dir: topics and the metadata log), ``logs/`` (server.log,
kafka.out = the JVM's stdout/stderr), ``kafka.pid`` and ``kafka.json`` (state:
bootstrap address, ports, cluster id, version).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from subsidy.platform.security import kafka as kafka_security
from subsidy_dev import free_port, pid_alive, pid_cmdline, port_in_use, project_root, run_groups, tail

log = logging.getLogger(__name__)

#: 4.0.x is the line faust-streaming's CI runs against with aiokafka 0.14.
DEFAULT_KAFKA_VERSION = "4.0.2"
DEFAULT_HEAP = "512m"
NODE_ID = 1

ENV_BOOTSTRAP = "KAFKA_BOOTSTRAP_SERVERS"
ENV_CACHE_DIR = "SUBSIDY_CACHE_DIR"
ENV_DEPLOY_DIR = "SUBSIDY_KAFKA_DEPLOY_DIR"  # where pom.xml and log4j2.yaml live
ENV_VERSION = "SUBSIDY_KAFKA_VERSION"

MARKER = ".complete"
STATE_FILE = "kafka.json"
PID_FILE = "kafka.pid"


class KafkaHarnessError(RuntimeError):
    """The harness could not fetch, start or stop the broker."""


# --------------------------------------------------------------------------
# Fetching the jars
# --------------------------------------------------------------------------


def default_version() -> str:
    return os.environ.get(ENV_VERSION) or DEFAULT_KAFKA_VERSION


def cache_root() -> Path:
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser().resolve()
    return Path.home() / ".cache" / "songjiang-subsidy"


def deploy_dir() -> Path:
    env = os.environ.get(ENV_DEPLOY_DIR)
    return Path(env).expanduser().resolve() if env else project_root() / "deploy" / "kafka"


def libs_dir(version: str | None = None) -> Path:
    return cache_root() / f"kafka-{version or default_version()}" / "libs"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cached_ok(libs: Path, version: str, pom_hash: str | None) -> bool:
    marker = libs.parent / MARKER
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    if info.get("version") != version:
        return False
    if pom_hash is not None and info.get("pom_sha256") != pom_hash:
        return False
    return (libs / f"kafka_2.13-{version}.jar").is_file()


def fetch(version: str | None = None, *, force: bool = False, quiet: bool = False) -> Path:
    """Resolve the broker's jars into the cache; return the ``libs`` directory.

    Idempotent: when the marker file says a previous fetch of the same version
    with the same pom completed, Maven is not run at all.
    """
    version = version or default_version()
    libs = libs_dir(version)
    pom = deploy_dir() / "pom.xml"
    pom_hash = _sha256(pom) if pom.is_file() else None
    if not force and _cached_ok(libs, version, pom_hash):
        return libs
    if pom_hash is None:
        raise KafkaHarnessError(
            f"{pom} not found and no complete cache at {libs}; run from the project checkout or set {ENV_DEPLOY_DIR}"
        )
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaHarnessError("Maven (mvn) is not on PATH: apt-get install -y maven")

    home = libs.parent
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent fetch waits, then finds the cache
        if not force and _cached_ok(libs, version, pom_hash):
            return libs
        tmp = home / "libs.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        (home / MARKER).unlink(missing_ok=True)
        if not quiet:
            print(
                f"Resolving Apache Kafka {version} jars from Maven Central into {libs} "
                "(the first time takes a minute or two)...",
                file=sys.stderr,
                flush=True,
            )
        cmd = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(pom),
            f"-Dkafka.version={version}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={tmp}",
        ]
        started = time.monotonic()
        for attempt in (1, 2):  # one retry: a dropped download is not worth failing CI for
            proc = subprocess.run(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
            )
            if proc.returncode == 0:
                break
            if attempt == 1 and not quiet:
                print("Maven failed; retrying once...", file=sys.stderr, flush=True)
        if proc.returncode != 0:
            raise KafkaHarnessError(
                f"Maven failed ({proc.returncode}) resolving Kafka {version}: {' '.join(cmd)}\n"
                + "\n".join(proc.stdout.splitlines()[-40:])
            )
        if not (tmp / f"kafka_2.13-{version}.jar").is_file():
            raise KafkaHarnessError(f"Maven finished but {tmp} has no kafka_2.13-{version}.jar")
        shutil.rmtree(libs, ignore_errors=True)
        tmp.rename(libs)
        jars = sorted(p.name for p in libs.glob("*.jar"))
        (home / MARKER).write_text(
            json.dumps(
                {
                    "version": version,
                    "pom_sha256": pom_hash,
                    "jars": jars,
                    "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "seconds": round(time.monotonic() - started, 1),
                },
                indent=2,
            )
        )
    return libs


# --------------------------------------------------------------------------
# The broker
# --------------------------------------------------------------------------


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise KafkaHarnessError(
            "java is not on PATH: Kafka 4.x needs Java 17+ (apt-get install -y openjdk-17-jre-headless)"
        )
    return java


def _random_cluster_id() -> str:
    # Kafka's Uuid.randomUuid() in its base64url form, never starting with '-'.
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _api_versions_ok(host: str, port: int, timeout: float = 1.0) -> bool:
    """Send ApiVersions v0 and check the broker answers with error_code 0."""
    client_id = b"subsidy-devenv-probe"
    body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(struct.pack(">i", len(body)) + body)
            head = b""
            while len(head) < 10:
                chunk = s.recv(10 - len(head))
                if not chunk:
                    return False
                head += chunk
    except OSError:
        return False
    _size, correlation_id, error_code = struct.unpack(">iih", head)
    return correlation_id == 1 and error_code == 0


@dataclasses.dataclass
class _State:
    port: int
    controller_port: int
    cluster_id: str
    version: str
    pid: int | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


class KafkaBroker:
    """A single-node KRaft broker + controller on 127.0.0.1 in ``data_dir``.

    Ports are chosen once (free ports, unless given) and kept in the state
    file, so :meth:`restart` and a later ``start`` on the same data dir serve
    the same bootstrap address with the data kept.
    """

    def __init__(
        self,
        data_dir: os.PathLike | str,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        version: str | None = None,
        heap: str = DEFAULT_HEAP,
        startup_timeout: float = 120.0,
        extra_properties: Mapping[str, Any] | None = None,
        detached: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        #: Started to outlive this process (`make kafka-start`): not written in
        #: the run-group ledger, so no later run reaps it (subsidy_dev/run_groups.py).
        self.detached = detached
        self.heap = heap
        self.startup_timeout = startup_timeout
        self.extra_properties = dict(extra_properties or {})
        self._proc: subprocess.Popen | None = None
        saved = self._load_state()
        self._state = _State(
            port=port or (saved.port if saved else 0),
            controller_port=controller_port or (saved.controller_port if saved else 0),
            cluster_id=saved.cluster_id if saved else _random_cluster_id(),
            version=version or (saved.version if saved else default_version()),
            pid=saved.pid if saved else None,
        )

    # -- paths ------------------------------------------------------------
    @property
    def config_dir(self) -> Path:
        return self.data_dir / "config"

    @property
    def log_dir(self) -> Path:
        """Broker logs (server.log, kafka.out), not the topic data."""
        return self.data_dir / "logs"

    @property
    def kraft_dir(self) -> Path:
        """``log.dirs``: topic partitions and the KRaft metadata log."""
        return self.data_dir / "kraft"

    @property
    def properties_file(self) -> Path:
        return self.config_dir / "server.properties"

    @property
    def bootstrap(self) -> str:
        if not self._state.port:
            raise KafkaHarnessError("broker has no port yet: call start()")
        return self._state.bootstrap

    @property
    def version(self) -> str:
        return self._state.version

    # -- state ------------------------------------------------------------
    def _load_state(self) -> _State | None:
        try:
            raw = json.loads((self.data_dir / STATE_FILE).read_text())
            return _State(
                port=int(raw["port"]),
                controller_port=int(raw["controller_port"]),
                cluster_id=raw["cluster_id"],
                version=raw["version"],
                pid=raw.get("pid"),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _save_state(self, running: bool) -> None:
        st = self._state
        (self.data_dir / STATE_FILE).write_text(
            json.dumps(
                {
                    "bootstrap": st.bootstrap,
                    "port": st.port,
                    "controller_port": st.controller_port,
                    "cluster_id": st.cluster_id,
                    "version": st.version,
                    "pid": st.pid if running else None,
                    "running": running,
                    "data_dir": str(self.data_dir),
                    "server_log": str(self.log_dir / "server.log"),
                },
                indent=2,
            )
            + "\n"
        )
        pid_file = self.data_dir / PID_FILE
        if running and st.pid:
            pid_file.write_text(f"{st.pid}\n")
        else:
            pid_file.unlink(missing_ok=True)

    def _our_pid(self) -> int | None:
        """The broker's pid if it is alive and really is this data dir's broker."""
        try:
            pid = int((self.data_dir / PID_FILE).read_text().strip())
        except (OSError, ValueError):
            pid = self._state.pid
        if not pid or not pid_alive(pid):
            return None
        cmd = pid_cmdline(pid)
        if "kafka.Kafka" not in cmd or str(self.properties_file) not in cmd:
            return None  # the pid was reused by something else
        return pid

    def is_running(self) -> bool:
        return self._our_pid() is not None

    def status(self) -> dict[str, Any]:
        pid = self._our_pid()
        return {
            "running": pid is not None,
            "pid": pid,
            "bootstrap": self._state.bootstrap if self._state.port else None,
            "version": self._state.version,
            "data_dir": str(self.data_dir),
            "server_log": str(self.log_dir / "server.log"),
        }

    # -- config -------------------------------------------------------------
    def _properties(self) -> dict[str, Any]:
        st = self._state
        props: dict[str, Any] = {
            "process.roles": "broker,controller",
            "node.id": NODE_ID,
            "controller.quorum.voters": f"{NODE_ID}@127.0.0.1:{st.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{st.port},CONTROLLER://127.0.0.1:{st.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{st.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.kraft_dir),
            # One node: every internal topic has replication factor 1.
            "default.replication.factor": 1,
            "min.insync.replicas": 1,
            "offsets.topic.replication.factor": 1,
            "offsets.topic.num.partitions": 10,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "transaction.state.log.num.partitions": 10,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            # Tests: no waiting for more members, topics only on purpose.
            "group.initial.rebalance.delay.ms": 0,
            # Kafka 4.0 (before KAFKA-19130, fixed in 4.1) makes a restarted
            # single-node combined server wait for the previous broker
            # session to expire before the broker may re-register: 9 s by
            # default. A short session keeps restart() quick; heartbeats go
            # to the controller in the same JVM, so they are not late.
            "broker.heartbeat.interval.ms": 500,
            "broker.session.timeout.ms": 3000,
            "auto.create.topics.enable": "false",
            "num.partitions": 3,
            # Small footprint on 2 cores.
            "num.network.threads": 2,
            "num.io.threads": 4,
            "num.recovery.threads.per.data.dir": 1,
            "background.threads": 4,
            "log.segment.bytes": 16 * 1024 * 1024,
            "log.retention.hours": 168,
            "log.retention.check.interval.ms": 300000,
            "log.cleaner.dedupe.buffer.size": 8 * 1024 * 1024,
            "log.cleaner.threads": 1,
        }
        props.update(self.extra_properties)
        return props

    def _write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        lines = ["# Written by subsidy_dev.kafka; regenerated at every start.\n"]
        lines += [f"{k}={v}\n" for k, v in self._properties().items()]
        self.properties_file.write_text("".join(lines))
        src = deploy_dir() / "log4j2.yaml"
        if src.is_file():
            shutil.copyfile(src, self.config_dir / "log4j2.yaml")
        elif not (self.config_dir / "log4j2.yaml").is_file():
            raise KafkaHarnessError(f"{src} not found; set {ENV_DEPLOY_DIR}")

    def _java_cmd(self, libs: Path, main: str, *args: str, heap: str | None = None) -> list[str]:
        cmd = [_java()]
        if heap:
            cmd += [
                f"-Xms{_initial_heap(heap)}",
                f"-Xmx{heap}",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-XX:InitiatingHeapOccupancyPercent=35",
                "-XX:+ExplicitGCInvokesConcurrent",
                "-XX:+ExitOnOutOfMemoryError",
            ]
        else:
            cmd += ["-Xmx128m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
        cmd += [
            "-XX:-UsePerfData",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.config_dir / 'log4j2.yaml'}",
            f"-Dkafka.logs.dir={self.log_dir}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]
        return cmd

    def _format_storage(self, libs: Path) -> None:
        if (self.kraft_dir / "meta.properties").is_file():
            return  # formatted before: keep the data
        self.kraft_dir.mkdir(parents=True, exist_ok=True)
        cmd = self._java_cmd(
            libs,
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            self._state.cluster_id,
            "--config",
            str(self.properties_file),
            "--ignore-formatted",
        )
        proc = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
        )
        if proc.returncode != 0:
            raise KafkaHarnessError(f"formatting {self.kraft_dir} failed ({proc.returncode}):\n" + proc.stdout[-4000:])

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> str:
        """Start the broker (fetching jars first if needed); return the bootstrap address.

        Returns at once if this data dir's broker is already running.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._our_pid() is not None:
            return self.bootstrap
        libs = fetch(self._state.version)
        st = self._state
        if not st.port:
            st.port = free_port()
        if not st.controller_port:
            st.controller_port = free_port()
            while st.controller_port == st.port:
                st.controller_port = free_port()
        for p in (st.port, st.controller_port):
            if port_in_use(p):
                raise KafkaHarnessError(
                    f"port {p} on 127.0.0.1 is already in use; stop whatever holds it "
                    f"or start with another --port / a fresh data dir"
                )
        self._write_config()
        self._format_storage(libs)

        out = open(self.log_dir / "kafka.out", "ab")
        try:
            self._proc = subprocess.Popen(
                self._java_cmd(libs, "kafka.Kafka", str(self.properties_file), heap=self.heap),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
            )
        finally:
            out.close()
        st.pid = self._proc.pid
        if not self.detached:
            run_groups.register(self._proc.pid, f"Kafka broker in {self.data_dir}")
        self._save_state(running=True)
        try:
            self._wait_ready()
        except BaseException:
            self._terminate(self._proc.pid, timeout=10)
            self._save_state(running=False)
            raise
        return self.bootstrap

    def _failure(self, why: str) -> KafkaHarnessError:
        return KafkaHarnessError(
            f"Kafka broker in {self.data_dir} {why}.\n"
            f"--- {self.log_dir / 'kafka.out'} (tail) ---\n{tail(self.log_dir / 'kafka.out', 30)}\n"
            f"--- {self.log_dir / 'server.log'} (tail) ---\n{tail(self.log_dir / 'server.log', 30)}"
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        answered = False
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise self._failure(f"exited with code {self._proc.returncode} while starting")
            if not answered:
                answered = _api_versions_ok("127.0.0.1", self._state.port)
            if answered:
                try:
                    if self._broker_unfenced():
                        return
                except Exception as exc:  # noqa: BLE001 - retried until the deadline
                    last_error = exc
            time.sleep(0.2)
        raise self._failure(
            f"did not become ready within {self.startup_timeout:.0f}s"
            + (f" (last error: {last_error!r})" if last_error else "")
        )

    def _broker_unfenced(self) -> bool:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id="subsidy-devenv",
            bootstrap_timeout_ms=5000,
            request_timeout_ms=5000,
            **kafka_security.client_config(),
        )
        try:
            cluster = admin.describe_cluster()
        finally:
            admin.close()
        return any(b["broker_id"] == NODE_ID and not b.get("is_fenced") for b in cluster.get("brokers", []))

    def _terminate(self, pid: int, timeout: float) -> None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not self._wait_gone(pid, timeout):
            log.warning("Kafka broker %s did not stop in %.0fs; killing it", pid, timeout)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if not self._wait_gone(pid, 15):
                raise KafkaHarnessError(f"Kafka broker pid {pid} survived SIGKILL")

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return True
            time.sleep(0.1)
        return not pid_alive(pid)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the broker cleanly (SIGTERM; SIGKILL after ``timeout`` s). Data is kept."""
        pid = self._our_pid()
        if pid is not None:
            self._terminate(pid, timeout)
        self._proc = None
        if self._state.port:
            self._save_state(running=False)

    def kill(self) -> None:
        """Crash the broker (SIGKILL, no clean shutdown), for fault tests."""
        pid = self._our_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            self._wait_gone(pid, 15)
        self._proc = None
        if self._state.port:
            self._save_state(running=False)

    def restart(self, timeout: float = 30.0) -> str:
        """Stop and start again on the same ports with the data kept."""
        self.stop(timeout)
        return self.start()

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"KafkaBroker({str(self.data_dir)!r}, port={self._state.port or None})"


def _initial_heap(heap: str) -> str:
    """64m, or ``heap`` if that is smaller: the JVM grows towards -Xmx only as needed."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    h = heap.strip().lower()
    try:
        size = int(h[:-1]) * units[h[-1]] if h[-1] in units else int(h)
    except ValueError:
        return heap
    return heap if size < 64 << 20 else "64m"


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def _cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m subsidy_dev.kafka", description="Local single-node Kafka (KRaft) for tests and `make run`."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_fetch = sub.add_parser("fetch", help="resolve the broker jars into the cache (idempotent)")
    p_fetch.add_argument("--version", default=None, help=f"Kafka version (default {DEFAULT_KAFKA_VERSION})")
    p_fetch.add_argument("--force", action="store_true", help="re-run Maven even if cached")
    for name, help_ in (
        ("start", "start a broker in DATA_DIR (formats storage on first start)"),
        ("stop", "stop the broker of DATA_DIR (SIGTERM, SIGKILL after a timeout)"),
        ("status", "is the broker of DATA_DIR running? (exit 0 yes, 3 no)"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--data-dir", required=True, type=Path)
        if name == "start":
            p.add_argument("--port", type=int, default=None, help="PLAINTEXT port (default: kept or free)")
            p.add_argument("--controller-port", type=int, default=None)
            p.add_argument("--version", default=None)
            p.add_argument("--heap", default=DEFAULT_HEAP)
            p.add_argument("--timeout", type=float, default=120.0, help="startup timeout, seconds")
            p.add_argument("--ignore-env", action="store_true", help=f"start even if {ENV_BOOTSTRAP} is set")
        if name == "stop":
            p.add_argument("--timeout", type=float, default=30.0, help="seconds before SIGKILL")
        if name == "status":
            p.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    try:
        if args.command == "fetch":
            started = time.monotonic()
            libs = fetch(args.version, force=args.force)
            print(f"{libs} ({len(list(libs.glob('*.jar')))} jars, {time.monotonic() - started:.1f}s)")
            return 0
        if args.command == "start":
            external = os.environ.get(ENV_BOOTSTRAP)
            if external and not args.ignore_env:
                print(f"{ENV_BOOTSTRAP}={external} is set: using that cluster, not starting a broker", file=sys.stderr)
                print(external)
                return 0
            broker = KafkaBroker(
                args.data_dir,
                port=args.port,
                controller_port=args.controller_port,
                version=args.version,
                heap=args.heap,
                startup_timeout=args.timeout,
                detached=True,
            )
            was_running = broker.is_running()
            started = time.monotonic()
            bootstrap = broker.start()
            note = "already running" if was_running else f"started in {time.monotonic() - started:.1f}s"
            print(
                f"Kafka {broker.version} {note}: {bootstrap} (pid {broker.status()['pid']}, logs {broker.log_dir})",
                file=sys.stderr,
            )
            print(bootstrap)
            return 0
        broker = KafkaBroker(args.data_dir)
        if args.command == "stop":
            was_running = broker.is_running()
            broker.stop(args.timeout)
            print("stopped" if was_running else "not running", file=sys.stderr)
            return 0
        if args.command == "status":
            st = broker.status()
            if args.json:
                print(json.dumps(st, indent=2))
            elif st["running"]:
                print(f"running: {st['bootstrap']} (pid {st['pid']}, Kafka {st['version']})")
            else:
                print("not running")
            return 0 if st["running"] else 3
    except KafkaHarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(_cli())
