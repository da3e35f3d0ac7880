"""Session-wide real infrastructure for the integration and end-to-end tests
(registered for the whole suite by tests/conftest.py, so one broker and one
PostgreSQL serve every test that needs them).

- ``kafka_bootstrap``: a single-node KRaft broker started once per session
  in a temp dir (jars fetched with Maven on first use, then cached), or the
  cluster named by ``KAFKA_BOOTSTRAP_SERVERS`` if that is set.
- ``postgres_url``: a throw-away PostgreSQL server started once per session,
  or ``SUBSIDY_TEST_DATABASE_URL`` if that is set.

Nothing here skips: if the harness cannot start a broker or a server, every
test that needs one errors with the reason (and the tail of its log).
``kafka_broker`` / ``postgres_server`` hand out the harness objects for tests
that restart or crash the infrastructure; they are ``None`` when an external
cluster or database is in use, and ``managed_kafka_broker`` /
``managed_postgres_server`` skip only in that case, where the user chose it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from subsidy_dev.kafka import ENV_BOOTSTRAP, KafkaBroker
from subsidy_dev.postgres import ENV_DATABASE_URL, PostgresServer


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker | None]:
    if os.environ.get(ENV_BOOTSTRAP):
        yield None
        return
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: KafkaBroker | None) -> str:
    """``host:port`` of a running Kafka cluster."""
    return os.environ.get(ENV_BOOTSTRAP) or kafka_broker.bootstrap  # type: ignore[union-attr]


@pytest.fixture(scope="session")
def managed_kafka_broker(kafka_broker: KafkaBroker | None) -> KafkaBroker:
    """The harness's own broker, for tests that restart or crash it."""
    if kafka_broker is None:
        pytest.skip(f"{ENV_BOOTSTRAP} names an external cluster; the harness cannot restart it")
    return kafka_broker


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer | None]:
    if os.environ.get(ENV_DATABASE_URL):
        yield None
        return
    # When we are root the server runs as 'postgres', which cannot enter
    # pytest's 0700 /tmp/pytest-of-root: PostgresServer then keeps the
    # cluster in a postgres-owned dir under $TMPDIR, which destroy() removes.
    server = PostgresServer(tmp_path_factory.mktemp("postgres"))
    server.start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer | None) -> str:
    """``postgresql://...`` URL of a database the tests may use freely."""
    return os.environ.get(ENV_DATABASE_URL) or postgres_server.url  # type: ignore[union-attr]


@pytest.fixture(scope="session")
def managed_postgres_server(postgres_server: PostgresServer | None) -> PostgresServer:
    """The harness's own server, for tests that restart or crash it."""
    if postgres_server is None:
        pytest.skip(f"{ENV_DATABASE_URL} names an external database; the harness cannot restart it")
    return postgres_server
