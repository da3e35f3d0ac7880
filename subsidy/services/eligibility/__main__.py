"""`python -m subsidy.services.eligibility`: run the eligibility service (see docs/eligibility.md)."""

import sys

from subsidy.services.eligibility.bootstrap import main

sys.exit(main())
