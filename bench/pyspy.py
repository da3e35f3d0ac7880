"""Profiles of the services while a benchmark loads them, with py-spy.

    .venv/bin/python bench/run.py --profile intake,eligibility,payout

py-spy samples a running process from outside (no code change, no restart).
With ``--gil`` it keeps only the samples of the thread holding the GIL, so
the shares are shares of the process's Python CPU time, which is what a
service spends on the 2 cores; sleeping threads and blocking calls (fsync,
epoll) drop out. The summary prints each function's own share ("self") and
its share including what it calls ("inclusive"); the raw stacks are kept
beside it for a flame graph (``flamegraph.pl`` reads them).
"""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
from pathlib import Path


def available() -> str | None:
    """Why py-spy cannot run here, or None."""
    if shutil.which("py-spy") is None and not Path(".venv/bin/py-spy").exists():
        return "py-spy is not installed (.venv/bin/pip install py-spy)"
    return None


class Recording:
    """py-spy recording ``pid`` until ``stop()``."""

    def __init__(self, pid: int, out: Path, rate: int = 250):
        self.out = out
        exe = shutil.which("py-spy") or ".venv/bin/py-spy"
        self.process = subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--gil", "--nonblocking", "--format", "raw"]
            + ["--rate", str(rate), "--output", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def stop(self) -> str | None:
        """Stop sampling (py-spy writes its file on SIGINT); an error, or None."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            _, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return "py-spy did not stop"
        if not self.out.exists():
            return (err or b"").decode(errors="replace").strip()[-300:] or "py-spy wrote nothing"
        return None


def summary(raw: Path, top: int = 15) -> list[str]:
    """The ``top`` functions by own samples and by inclusive samples."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return ["    (no samples)"]
    lines = [f"    {total} samples holding the GIL; self:"]
    lines += [f"      {n / total:6.1%}  {frame[:120]}" for frame, n in own.most_common(top)]
    lines.append("    inclusive:")
    lines += [f"      {n / total:6.1%}  {frame[:120]}" for frame, n in inclusive.most_common(top + 10)]
    return lines
