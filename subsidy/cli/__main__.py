"""`python -m subsidy.cli`: the same as the `subsidy` console script."""

import sys

from subsidy.cli import main

sys.exit(main())
