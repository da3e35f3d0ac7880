"""``python -m subsidy.services.payout reconcile``: the cap reconciliation
(reconcile.py) once, as the CronJob ``subsidy-cap-reconcile`` runs it.

Reads ``SUBSIDY_PAYOUT_DATABASE_URL`` (or ``SUBSIDY_PAYOUT_DATABASE_URL_FILE``)
like the service. Prints one JSON line per mismatch, then a summary line;
exits 0 when there is none, 1 when there are mismatches (the Job fails, so
kube-state-metrics' ``kube_job_status_failed`` alerts:
SubsidyCapReconcileJobFailed), 2 when the database cannot be read.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TextIO

from subsidy.platform.db import Database
from subsidy.services.payout.adapters.ledger_gauges import LedgerGaugeReader
from subsidy.services.payout.config import Settings

EXIT_CLEAN, EXIT_MISMATCH, EXIT_UNREADABLE = 0, 1, 2


def main(argv: Sequence[str] = (), out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if argv:
        sys.stderr.write(f"reconcile takes no arguments, got {' '.join(argv)!r}\n")
        return EXIT_UNREADABLE
    settings = Settings.from_env()
    db = Database(settings.database_url, store="payout-reconcile", pool_size=1)
    try:
        result = LedgerGaugeReader(db).reconcile()
    except Exception as exc:  # noqa: BLE001 - the database is down or not migrated: say so, exit 2
        sys.stderr.write(f"reconcile: cannot read the ledger: {type(exc).__name__}: {exc}"[:500] + "\n")
        return EXIT_UNREADABLE
    finally:
        db.close()
    for m in result.mismatches:
        out.write(json.dumps({"mismatch": m.as_dict()}, ensure_ascii=False) + "\n")
    summary = {
        "firms": result.firms,
        "scopes": result.scopes,
        "mismatches": len(result.mismatches),
        "usage": result.count("usage"),
        "over_cap": result.count("over_cap"),
        "unverifiable_firms": len(result.unverifiable_firms),
    }
    out.write(json.dumps({"reconciliation": summary}) + "\n")
    return EXIT_MISMATCH if result.mismatches else EXIT_CLEAN
