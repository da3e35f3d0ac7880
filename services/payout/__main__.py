"""`python -m services.payout`: run the payout service (see docs/payout.md)."""

import sys

from services.payout.bootstrap import main

sys.exit(main())
