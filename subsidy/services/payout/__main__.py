"""`python -m subsidy.services.payout`: run the payout service (see docs/payout.md);
`python -m subsidy.services.payout reconcile`: the cap reconciliation once (reconcile_cli.py)."""

import sys

if sys.argv[1:2] == ["reconcile"]:
    from subsidy.services.payout.reconcile_cli import main as reconcile

    sys.exit(reconcile(sys.argv[2:]))

from subsidy.services.payout.bootstrap import main

sys.exit(main())
