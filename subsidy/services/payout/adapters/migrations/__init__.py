"""payout's schema history: the Alembic revision scripts ``vNNNN_<slug>.py`` in
this folder, applied by ``subsidy migrate --service payout`` (subsidy.platform.migrations;
docs/operations.md#schema-migrations). They live with payout because payout owns its
tables: a schema change ships in the same package as the store code that
needs it, and no other service can import it (import-linter). The version is
recorded in payout's own table, ``payout_schema_version``.
"""

from pathlib import Path

from subsidy.platform.migrations import History

HISTORY = History(service="payout", directory=Path(__file__).parent)
