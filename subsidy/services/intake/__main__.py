"""`python -m subsidy.services.intake`: run the intake service (see docs/intake.md)."""

import sys

from subsidy.services.intake.bootstrap import main

sys.exit(main())
