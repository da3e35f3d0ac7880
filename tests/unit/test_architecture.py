"""The walls between the layers (docs/architecture.md, ADR 0002) hold, and
they are real walls: import-linter, run on a copy of the code with one
forbidden import added, fails and names the contract that import breaks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", "pyproject.toml"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packages and the contracts, without the generated code's absence
    mattering: subsidy/v1 is copied as it is (make test generates it first)."""
    root = tmp_path_factory.mktemp("walls")
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    for package in ("subsidy", "subsidy_dev"):
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_the_tree_keeps_every_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    "module,forbidden_import,contract",
    [
        (
            "subsidy/core/money.py",
            "import subsidy.platform.db",
            "Layers: cli > services > platform > contracts > generated v1 > core",
        ),
        (
            "subsidy/platform/logs.py",
            "import subsidy.services.payout.handlers",
            "Layers: cli > services > platform > contracts > generated v1 > core",
        ),
        ("subsidy/services/notify/model.py", "import subsidy.services.intake.model", "No service imports another"),
        (
            "subsidy/platform/db.py",
            "import subsidy_dev.postgres",
            "The runtime package never imports the developer tooling",
        ),
        (
            "subsidy/core/money.py",
            "import sqlite3",
            "The core knows nothing of Kafka, gRPC, protobuf, SQL, HTTP or metrics",
        ),
    ],
    ids=[
        "core-imports-platform",
        "platform-imports-a-service",
        "service-imports-service",
        "runtime-imports-dev-tooling",
        "core-imports-sql",
    ],
)
def test_a_forbidden_import_breaks_its_contract(copy: Path, module: str, forbidden_import: str, contract: str):
    path = copy / module
    original = path.read_text(encoding="utf-8")
    path.write_text(original + f"\n{forbidden_import}  # added by the test\n", encoding="utf-8")
    try:
        result = lint_imports(copy)
    finally:
        path.write_text(original, encoding="utf-8")
    assert result.returncode != 0, result.stdout
    assert f"{contract} BROKEN" in result.stdout, result.stdout
