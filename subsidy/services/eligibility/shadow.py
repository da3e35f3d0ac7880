"""Shadow evaluation's running difference (issue 14, item 3).

When ``SUBSIDY_ELIGIBILITY_SHADOW_VERSION`` names a candidate policy version,
every application is decided under the adopted version (the decision that
counts, on ``subsidy.decisions.v1``) and under the candidate (a shadow
decision, on ``subsidy.decisions.shadow.v1`` only: no consumer of the
decisions topic, and so neither review nor the payout ledger, ever sees it).

``ShadowTally`` keeps, per application, both decisions' money by budget year
and whether they agree, and answers PolicyService.GetShadowDifference.

- **What the money is.** Each decision's ceiling (``max_award_fen``) spread
  over its tranches as the ledger schedules them (``subsidy.core.ledger.schedule``:
  tranche k in decision year + k), before the ledger's caps and one-time
  limits, which need the firm's history that eligibility does not keep. The
  per-year difference is shadow minus adopted, in integer fen; ``subsidy
  policy diff --applications`` gives the figure after caps for a file.
- **Where the state lives.** In this process's memory, keyed by application
  id: an application decided again (a record redelivered after a crash, at
  least once) replaces its entry instead of counting twice. Each instance
  holds the applications of the partitions it consumed; a restart starts an
  empty tally (``since`` says when, ``applications`` how many it holds), and
  the shadow topic keeps every shadow decision for a full recount.
- **Agreement.** The same outcome, the same ceiling and the same schedule.

Updated from the event loop only (the agent's acknowledgement task and the
gRPC handlers run on the faust worker's loop), so it needs no lock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from subsidy.core.domain import Decision
from subsidy.core.ledger import schedule


def by_year(decision: Decision) -> dict[int, int]:
    """The decision's ceiling per budget year, as the ledger would schedule it."""
    years: dict[int, int] = {}
    for tranche in schedule(
        decision.application_id, decision.max_award_fen, decision.decision_year, decision.tranche_shares_percent
    ):
        years[tranche.year] = years.get(tranche.year, 0) + tranche.amount_fen
    return years


def agree(adopted: Decision, shadow: Decision) -> bool:
    return (
        adopted.outcome == shadow.outcome
        and adopted.max_award_fen == shadow.max_award_fen
        and by_year(adopted) == by_year(shadow)
    )


@dataclass(frozen=True, slots=True)
class Entry:
    clause: str
    adopted_version: str
    shadow_version: str
    adopted: dict[int, int]
    shadow: dict[int, int]
    agrees: bool


@dataclass(frozen=True, slots=True)
class YearDifference:
    year: int
    adopted_fen: int
    shadow_fen: int

    @property
    def difference_fen(self) -> int:
        return self.shadow_fen - self.adopted_fen


class ShadowTally:
    def __init__(self, shadow_version: str, clock: Callable[[], dt.datetime]):
        self.shadow_version = shadow_version
        self.since = clock()
        self._entries: dict[str, Entry] = {}

    def record(self, adopted: Decision, shadow: Decision) -> bool:
        """Both decisions of one application; True when they agree."""
        if adopted.application_id != shadow.application_id:
            raise ValueError(f"not one application: {adopted.application_id} and {shadow.application_id}")
        entry = Entry(
            adopted.clause,
            adopted.policy_version,
            shadow.policy_version,
            by_year(adopted),
            by_year(shadow),
            agree(adopted, shadow),
        )
        self._entries[adopted.application_id] = entry
        return entry.agrees

    def adopted_versions(self) -> list[str]:
        """The versions that made the adopted decisions counted (more than one
        once a version was adopted while the tally ran)."""
        return sorted({entry.adopted_version for entry in self._entries.values()})

    def __len__(self) -> int:
        return len(self._entries)

    def years(self) -> list[YearDifference]:
        adopted: dict[int, int] = {}
        shadow: dict[int, int] = {}
        for entry in self._entries.values():
            for year, fen in entry.adopted.items():
                adopted[year] = adopted.get(year, 0) + fen
            for year, fen in entry.shadow.items():
                shadow[year] = shadow.get(year, 0) + fen
        return [YearDifference(y, adopted.get(y, 0), shadow.get(y, 0)) for y in sorted(adopted.keys() | shadow.keys())]

    def clauses(self) -> dict[str, tuple[int, int]]:
        """clause -> (agreements, differences), over the applications held."""
        counts: dict[str, tuple[int, int]] = {}
        for entry in self._entries.values():
            agreed, differed = counts.get(entry.clause, (0, 0))
            counts[entry.clause] = (agreed + 1, differed) if entry.agrees else (agreed, differed + 1)
        return dict(sorted(counts.items()))
