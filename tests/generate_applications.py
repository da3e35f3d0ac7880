"""Write a large, reproducible set of valid applications as JSON lines, for
comparing ``subsidy simulate`` output before and after a change that must not
change behaviour (e.g. moving code around):

    .venv/bin/python tests/generate_applications.py 20000 > /tmp/apps.jsonl
    .venv/bin/subsidy simulate /tmp/apps.jsonl --summary > after.jsonl   # and the same from the old commit

The applications come from the hypothesis strategies in tests/strategies.py,
derandomized (the same count gives the same file). Firms are drawn from a
small pool and some application ids repeat, so caps, one-time awards and
duplicates across applications are exercised, not only single decisions;
half the firms pass the scope check and are of every kind, so the clause
rules decide.
Anything the codec refuses is left out (simulate stops at bad input); the
count written and left out goes to standard error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from strategies import applications

from subsidy.contracts.codec import BadInput, parse_application
from subsidy.core import domain


def generate(count: int) -> tuple[list[dict], int]:
    # A fixed pool of firms, so one firm applies many times (its history matters).
    pool = _pool(150)
    kept: list[dict] = []
    refused = 0

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(applications(codes=st.sampled_from(pool)))
    def collect(app: dict) -> None:
        nonlocal refused
        # Ids are numbered here rather than drawn: derandomized hypothesis
        # draws the same few ids again and again, which would make nearly
        # every application a duplicate. Every 97th reuses an earlier id.
        n = len(kept)
        app["application_id"] = f"G-{n // 2 if n % 97 == 96 else n}"
        if n % 2 == 0:
            # Half the firms pass 一、适用范围 and are of every kind, so the
            # clause rules and the ledger decide, not the scope check.
            app["firm"] = {
                **app["firm"],
                "kinds": list(domain.FIRM_KINDS),
                "registered_in_district": True,
                "tax_registered_in_district": True,
                "independent_legal_person": True,
            }
        try:
            parse_application(app)
        except BadInput:
            refused += 1
            return
        kept.append(app)

    collect()
    return kept, refused


def _pool(size: int) -> list[str]:
    """`size` valid credit codes, the same every run."""
    from subsidy.core import credit_code

    chars = credit_code.CODE_CHARS
    codes = []
    for n in range(size):
        body = "".join(chars[(n * 7 + i * 13 + n // 3) % len(chars)] for i in range(8))
        codes.append(credit_code.complete("91310117" + body))
    return codes


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    kept, refused = generate(count)
    out = sys.stdout
    for app in kept:
        # ASCII only: free text may hold U+0085 or U+2028, which the calculator's
        # line splitting (str.splitlines) would take for line breaks.
        out.write(json.dumps(app) + "\n")
    print(f"wrote {len(kept)} applications, left out {refused} the codec refuses", file=sys.stderr)


if __name__ == "__main__":
    main()
