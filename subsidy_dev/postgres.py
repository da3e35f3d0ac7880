"""A throw-away PostgreSQL server on 127.0.0.1 for tests and local runs.

It runs the binaries of the Debian ``postgresql`` package
(``/usr/lib/postgresql/<major>/bin``) on a cluster of its own, not the
package's ``main`` cluster or its service: ``initdb`` into the data dir,
``pg_ctl start`` on a free port with the unix socket in the data dir, trust
authentication (loopback only), one database (``subsidy`` by default).
PostgreSQL refuses to run as root, so when we are root the server runs as the
``postgres`` system user (created by the package) through ``runuser``.

Library::

    from subsidy_dev.postgres import PostgresServer

    with PostgresServer("var/postgres") as pg:
        url = pg.url        # postgresql://postgres@127.0.0.1:PORT/subsidy
        pg.restart()        # same port, data kept

CLI::

    python -m subsidy_dev.postgres install
    python -m subsidy_dev.postgres start --data-dir var/postgres [--port 5433]
    python -m subsidy_dev.postgres status --data-dir var/postgres [--json]
    python -m subsidy_dev.postgres stop --data-dir var/postgres

Data directory layout: ``postgres.json`` (state: url, port, where the cluster
lives) and ``postgres.pid`` stay in the data dir; the cluster itself
(``pgdata/``, ``run/`` for the socket, ``postgres.log``) lives in
``<data dir>/cluster`` owned by ``postgres``, or, when the ``postgres`` user
cannot reach the data dir (a parent such as ``/root`` or pytest's
``/tmp/pytest-of-root`` is mode 0700), in ``$TMPDIR/songjiang-subsidy-pg-<hash>``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from subsidy_dev import free_port, pid_alive, port_in_use, run_groups, tail

ENV_DATABASE_URL = "SUBSIDY_TEST_DATABASE_URL"
ENV_BINDIR = "SUBSIDY_PG_BINDIR"
PG_USER = "postgres"  # the system user the server runs as when we are root
SUPERUSER = "postgres"  # the database superuser initdb creates
STATE_FILE = "postgres.json"
PID_FILE = "postgres.pid"
DEFAULT_DATABASE = "subsidy"


class PostgresHarnessError(RuntimeError):
    """The harness could not install, start or stop PostgreSQL."""


# --------------------------------------------------------------------------
# Binaries
# --------------------------------------------------------------------------


def _major(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/15/bin/pg_ctl -> (15,)
    with contextlib.suppress(ValueError):
        return tuple(int(x) for x in path.parent.parent.name.split("."))
    return (0,)


def find_bindir() -> Path | None:
    """The directory holding ``initdb``/``pg_ctl``/``postgres``, newest major first."""
    env = os.environ.get(ENV_BINDIR)
    if env:
        return Path(env) if (Path(env) / "pg_ctl").is_file() else None
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=_major, reverse=True)
    for pg_ctl in candidates:
        if (pg_ctl.parent / "initdb").is_file() and (pg_ctl.parent / "postgres").is_file():
            return pg_ctl.parent
    on_path = shutil.which("pg_ctl")
    if on_path and (Path(on_path).parent / "initdb").is_file():
        return Path(on_path).parent
    return None


def install(*, quiet: bool = False) -> Path:
    """Install the Debian ``postgresql`` package unless its server binaries exist.

    Its ``main`` cluster is not wanted (each harness server has its own), so a
    ``createcluster.d`` drop-in tells the package not to create one.
    """
    bindir = find_bindir()
    if bindir is not None:
        return bindir
    if os.geteuid() != 0:
        raise PostgresHarnessError(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin and we are "
            "not root: run `sudo apt-get install -y postgresql` (or set SUBSIDY_PG_BINDIR)"
        )
    apt = shutil.which("apt-get")
    if apt is None:
        raise PostgresHarnessError("PostgreSQL is not installed and apt-get is not available")
    dropin = Path("/etc/postgresql-common/createcluster.d/50-songjiang-subsidy.conf")
    if not dropin.exists():
        dropin.parent.mkdir(parents=True, exist_ok=True)
        dropin.write_text(
            "# subsidy_dev.postgres runs its own clusters; no 'main' cluster.\ncreate_main_cluster = false\n"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    out = None if not quiet else subprocess.DEVNULL
    for cmd in ([apt, "update"], [apt, "install", "-y", "--no-install-recommends", "postgresql"]):
        if not quiet:
            print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        if proc.returncode != 0:
            raise PostgresHarnessError(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    bindir = find_bindir()
    if bindir is None:
        raise PostgresHarnessError("apt-get installed postgresql but no server binaries were found")
    return bindir


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------


def _as_root() -> bool:
    return os.geteuid() == 0


def _pg_ids() -> tuple[int, int]:
    try:
        pw = pwd.getpwnam(PG_USER)
    except KeyError:
        raise PostgresHarnessError(
            f"we are root but there is no '{PG_USER}' system user to run PostgreSQL as "
            "(the Debian postgresql package creates it: run `install`)"
        ) from None
    return pw.pw_uid, pw.pw_gid


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            with contextlib.suppress(FileNotFoundError):
                os.lchown(os.path.join(root, name), uid, gid)


class PostgresServer:
    """A PostgreSQL cluster of its own, on 127.0.0.1, managed in ``data_dir``."""

    def __init__(
        self,
        data_dir: os.PathLike | str,
        *,
        port: int | None = None,
        database: str = DEFAULT_DATABASE,
        startup_timeout: float = 60.0,
        durable: bool = False,
        detached: bool = False,
    ) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", database):
            raise ValueError(f"database name must be a plain identifier: {database!r}")
        self.data_dir = Path(data_dir).resolve()
        self.database = database
        self.startup_timeout = startup_timeout
        #: fsync=off unless durable: a process crash loses nothing (the OS
        #: still has the pages); only a machine crash would. Fine for tests.
        self.durable = durable
        #: Started to outlive this process (`make postgres-start`): not written in
        #: the run-group ledger, so no later run reaps it (subsidy_dev/run_groups.py).
        self.detached = detached
        saved = self._load_state()
        self.port = port or (saved or {}).get("port") or 0
        home = (saved or {}).get("cluster_home")
        self.cluster_home: Path | None = Path(home) if home else None
        self._bindir: Path | None = None

    # -- paths / state -------------------------------------------------------
    @property
    def pgdata(self) -> Path:
        assert self.cluster_home is not None
        return self.cluster_home / "pgdata"

    @property
    def socket_dir(self) -> Path:
        assert self.cluster_home is not None
        return self.cluster_home / "run"

    @property
    def log_file(self) -> Path:
        assert self.cluster_home is not None
        return self.cluster_home / "postgres.log"

    @property
    def url(self) -> str:
        if not self.port:
            raise PostgresHarnessError("server has no port yet: call start()")
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{self.database}"

    def _load_state(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.data_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None

    def _save_state(self, running: bool, pid: int | None = None) -> None:
        (self.data_dir / STATE_FILE).write_text(
            json.dumps(
                {
                    "url": self.url,
                    "port": self.port,
                    "database": self.database,
                    "running": running,
                    "pid": pid,
                    "cluster_home": str(self.cluster_home),
                    "pgdata": str(self.pgdata),
                    "log": str(self.log_file),
                    "bindir": str(self._bindir) if self._bindir else None,
                },
                indent=2,
            )
            + "\n"
        )
        pid_file = self.data_dir / PID_FILE
        if running and pid:
            pid_file.write_text(f"{pid}\n")
        else:
            pid_file.unlink(missing_ok=True)

    # -- running commands ----------------------------------------------------
    def _bin(self, name: str) -> str:
        if self._bindir is None:
            self._bindir = find_bindir()
            if self._bindir is None:
                raise PostgresHarnessError(
                    "PostgreSQL server binaries not found: run "
                    "`python -m subsidy_dev.postgres install` (apt-get install postgresql)"
                )
        return str(self._bindir / name)

    def _run(
        self, args: list[str], *, as_pg: bool = True, check: bool = True, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = (["runuser", "-u", PG_USER, "--"] if as_pg and _as_root() else []) + args
        proc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            cwd="/",
            start_new_session=True,
        )
        if check and proc.returncode != 0:
            raise PostgresHarnessError(
                f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}"
                + (f"\n--- {self.log_file} (tail) ---\n{tail(self.log_file, 30)}" if self.cluster_home else "")
            )
        return proc

    def _reachable_by_pg(self, path: Path) -> bool:
        if not _as_root():
            return True
        return (
            subprocess.run(
                ["runuser", "-u", PG_USER, "--", "test", "-w", str(path), "-a", "-x", str(path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ).returncode
            == 0
        )

    def _prepare_home(self) -> None:
        """Choose and create the directory the cluster lives in (owned by postgres)."""
        if self.cluster_home is not None and (self.pgdata / "PG_VERSION").is_file():
            return
        candidates = [self.data_dir / "cluster"]
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        candidates.append(Path(tempfile.gettempdir()) / f"songjiang-subsidy-pg-{digest}")
        for home in candidates:
            home.mkdir(parents=True, exist_ok=True)
            if _as_root():
                uid, gid = _pg_ids()
                os.chown(home, uid, gid)
                os.chmod(home, 0o700)
            # the socket path must fit in sun_path (107 bytes)
            if len(str(home / "run" / ".s.PGSQL.65535")) > 100:
                continue
            if self._reachable_by_pg(home):
                self.cluster_home = home
                return
            with contextlib.suppress(OSError):
                home.rmdir()  # left empty: not usable
        raise PostgresHarnessError(f"user '{PG_USER}' can reach neither {candidates[0]} nor {candidates[1]}")

    def _initdb(self) -> None:
        if (self.pgdata / "PG_VERSION").is_file():
            return
        self._run(
            [
                self._bin("initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            timeout=120,
        )

    def _write_config(self) -> None:
        conf = self.pgdata / "songjiang-subsidy.conf"
        conf.write_text(
            "\n".join(
                [
                    "# Written by subsidy_dev.postgres at every start.",
                    "listen_addresses = '127.0.0.1'",
                    f"port = {self.port}",
                    f"unix_socket_directories = '{self.socket_dir}'",
                    "max_connections = 100",
                    "shared_buffers = 32MB",
                    f"fsync = {'on' if self.durable else 'off'}",
                    "logging_collector = off",
                    "log_min_messages = warning",
                    "log_line_prefix = '%m [%p] '",
                    "log_checkpoints = off",
                    "",
                ]
            )
        )
        main_conf = self.pgdata / "postgresql.conf"
        include = "include_if_exists = 'songjiang-subsidy.conf'\n"
        text = main_conf.read_text()
        if include not in text:
            main_conf.write_text(text + "\n" + include)
        self.socket_dir.mkdir(exist_ok=True)
        if _as_root():
            uid, gid = _pg_ids()
            for p in (conf, main_conf, self.socket_dir):
                os.chown(p, uid, gid)

    def _postmaster_pid(self) -> int | None:
        if self.cluster_home is None:
            return None
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def is_running(self) -> bool:
        if self.cluster_home is None or not (self.pgdata / "PG_VERSION").is_file():
            return False
        proc = self._run([self._bin("pg_ctl"), "status", "-D", str(self.pgdata)], check=False)
        return proc.returncode == 0

    def status(self) -> dict[str, Any]:
        running = self.is_running()
        return {
            "running": running,
            "pid": self._postmaster_pid() if running else None,
            "url": self.url if self.port else None,
            "pgdata": str(self.pgdata) if self.cluster_home else None,
            "log": str(self.log_file) if self.cluster_home else None,
        }

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> str:
        """Start the server (initdb on first start); return the database URL.

        Installs the Debian package first if the binaries are missing and we
        are root. Returns at once if this data dir's server is already running.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.is_running():
            return self.url
        self._bindir = install()
        self._prepare_home()
        self._initdb()
        if not self.port:
            self.port = free_port()
        if port_in_use(self.port):
            raise PostgresHarnessError(f"port {self.port} on 127.0.0.1 is already in use")
        self._write_config()
        self._run(
            [
                self._bin("pg_ctl"),
                "start",
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                str(int(self.startup_timeout)),
            ],
            timeout=self.startup_timeout + 15,
        )
        postmaster = self._postmaster_pid()
        self._save_state(running=True, pid=postmaster)
        if postmaster and not self.detached:
            # pg_ctl starts the postmaster in a session (process group) of its own.
            run_groups.register(postmaster, f"PostgreSQL in {self.data_dir}")
        self._ensure_database()
        return self.url

    def _psql(self, sql: str, database: str = "postgres") -> str:
        proc = self._run(
            [
                self._bin("psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-tA",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-c",
                sql,
            ],
            as_pg=False,
            timeout=60,
        )
        return proc.stdout.strip()

    def _ensure_database(self) -> None:
        # The name is the harness's own (checked to be an identifier at start), not input.
        exists = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'")  # noqa: S608
        if exists != "1":
            self._psql(f'CREATE DATABASE "{self.database}"')

    def stop(self, timeout: float = 60.0) -> None:
        """``pg_ctl stop -m fast`` (immediate if that does not finish). Data is kept."""
        if self.is_running():
            proc = self._run(
                [self._bin("pg_ctl"), "stop", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", str(int(timeout))],
                check=False,
                timeout=timeout + 15,
            )
            if proc.returncode != 0 and self.is_running():
                self._run(
                    [self._bin("pg_ctl"), "stop", "-D", str(self.pgdata), "-m", "immediate", "-w", "-t", "30"],
                    timeout=45,
                )
        if self.port and self.cluster_home is not None:
            self._save_state(running=False)

    def kill(self) -> None:
        """Crash-stop (``pg_ctl stop -m immediate``: no checkpoint, WAL replay on next start)."""
        if self.is_running():
            self._run(
                [self._bin("pg_ctl"), "stop", "-D", str(self.pgdata), "-m", "immediate", "-w", "-t", "30"], timeout=45
            )
        if self.port and self.cluster_home is not None:
            self._save_state(running=False)

    def restart(self, timeout: float = 60.0) -> str:
        """Stop and start again on the same port with the data kept."""
        self.stop(timeout)
        return self.start()

    def destroy(self) -> None:
        """Stop and delete the cluster (and the temp dir it may live in)."""
        self.stop()
        if self.cluster_home is not None:
            shutil.rmtree(self.cluster_home, ignore_errors=True)
        for name in (STATE_FILE, PID_FILE):
            (self.data_dir / name).unlink(missing_ok=True)

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"PostgresServer({str(self.data_dir)!r}, port={self.port or None})"


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def _cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m subsidy_dev.postgres", description="Local throw-away PostgreSQL for tests and `make run`."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="apt-get install postgresql unless its server binaries exist")
    for name, help_ in (
        ("start", "start a server in DATA_DIR (initdb on first start)"),
        ("stop", "stop the server of DATA_DIR (pg_ctl stop -m fast)"),
        ("status", "is the server of DATA_DIR running? (exit 0 yes, 3 no)"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--data-dir", required=True, type=Path)
        if name == "start":
            p.add_argument("--port", type=int, default=None, help="TCP port (default: kept or free)")
            p.add_argument("--database", default=DEFAULT_DATABASE)
            p.add_argument("--durable", action="store_true", help="fsync=on (default off)")
            p.add_argument("--ignore-env", action="store_true", help=f"start even if {ENV_DATABASE_URL} is set")
        if name == "status":
            p.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    try:
        if args.command == "install":
            print(install())
            return 0
        if args.command == "start":
            external = os.environ.get(ENV_DATABASE_URL)
            if external and not args.ignore_env:
                print(f"{ENV_DATABASE_URL} is set: using that database, not starting a server", file=sys.stderr)
                print(external)
                return 0
            server = PostgresServer(
                args.data_dir, port=args.port, database=args.database, durable=args.durable, detached=True
            )
            was_running = server.is_running()
            started = time.monotonic()
            url = server.start()
            note = "already running" if was_running else f"started in {time.monotonic() - started:.1f}s"
            print(f"PostgreSQL {note}: {url} (log {server.log_file})", file=sys.stderr)
            print(url)
            return 0
        server = PostgresServer(args.data_dir)
        if args.command == "stop":
            was_running = server.is_running()
            server.stop()
            print("stopped" if was_running else "not running", file=sys.stderr)
            return 0
        if args.command == "status":
            st = server.status()
            if args.json:
                print(json.dumps(st, indent=2))
            elif st["running"]:
                print(f"running: {st['url']} (pid {st['pid']})")
            else:
                print("not running")
            return 0 if st["running"] else 3
    except (PostgresHarnessError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(_cli())
