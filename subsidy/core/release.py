"""Release gates, holds and recovery (拨付前核验, 追回): pure rules.

The readings are ``../shared/policy/workflow.md`` ("Release gates, holds and
recovery") and ADR 0017:

- Before a tranche becomes DUE the firm must still meet 一、适用范围 as of
  that day — registered (工商登记) and tax-registered (税务登记) in Songjiang,
  an independent legal person (独立法人) — by the latest facts the data
  platform published (subsidy.firms.v1). ``gate`` says whether it does, and
  why not, in Chinese.
- A firm the feed never mentioned (registry-sync not deployed, or the firm
  not yet synced) passes: the ledger keeps its behaviour before the feed
  existed. A firm the platform no longer knows (a tombstone) fails.
- A HELD tranche is released when the facts are restored within the hold
  grace (their ``as_of`` on or before the hold's last day), and cancelled
  once the grace is over without that (``after_hold``).
- A recovery claims at most what was paid on its tranches and not yet
  claimed by an earlier recovery (``allocate``); recovered money frees the
  cap only when the award is declared void.

No I/O, no clock: the day is the caller's (its injected clock).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: The codes of a failed gate, and their Chinese text (what the firm, the
#: reviewers and finance read).
REGISTERED_OUTSIDE = "REGISTERED_OUTSIDE_DISTRICT"
TAX_REGISTERED_OUTSIDE = "TAX_REGISTERED_OUTSIDE_DISTRICT"
NOT_INDEPENDENT = "NOT_INDEPENDENT_LEGAL_PERSON"
UNKNOWN_TO_PLATFORM = "UNKNOWN_TO_PLATFORM"

REASON_TEXTS: Mapping[str, str] = {
    REGISTERED_OUTSIDE: "工商登记已不在松江区",
    TAX_REGISTERED_OUTSIDE: "税务登记已不在松江区",
    NOT_INDEPENDENT: "已不具备独立法人资格",
    UNKNOWN_TO_PLATFORM: "政务数据平台已无该企业的登记信息",
}


@dataclass(frozen=True, slots=True)
class FirmStanding:
    """What the release gate reads of a firm's latest facts (FirmFacts).
    ``known`` is False after a tombstone: the platform no longer knows the
    firm (the flags are then meaningless)."""

    credit_code: str
    known: bool
    as_of: dt.date | None
    registered_in_district: bool
    tax_registered_in_district: bool
    independent_legal_person: bool
    feed_sequence: int


@dataclass(frozen=True, slots=True)
class GateResult:
    passes: bool
    #: Codes of what failed, in the order of 一、适用范围; empty when it passes.
    codes: tuple[str, ...]
    #: as_of of the facts read; None when none (never heard of, or a tombstone).
    facts_as_of: dt.date | None
    #: True when the feed never mentioned the firm (the gate passes by default).
    no_facts: bool = False

    @property
    def reason(self) -> str:
        """The reasons in Chinese, joined with "；"; "" when it passes."""
        return "；".join(REASON_TEXTS[c] for c in self.codes)


def gate(standing: FirmStanding | None) -> GateResult:
    """Does the firm meet 一、适用范围 by its latest facts? None (the feed
    never mentioned the firm) passes, with ``no_facts``."""
    if standing is None:
        return GateResult(True, (), None, no_facts=True)
    if not standing.known:
        return GateResult(False, (UNKNOWN_TO_PLATFORM,), None)
    codes: list[str] = []
    if not standing.registered_in_district:
        codes.append(REGISTERED_OUTSIDE)
    if not standing.tax_registered_in_district:
        codes.append(TAX_REGISTERED_OUTSIDE)
    if not standing.independent_legal_person:
        codes.append(NOT_INDEPENDENT)
    return GateResult(not codes, tuple(codes), standing.as_of)


def newer(current: FirmStanding | None, incoming_sequence: int) -> bool:
    """Is a record at ``incoming_sequence`` newer than what is kept? The
    feed's sequence orders a firm's facts; a redelivered or older record
    (equal or lower) changes nothing."""
    return current is None or incoming_sequence > current.feed_sequence


def hold_until(held_on: dt.date, grace_days: int) -> dt.date:
    """The last day of a hold's grace: ``grace_days`` after the hold
    (hold_grace_days of policy/workflow.yaml in force on ``held_on``)."""
    if grace_days < 0:
        raise ValueError(f"hold grace must not be negative, got {grace_days}")
    return held_on + dt.timedelta(days=grace_days)


class AfterHold(enum.StrEnum):
    RELEASE = "release"
    CANCEL = "cancel"
    KEEP = "keep"


def after_hold(result: GateResult, until: dt.date, today: dt.date) -> AfterHold:
    """What becomes of a HELD tranche today, by the firm's latest facts:

    - RELEASE when they pass the gate and were restored within the grace:
      their ``as_of`` on or before ``until`` (facts the feed never gave —
      the firm forgotten by payout cannot happen, but would pass — count as
      restored today);
    - CANCEL when the grace is over (``today`` after ``until``) otherwise;
    - KEEP while the grace runs.
    """
    if result.passes:
        restored_on = result.facts_as_of or today
        if restored_on <= until:
            return AfterHold.RELEASE
    if today > until:
        return AfterHold.CANCEL
    return AfterHold.KEEP


def cancel_reason(result: GateResult, held_on: dt.date, until: dt.date) -> str:
    """TrancheCancelled's reason after a hold whose grace ran out."""
    why = result.reason or "企业信息恢复晚于宽限期"
    return f"暂停拨付（{_zh(held_on)}起）宽限期至{_zh(until)}届满，企业仍不符合《政策》一、适用范围：{why}"


def _zh(day: dt.date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


# -- recovery (追回) --------------------------------------------------------------


class RecoveryRefused(ValueError):
    """A recovery that must not be opened; the message names the field."""


@dataclass(frozen=True, slots=True)
class PaidTranche:
    tranche_id: str
    paid_fen: int
    #: Already claimed by recoveries opened earlier.
    claimed_fen: int

    @property
    def open_fen(self) -> int:
        return max(0, self.paid_fen - self.claimed_fen)


def allocate(amount_fen: int, tranches: Sequence[PaidTranche]) -> tuple[tuple[str, int], ...]:
    """Spread a recovery's amount over its paid tranches in their order, each
    up to what is still unclaimed on it: ((tranche_id, fen), ...), only the
    tranches that get something. RecoveryRefused when the amount is not
    positive or exceeds what was paid and not yet claimed."""
    if amount_fen <= 0:
        raise RecoveryRefused(f"amount_fen: must be positive, got {amount_fen}")
    available = sum(t.open_fen for t in tranches)
    if amount_fen > available:
        paid = sum(t.paid_fen for t in tranches)
        raise RecoveryRefused(
            f"amount_fen: {amount_fen} fen is more than what was paid on the tranches and not yet claimed by "
            f"a recovery: {available} fen (paid {paid} fen)"
        )
    left = amount_fen
    out: list[tuple[str, int]] = []
    for t in tranches:
        if left == 0:
            break
        take = min(left, t.open_fen)
        if take > 0:
            out.append((t.tranche_id, take))
            left -= take
    return tuple(out)


def cap_release(
    fen: int, void_award: bool, uses: Sequence[tuple[str, int]], already_released_fen: int = 0
) -> tuple[tuple[str, int], ...]:
    """The cap room that ``fen`` frees per scope: none unless the award is
    void (workflow.md: recovered money does not free the cap unless the
    reviewer says the award is void); then taken from what the grant holds
    per scope, in the order of its uses, after the ``already_released_fen``
    freed before, never more than the grant holds."""
    if not void_award or fen <= 0:
        return ()
    skip = max(0, already_released_fen)
    left = fen
    out: list[tuple[str, int]] = []
    for scope, held in uses:
        if left == 0:
            break
        still = held - min(skip, held)
        skip -= min(skip, held)
        take = min(left, still)
        if take > 0:
            out.append((scope, take))
            left -= take
    return tuple(out)
