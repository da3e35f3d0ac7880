"""The restore drill, rehearsed on a local PostgreSQL (docs/operations.md#restore-drill).

What CloudNativePG's backups are (a base backup plus the archived WAL, the
barman-cloud plugin's object store) done by hand with PostgreSQL's own tools
on a throw-away cluster, so the procedure and the consistency checks run here:

1. ``start()``: a cluster with WAL archiving on (``archive_command`` copies
   every finished segment to ``archive/``, as barman-cloud-wal-archive does);
2. ``base_backup()``: ``pg_basebackup`` (what a ScheduledBackup takes);
3. ``restore_point(name)``: ``pg_create_restore_point`` and a WAL switch,
   waiting until the segment is archived (the PITR target);
4. ``lose()``: stop immediately (no checkpoint) and delete the data directory;
5. ``restore(name)``: the base backup back in place, ``recovery.signal``,
   ``restore_command`` from the archive and ``recovery_target_name``, start,
   replay, promote (what a CloudNativePG Cluster with ``bootstrap.recovery``
   and ``recoveryTarget`` does).

PostgreSQL refuses to run as root: when we are root the server and its tools
run as the ``postgres`` system user (Debian's package) through ``runuser``.
Binaries: the newest /usr/lib/postgresql/<major>/bin, or ``PG_BINDIR``.
Used by tests/deploy/test_restore_drill.py (``make restore-drill``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PG_USER = "postgres"


def bindir() -> Path:
    env = os.environ.get("PG_BINDIR")
    if env:
        return Path(env)
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_basebackup"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise RuntimeError("no PostgreSQL binaries (apt-get install postgresql, or set PG_BINDIR)")
    return found[-1].parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RestoreDrill:
    def __init__(self, work: Path | None = None, database: str = "subsidy"):
        self.work = Path(work or tempfile.mkdtemp(prefix="subsidy-restore-drill-"))
        self.work.mkdir(parents=True, exist_ok=True)
        os.chmod(self.work, 0o755)  # noqa: S103 - the postgres user must reach it; nothing secret in it
        self.pgdata = self.work / "pgdata"
        self.archive = self.work / "archive"
        self.base = self.work / "base"
        self.socket_dir = self.work / "run"
        self.log = self.work / "postgres.log"
        self.port = free_port()
        self.database = database
        self.bin = bindir()

    # -- helpers -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.url_as(PG_USER)

    def url_as(self, role: str) -> str:
        """The database as ``role`` (trust authentication: no password locally)."""
        return f"postgresql://{role}@127.0.0.1:{self.port}/{self.database}"

    def _as_pg(self, args: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", PG_USER, "--"] if os.geteuid() == 0 else []
        result = subprocess.run(prefix + args, capture_output=True, text=True, timeout=300, **kwargs)  # noqa: S603
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result

    def _own(self, *paths: Path) -> None:
        if os.geteuid() != 0:
            return
        pw = pwd.getpwnam(PG_USER)
        for path in paths:
            for root, dirs, files in os.walk(path):
                os.chown(root, pw.pw_uid, pw.pw_gid)
                for name in dirs + files:
                    with contextlib.suppress(FileNotFoundError):
                        os.lchown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)

    def psql(self, sql: str, database: str | None = None) -> str:
        result = self._as_pg(
            [
                str(self.bin / "psql"),
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-d",
                database or self.database,
                "-c",
                sql,
            ]
        )
        return result.stdout.strip()

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self._as_pg([str(self.bin / "pg_ctl"), "-D", str(self.pgdata), *args], check=check)

    def _start(self) -> None:
        self._pg_ctl("-w", "-t", "120", "-l", str(self.log), "start")

    # -- the drill -----------------------------------------------------------------

    def start(self) -> None:
        for d in (self.archive, self.socket_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._own(self.work)
        self._as_pg([str(self.bin / "initdb"), "-D", str(self.pgdata), "-U", PG_USER, "--auth=trust", "-E", "UTF8"])
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write(
                f"""
listen_addresses = '127.0.0.1'
port = {self.port}
unix_socket_directories = '{self.socket_dir}'
wal_level = replica
archive_mode = on
archive_command = 'test ! -f {self.archive}/%f && cp %p {self.archive}/%f'
max_wal_senders = 4
fsync = on
"""
            )
        self._start()
        self.psql(f"CREATE DATABASE {self.database}", database="postgres")

    def base_backup(self) -> None:
        self._as_pg(
            [
                str(self.bin / "pg_basebackup"),
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                PG_USER,
                "-D",
                str(self.base),
                "-X",
                "stream",
                "--checkpoint=fast",
            ]
        )

    def restore_point(self, name: str) -> str:
        """Create the named restore point; return once its WAL is archived."""
        lsn = self.psql(f"SELECT pg_create_restore_point('{name}')")
        segment = self.psql("SELECT pg_walfile_name(pg_current_wal_lsn())")
        self.psql("SELECT pg_switch_wal()")
        deadline = time.monotonic() + 60
        while not (self.archive / segment).exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"WAL segment {segment} was not archived")
            time.sleep(0.2)
        return lsn

    def lose(self) -> None:
        """The disaster: the server gone without a checkpoint, its data deleted."""
        self._pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(self.pgdata)

    def restore(self, target: str) -> None:
        shutil.copytree(self.base, self.pgdata)
        (self.pgdata / "recovery.signal").touch()
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write(
                f"""
restore_command = 'cp {self.archive}/%f %p'
recovery_target_name = '{target}'
recovery_target_action = 'promote'
archive_mode = off
"""
            )
        self._own(self.pgdata)
        os.chmod(self.pgdata, 0o700)
        self._start()
        deadline = time.monotonic() + 120
        while self.psql("SELECT pg_is_in_recovery()", database="postgres") != "f":
            if time.monotonic() > deadline:
                raise RuntimeError(f"recovery did not finish; see {self.log}")
            time.sleep(0.2)

    def reachable(self) -> bool:
        try:
            self.psql("SELECT 1", database="postgres")
        except RuntimeError:
            return False
        return True

    def stop(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            self._pg_ctl("-m", "fast", "stop", check=False)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.work, ignore_errors=True)
