"""registry-sync's use cases over ports.py (no HTTP, Kafka or SQL here):

- ``sync_page``: read one page of the feed from the stored cursor and, in ONE
  transaction, fold every usable change into its firm's facts, hold the
  changes dated after today, dead-letter the ones that cannot be used (the
  reason names the field), write each changed firm's whole facts to the
  outbox once, and move the cursor past the page. A kill -9 anywhere leaves
  either all of it or none of it: the page is read again and nothing is
  lost or applied twice. One bad change never stops the others.
- ``resync``: the platform no longer knows the cursor (410 Gone): take its
  snapshot; a firm whose stored facts are as new or newer (feed sequence)
  is left as it is, so a resync publishes nothing for firms already right.
- ``release_held``: changes whose day has come are folded in, in sequence order.
- ``run_once``: held changes, then pages until the feed is caught up.

Idempotent by construction: a change whose sequence is not above the
firm's feed sequence is skipped, a firm is published only when its facts
changed (under a new revision: the outbox is unique on the event id), and a
dead letter's id is the change's sequence.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Sequence
from typing import Any

from subsidy.core import credit_code as credit_codes
from subsidy.core.dates import rfc3339
from subsidy.platform.clock import Clock
from subsidy.services.registry_sync import events
from subsidy.services.registry_sync.model import (
    BadChange,
    Change,
    canonical,
    check_text,
    credit_code_of,
    fold,
    parse_change,
    parse_firm_facts,
    sequence_of,
)
from subsidy.services.registry_sync.ports import (
    CursorGone,
    Feed,
    HeldChange,
    RawChange,
    Store,
    StoredFirm,
    SyncState,
    SyncTx,
)

log = logging.getLogger("subsidy.services.registry_sync")


@dataclasses.dataclass
class Deps:
    feed: Feed
    store: Store
    clock: Clock
    page_size: int = 500


@dataclasses.dataclass
class Outcome:
    """What one unit of work did (the worker turns it into metrics)."""

    applied: int = 0
    skipped: int = 0
    held: int = 0
    released: int = 0
    published: int = 0
    rejected: dict[str, int] = dataclasses.field(default_factory=dict)
    caught_up: bool = True
    resynced: bool = False
    high_water: int = 0
    last_sequence: int = 0

    def add(self, other: Outcome) -> None:
        for name in ("applied", "skipped", "held", "released", "published"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for reason, n in other.rejected.items():
            self.rejected[reason] = self.rejected.get(reason, 0) + n
        self.caught_up = other.caught_up
        self.resynced = self.resynced or other.resynced
        self.high_water = other.high_water or self.high_water
        self.last_sequence = other.last_sequence or self.last_sequence

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


def _reason(field: str) -> str:
    """A metric label: the first part of the field path (sequence, credit_code, data, ...)."""
    return field.split(".", 1)[0].split("[", 1)[0] or "change"


class _Fold:
    """The firms touched in one transaction: folded in memory, written once at the end."""

    def __init__(self, tx: SyncTx, now: dt.datetime, outcome: Outcome):
        self.tx = tx
        self.now = now
        self.at = rfc3339(now)
        self.outcome = outcome
        self.stored: dict[str, StoredFirm | None] = {}
        self.current: dict[str, dict[str, Any]] = {}

    def facts(self, code: str) -> dict[str, Any] | None:
        if code in self.current:
            return self.current[code]
        if code not in self.stored:
            self.stored[code] = self.tx.firm(code)
        stored = self.stored[code]
        return stored.facts if stored is not None else None

    def set(self, code: str, facts: dict[str, Any]) -> None:
        if code not in self.stored:
            self.stored[code] = self.tx.firm(code)
        self.current[code] = facts

    def reject(self, raw: bytes, obj: Any, exc: BadChange) -> None:
        sequence = sequence_of(obj)
        code = credit_code_of(obj)
        self.tx.enqueue(events.dead_letter(raw, code, sequence, str(exc), self.now), self.at)
        reason = _reason(exc.field)
        self.outcome.rejected[reason] = self.outcome.rejected.get(reason, 0) + 1
        log.warning(
            "feed change dead-lettered",
            extra={"fields": {"sequence": sequence, "credit_code": code, "field": exc.field, "error": str(exc)[:300]}},
        )

    def write(self) -> None:
        for code, facts in self.current.items():
            stored = self.stored.get(code)
            text = canonical(facts)
            if stored is not None and stored.canonical == text:
                continue
            revision = (stored.revision if stored is not None else 0) + 1
            self.tx.put_firm(code, text, int(facts["feed_sequence"]), revision, self.at)
            self.tx.enqueue(events.firm_record(facts, revision, self.now), self.at)
            self.outcome.published += 1


def apply_changes(
    tx: SyncTx, changes: Sequence[RawChange], state: SyncState, today: dt.date, now: dt.datetime
) -> Outcome:
    """Fold a page's changes (see the module doc); the caller moves the cursor in the same transaction."""
    outcome = Outcome()
    work = _Fold(tx, now, outcome)
    for entry in changes:
        try:
            change = parse_change(entry.obj, today)
        except BadChange as exc:
            work.reject(entry.raw, entry.obj, exc)
            continue
        if change.sequence <= state.last_sequence:
            outcome.skipped += 1  # already behind the cursor: a repeated delivery
            continue
        if change.effective_on > today:
            tx.hold(
                HeldChange(change.sequence, change.credit_code, change.effective_on.isoformat(), change.to_json()),
                work.at,
            )
            outcome.held += 1
            log.info(
                "feed change dated ahead: held until its day",
                extra={
                    "fields": {
                        "sequence": change.sequence,
                        "credit_code": change.credit_code,
                        "effective_on": change.effective_on.isoformat(),
                    }
                },
            )
            continue
        current = work.facts(change.credit_code)
        if current is not None and change.sequence <= int(current["feed_sequence"]):
            outcome.skipped += 1  # already in the facts (a snapshot had it, or the same change twice)
            continue
        try:
            folded = fold(current, change)
        except BadChange as exc:
            work.reject(entry.raw, entry.obj, exc)
            continue
        work.set(change.credit_code, folded)
        outcome.applied += 1
    work.write()
    return outcome


def sync_page(deps: Deps) -> Outcome:
    """One page of the feed (see the module doc)."""
    with deps.store.unit() as tx:
        before = tx.state()
    try:
        page = deps.feed.changes(before.cursor, deps.page_size)
    except CursorGone:
        log.warning(
            "the data platform no longer knows our cursor: full resync", extra={"fields": {"cursor": before.cursor}}
        )
        return resync(deps)
    now = deps.clock.now()
    today = deps.clock.today()
    with deps.store.unit() as tx:
        state = tx.state()
        if state.cursor != before.cursor:  # another replica took this page meanwhile
            return Outcome(caught_up=False, high_water=state.high_water, last_sequence=state.last_sequence)
        outcome = apply_changes(tx, page.changes, state, today, now)
        sequences = [s for s in (sequence_of(c.obj) for c in page.changes) if s is not None]
        last = max([state.last_sequence, *sequences])
        tx.set_state(SyncState(page.next_cursor, last, max(page.high_water, last), rfc3339(now), state.resyncs))
    outcome.caught_up = not page.changes or page.next_cursor == before.cursor or len(page.changes) < deps.page_size
    outcome.high_water = max(page.high_water, last)
    outcome.last_sequence = last
    return outcome


def resync(deps: Deps) -> Outcome:
    """Take the platform's snapshot in one transaction; the cursor becomes the snapshot's."""
    snapshot = deps.feed.snapshot()
    now = deps.clock.now()
    today = deps.clock.today()
    outcome = Outcome(resynced=True)
    with deps.store.unit() as tx:
        state = tx.state()
        work = _Fold(tx, now, outcome)
        for i, entry in enumerate(snapshot.firms):
            try:
                code, facts = _snapshot_firm(entry.obj, i, today)
            except BadChange as exc:
                work.reject(entry.raw, entry.obj, exc)
                continue
            current = work.facts(code)
            if current is not None and int(current["feed_sequence"]) >= facts["feed_sequence"]:
                outcome.skipped += 1
                continue
            work.set(code, facts)
            outcome.applied += 1
        work.write()
        last = max(state.last_sequence, snapshot.sequence)
        tx.set_state(SyncState(snapshot.cursor, last, last, rfc3339(now), state.resyncs + 1))
    outcome.high_water = outcome.last_sequence = last
    outcome.caught_up = False  # read the feed on from the snapshot's cursor at once
    log.info(
        "full resync done",
        extra={
            "fields": {
                "firms": len(snapshot.firms),
                "published": outcome.published,
                "rejected": outcome.rejected_total,
                "cursor": snapshot.cursor,
            }
        },
    )
    return outcome


def _snapshot_firm(obj: Any, i: int, today: dt.date) -> tuple[str, dict[str, Any]]:
    field = f"firms[{i}]"
    if not isinstance(obj, dict):
        raise BadChange(field, f"must be a JSON object, got {type(obj).__name__}")
    check_text(obj, field)
    code = obj.get("credit_code")
    if not isinstance(code, str) or not code:
        raise BadChange(f"{field}.credit_code", "is required")
    try:
        credit_codes.validate(code)
    except credit_codes.InvalidCreditCode as exc:
        raise BadChange(f"{field}.credit_code", f"not a valid unified social credit code: {exc}") from None
    sequence = obj.get("feed_sequence")
    if type(sequence) is not int or sequence < 0:
        raise BadChange(f"{field}.feed_sequence", f"must be a whole number >= 0, got {sequence!r}")
    as_of = obj.get("as_of") or today.isoformat()
    try:
        day = dt.date.fromisoformat(as_of) if isinstance(as_of, str) else None
    except ValueError:
        day = None
    if day is None:
        raise BadChange(f"{field}.as_of", f"must be a date written YYYY-MM-DD, got {as_of!r}")
    if day > today:
        raise BadChange(f"{field}.as_of", f"{day} is after today ({today}): a snapshot holds facts in effect")
    facts = parse_firm_facts(obj, field, code, day)
    facts["as_of"] = day.isoformat()
    facts["feed_sequence"] = sequence
    return code, facts


def release_held(deps: Deps) -> Outcome:
    """Fold the held changes whose day has come, in sequence order, in one transaction."""
    now = deps.clock.now()
    today = deps.clock.today()
    outcome = Outcome()
    with deps.store.unit() as tx:
        due = tx.held_due(today.isoformat())
        if not due:
            return outcome
        work = _Fold(tx, now, outcome)
        for held in due:
            obj = json.loads(held.change)
            raw = held.change.encode()
            change = Change(
                obj["sequence"],
                obj["credit_code"],
                obj["kind"],
                dt.date.fromisoformat(obj["effective_on"]),
                obj["data"],
            )
            tx.drop_held(held.sequence)
            try:
                work.set(change.credit_code, fold(work.facts(change.credit_code), change))
            except BadChange as exc:
                work.reject(raw, obj, exc)
                continue
            outcome.released += 1
            outcome.applied += 1
        work.write()
    return outcome


def run_once(deps: Deps, max_pages: int = 1000) -> Outcome:
    """Held changes due, then pages until caught up (at most ``max_pages``)."""
    total = release_held(deps)
    for _ in range(max_pages):
        outcome = sync_page(deps)
        total.add(outcome)
        if outcome.caught_up:
            break
    return total
