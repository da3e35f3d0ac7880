"""deploy/image/requirements.lock (the image's dependencies, locked with
hashes) against pyproject.toml: every runtime dependency is locked at the
version pyproject pins, nothing build-only (grpcio-tools) is, and every line
carries a sha256. Fast, offline: the image itself is tested by
tests/deploy/test_image.py (`make image-smoke`). When this fails after a
dependency change: `make image-lock`."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "deploy" / "image" / "requirements.lock"
BUILD_ONLY = {"grpcio-tools"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, str]:
    entries = {}
    for line in LOCK.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-z0-9-]+)==(\S+) --hash=sha256:([0-9a-f]{64})", line)
        assert match, f"not a hashed pin: {line}"
        entries[match.group(1)] = match.group(2)
    return entries


def test_every_runtime_dependency_is_locked_at_its_pinned_version():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lock = locked()
    for dep in deps:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==(\S+)", dep.replace(" ", ""))
        assert match, f"pyproject pins exactly: {dep}"
        name, version = canonical(match.group(1)), match.group(3)
        if name in BUILD_ONLY:
            assert name not in lock, f"{name} is for the build, not the image"
            continue
        assert lock.get(name) == version, f"{name}=={version} is not in the lock (make image-lock)"


def test_the_lock_has_no_build_tools():
    assert not {"grpcio-tools", "pip", "setuptools", "wheel", "cython"} & set(locked())
