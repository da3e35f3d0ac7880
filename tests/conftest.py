import signal
import sys
from pathlib import Path

import pytest

# tests/strategies.py and tests/infrastructure.py are imported as plain modules.
sys.path.insert(0, str(Path(__file__).parent))

# Real Kafka and PostgreSQL, started lazily once per session (see the module).
from infrastructure import (  # noqa: F401
    kafka_bootstrap,
    kafka_broker,
    managed_kafka_broker,
    managed_postgres_server,
    postgres_server,
    postgres_url,
)

# The pure layers need no broker or database: two minutes are generous (the scratch
# clause test copies the tree and regenerates code in ~10 s),
# and a hang there is a bug to see at once. The rest keep pyproject's limit.
PURE_LAYERS = ("unit", "property", "test_policy_cases.py")
PURE_LAYER_TIMEOUT_S = 120


def pytest_collection_modifyitems(items):
    tests_dir = Path(__file__).parent
    for item in items:
        layer = Path(item.fspath).relative_to(tests_dir).parts[0]
        if layer in PURE_LAYERS and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(PURE_LAYER_TIMEOUT_S))


def pytest_sessionstart(session):
    """What an interrupted run left behind (a broker, a database, services, a
    proxy: subsidy_dev/run_groups.py) ends before this run starts its own."""
    from subsidy_dev import run_groups

    for group, pids in run_groups.reap_orphans():
        print(f"ended {group.what}, left behind by an interrupted run ({len(pids)} processes)", file=sys.stderr)


def _interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config):
    # SIGTERM (a CI job cancelled, `timeout`) stops the run as Ctrl-C does, so
    # the fixtures' teardown stops every broker, database and service it started.
    signal.signal(signal.SIGTERM, _interrupted)
