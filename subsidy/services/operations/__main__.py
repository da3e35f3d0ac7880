"""`python -m subsidy.services.operations`: run the operations service (docs/operations-service.md)."""

import sys

from subsidy.services.operations.bootstrap import main

sys.exit(main())
