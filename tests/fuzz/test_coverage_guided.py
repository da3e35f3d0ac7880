"""The coverage-guided fuzzer (Atheris, libFuzzer) over every decoder and
every gRPC request (tests/fuzz/targets.py), each target in its own process.

    make test       a few seconds per target (SUBSIDY_FUZZ_SECONDS, default 3)
    make fuzz       longer (FUZZ_SECONDS, default 120 per target)

Each run starts from the target's valid seeds and the inputs that once
crashed it (tests/fuzz/corpus/<target>/, replayed first: a regression fails
at once). A crash fails the test with libFuzzer's report and leaves the
input under the run's temporary directory; copy it into
tests/fuzz/corpus/<target>/ with the fix.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

ROOT = Path(__file__).resolve().parents[2]
REGRESSIONS = Path(__file__).resolve().parent / "corpus"
SECONDS = int(os.environ.get("SUBSIDY_FUZZ_SECONDS", "3"))

pytest.importorskip("atheris", reason="atheris is a test dependency (pyproject.toml, [test])")


@pytest.mark.timeout(SECONDS * 4 + 240)
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_no_input_crashes_the_target(name, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(TARGETS[name].seeds()):
        (corpus / f"seed-{i}").write_bytes(seed)
    regressions = REGRESSIONS / name
    dirs = [str(corpus)] + ([str(regressions)] if regressions.is_dir() else [])
    command = [
        sys.executable,
        str(ROOT / "tests" / "fuzz" / "atheris_main.py"),
        name,
        f"-max_total_time={SECONDS}",
        "-timeout=20",  # one input taking longer is a hang: a crash
        "-rss_limit_mb=3072",
        "-max_len=65536",
        f"-artifact_prefix={tmp_path}/",
        "-print_final_stats=1",
        *dirs,
    ]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=SECONDS * 4 + 200, check=False)
    crashes = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-")))
    report = run.stderr[-6000:]
    assert run.returncode == 0 and not crashes, f"{name}: {crashes} (in {tmp_path})\n{report}"
    # It really ran: libFuzzer's final statistics name the executions.
    assert "stat::number_of_executed_units" in run.stderr, report
    executed = int(run.stderr.split("stat::number_of_executed_units:")[1].split()[0])
    assert executed > len(TARGETS[name].seeds()), f"{name}: only {executed} inputs executed\n{report}"
