"""`python -m subsidy.services.notify`: run the notify service (see docs/notify.md)."""

import sys

from subsidy.services.notify.bootstrap import main

sys.exit(main())
