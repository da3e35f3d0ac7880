"""`python -m subsidy.services.review`: run the review service (see docs/review.md)."""

import sys

from subsidy.services.review.bootstrap import main

sys.exit(main())
