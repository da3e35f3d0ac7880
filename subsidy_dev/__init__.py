"""Real infrastructure for local runs and integration tests, without Docker.

- :mod:`subsidy_dev.kafka`: a single-node KRaft Apache Kafka broker whose
  jars Maven resolves from Maven Central (``deploy/kafka/pom.xml``); topics
  are created as in production, by :mod:`subsidy.platform.topics`.
- :mod:`subsidy_dev.postgres`: a throw-away PostgreSQL cluster on loopback,
  run from the Debian ``postgresql`` package's binaries.

Both offer a library API (used by ``tests/infrastructure.py``) and a CLI::

    python -m subsidy_dev.kafka {fetch,start,stop,status}
    python -m subsidy_dev.postgres {install,start,stop,status}

Environment variables honoured by the fixtures and the CLIs' ``start``:

- ``KAFKA_BOOTSTRAP_SERVERS``: use that cluster, never start a broker.
- ``SUBSIDY_TEST_DATABASE_URL``: use that PostgreSQL, never start a server.
- ``SUBSIDY_CACHE_DIR``: where the Kafka jars are cached
  (default ``~/.cache/songjiang-subsidy``).

Only the standard library and kafka-python are used here.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

__all__ = ["free_port", "pid_alive", "pid_cmdline", "port_in_use", "project_root", "tail"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def project_root() -> Path:
    """The checkout this package lives in (``subsidy_dev`` -> repo root)."""
    return Path(__file__).resolve().parents[1]


def tail(path: os.PathLike | str, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file, or a note that it is missing."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return f"({p} does not exist)"
    return "\n".join(data.splitlines()[-lines:])


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (FileNotFoundError, IndexError):
        return False
    except OSError:
        return True


def pid_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []
