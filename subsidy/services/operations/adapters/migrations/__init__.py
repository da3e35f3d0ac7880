"""operations' schema history: the Alembic revision scripts ``vNNNN_<slug>.py``
in this folder, applied by ``subsidy migrate --service operations``
(subsidy.platform.migrations). The version is recorded in
``operations_schema_version``.
"""

from pathlib import Path

from subsidy.platform.migrations import History

HISTORY = History(service="operations", directory=Path(__file__).parent)
