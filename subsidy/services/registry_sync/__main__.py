"""`python -m subsidy.services.registry_sync`: run registry-sync (docs/data-platform.md)."""

import sys

from subsidy.services.registry_sync.bootstrap import main

sys.exit(main())
