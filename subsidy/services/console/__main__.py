"""`python -m subsidy.services.console`: run the staff console (see docs/console.md)."""

import sys

from subsidy.services.console.bootstrap import main

sys.exit(main())
