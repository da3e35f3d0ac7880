"""Command-line tools the operations tests need, installed on first use.

- ``promtool`` (lints metrics and alert rules) from Debian's ``prometheus``
  package;
- ``kustomize`` (renders deploy/k8s) built with ``go install`` from the Go
  module proxy, cached under ``$SUBSIDY_CACHE_DIR`` (default
  ``~/.cache/songjiang-subsidy``).

    python -m subsidy_dev.tools {promtool,kustomize}   # print the path, installing if needed
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"
KUSTOMIZE_VERSION = "v5.7.1"


class ToolUnavailable(RuntimeError):
    pass


def _cache() -> Path:
    return Path(os.environ.get("SUBSIDY_CACHE_DIR") or Path.home() / ".cache" / "songjiang-subsidy")


def _apt_install(package: str) -> None:
    if os.geteuid() != 0:
        raise ToolUnavailable(f"install Debian's {package} package (needs root): apt-get install {package}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", package],
    ):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            raise ToolUnavailable(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")


def promtool() -> Path:
    found = shutil.which("promtool")
    if not found:
        _apt_install("prometheus")
        found = shutil.which("promtool")
    if not found:
        raise ToolUnavailable("promtool not found after installing Debian's prometheus package")
    return Path(found)


def go_tool(name: str, module: str, version: str, binary: str | None = None) -> Path:
    """A Go command built with ``go install <module>@<version>`` on first use,
    cached under ``<cache>/tools/<name>-<version>/`` (kustomize here;
    kubeconform for tests/ops; Toxiproxy for the fault suite)."""
    target_dir = _cache() / "tools" / f"{name}-{version}"
    found = target_dir / (binary or name)
    if found.exists():
        return found
    go = shutil.which("go")
    if not go:
        raise ToolUnavailable(f"{name} is built with Go (go install); no `go` on PATH")
    target_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOBIN": str(target_dir), "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    result = subprocess.run(
        [go, "install", f"{module}@{version}"], env=env, capture_output=True, text=True, timeout=1200
    )
    if result.returncode != 0 or not found.exists():
        raise ToolUnavailable(f"go install {module}@{version} failed:\n{result.stderr[-3000:]}")
    return found


def kustomize() -> Path:
    return go_tool("kustomize", KUSTOMIZE_MODULE, KUSTOMIZE_VERSION)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    tools = {"promtool": promtool, "kustomize": kustomize}
    if len(argv) != 1 or argv[0] not in tools:
        print(f"usage: python -m subsidy_dev.tools {{{','.join(tools)}}}", file=sys.stderr)
        return 2
    try:
        print(tools[argv[0]]())
    except ToolUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
