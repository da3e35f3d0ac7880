"""Options of the fault-injection suite (tests/faults/).

    pytest tests/faults                          # the default seeds (CI, a few minutes)
    pytest tests/faults --fault-seeds 7          # replay seed 7 exactly (same schedule)
    pytest tests/faults --fault-seeds 3,8,21     # several seeds
    pytest tests/faults --soak                   # many seeds (SOAK_SEEDS)
    SUBSIDY_FAULT_SEEDS=7 pytest tests/faults    # the same through the environment
    SUBSIDY_FAULT_SOAK=1 pytest tests/faults

``--fault-seeds`` takes a comma-separated list of integers, or ``N`` random..N
ranges written ``a-b`` (``1-20``). The options are read only when pytest is
started with tests/faults on its command line (pytest loads option hooks from
the initial conftest files); the environment variables work in every case.
"""

from __future__ import annotations

import os

import pytest

DEFAULT_SEEDS = (1, 2)
SOAK_SEEDS = tuple(range(100, 120))


def pytest_addoption(parser):
    group = parser.getgroup("faults", "fault injection (tests/faults)")
    group.addoption(
        "--fault-seeds",
        default=None,
        help="seeds of the fault schedule: '7', '3,8,21' or '1-20' (env SUBSIDY_FAULT_SEEDS)",
    )
    group.addoption(
        "--soak",
        action="store_true",
        default=False,
        help="run the soak seeds (many) instead of the default ones (env SUBSIDY_FAULT_SOAK=1)",
    )


def _parse(spec: str) -> list[int]:
    seeds: list[int] = []
    for part in spec.replace(" ", "").split(","):
        if not part:
            continue
        if "-" in part[1:]:
            lo, hi = part.split("-", 1)
            seeds.extend(range(int(lo), int(hi) + 1))
        else:
            seeds.append(int(part))
    return list(dict.fromkeys(seeds))


def fault_seeds(config) -> list[int]:
    try:
        spec = config.getoption("fault_seeds")
        soak = config.getoption("soak")
    except ValueError:  # options not registered (conftest not initial)
        spec, soak = None, False
    spec = spec or os.environ.get("SUBSIDY_FAULT_SEEDS", "").strip() or None
    soak = soak or os.environ.get("SUBSIDY_FAULT_SOAK", "").strip() not in ("", "0", "false", "no")
    if spec:
        return _parse(spec)
    return list(SOAK_SEEDS if soak else DEFAULT_SEEDS)


def pytest_generate_tests(metafunc):
    if "fault_seed" in metafunc.fixturenames:
        seeds = fault_seeds(metafunc.config)
        metafunc.parametrize("fault_seed", seeds, ids=[f"seed{s}" for s in seeds])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """When a seed fails (a promise, or a wait on the way), ask every service
    for its threads' stacks before the stack is torn down: where each waits."""
    outcome = yield
    report = outcome.get_result()
    stack = getattr(item, "funcargs", {}).get("fault_stack")
    if report.when == "call" and report.failed and stack is not None:
        stack.dump_stacks()
        # pytest prints a failure only when the whole run ends: a soak's first
        # failing seed would stay unread for an hour. Its report goes beside
        # the services' logs now, one file per seed, as it happens.
        failures = stack.var / "failures"
        failures.mkdir(exist_ok=True)
        written = failures / f"{item.callspec.id if hasattr(item, 'callspec') else item.name}.txt"
        written.write_text(report.longreprtext, encoding="utf-8")
        from .harness import log

        log(f"the failure of {item.name} is written to {written}")
