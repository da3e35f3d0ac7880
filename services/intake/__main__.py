"""`python -m services.intake`: run the intake service (see docs/intake.md)."""

import sys

from services.intake.bootstrap import main

sys.exit(main())
