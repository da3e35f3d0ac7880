"""`python -m services.notify`: run the notify service (see docs/notify.md)."""

import sys

from services.notify.bootstrap import main

sys.exit(main())
