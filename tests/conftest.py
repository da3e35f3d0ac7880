import sys
from pathlib import Path

# tests/strategies.py and tests/infrastructure.py are imported as plain modules.
sys.path.insert(0, str(Path(__file__).parent))

# Real Kafka and PostgreSQL, started lazily once per session (see the module).
from infrastructure import (  # noqa: E402,F401
    kafka_bootstrap,
    kafka_broker,
    managed_kafka_broker,
    managed_postgres_server,
    postgres_server,
    postgres_url,
)
