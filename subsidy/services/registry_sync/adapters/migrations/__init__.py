"""registry-sync's schema history: the Alembic revision scripts ``vNNNN_<slug>.py``
in this folder, applied by ``subsidy migrate --service registry_sync``
(subsidy.platform.migrations). The version is recorded in
``registry_sync_schema_version``.
"""

from pathlib import Path

from subsidy.platform.migrations import History

HISTORY = History(service="registry_sync", directory=Path(__file__).parent)
