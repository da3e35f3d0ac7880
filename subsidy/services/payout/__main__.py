"""`python -m subsidy.services.payout`: run the payout service (see docs/payout.md)."""

import sys

from subsidy.services.payout.bootstrap import main

sys.exit(main())
