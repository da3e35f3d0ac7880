"""review's schema history: the Alembic revision scripts ``vNNNN_<slug>.py`` in
this folder, applied by ``subsidy migrate --service review`` (subsidy.platform.migrations;
docs/operations.md#schema-migrations). The version is recorded in review's own
table, ``review_schema_version``.
"""

from pathlib import Path

from subsidy.platform.migrations import History

HISTORY = History(service="review", directory=Path(__file__).parent)
