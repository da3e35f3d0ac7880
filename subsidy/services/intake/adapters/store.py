"""The intake store on subsidy.platform.db.Database: SQLite (default) or PostgreSQL.

Tables (created and changed by the versioned migrations in adapters/migrations/,
never at start-up; names carry the service so several services may share one
PostgreSQL database):

- ``intake_applications``: one row per accepted application.
- ``intake_outbox``: events to publish, in ``id`` order; ``published_at`` is
  set by the relay once Kafka acknowledged the event.
- ``intake_grants``: the grant and tranches of an application as the payout
  events describe them (a subsidy.v1.Grant), for GetApplication.
- ``intake_payout_events``: payout event ids already folded in (idempotency).

Accepting an application is one INSERT of the application and one of its
outbox row, committed before SubmitApplication answers. The commits of
concurrent submissions (and the relay's marks) are grouped: one transaction,
one commit (with SQLite synchronous=FULL, one fsync) for all the writes
waiting at that moment (``GroupCommit``). Each caller still returns only once
its own write is committed, so durability is unchanged; the disk's fsync rate
no longer bounds the rate of submissions.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from typing import Any, TypeVar

from subsidy.platform import migrations
from subsidy.platform.db import Database, DatabaseUnavailable, Transaction
from subsidy.platform.outbox import OutboxMessage, OutboxRow, OutboxTable, Published, encode_headers
from subsidy.services.intake.adapters.migrations import HISTORY
from subsidy.services.intake.model import DuplicateKey, StoredApplication, StoredProposal
from subsidy.services.intake.search import Filters, like_pattern

# With several replicas on one PostgreSQL database, one relay at a time
# publishes: advisory lock key, taken per batch (subsidy.platform.outbox.OutboxTable).
RELAY_LOCK_KEY = 0x494E_5441  # "INTA"

_COLUMNS = (
    "application_id, credit_code, payload_sha256, payload, received_at, trace_id, "
    "state, decision, decision_id, decided_at, "
    "(SELECT grant_proto FROM intake_grants g WHERE g.application_id = intake_applications.application_id), "
    "firm_name, clause"
)


def _row(raw: tuple) -> StoredApplication:
    return StoredApplication(
        application_id=raw[0],
        credit_code=raw[1],
        payload_sha256=raw[2],
        payload=bytes(raw[3]),
        received_at=raw[4],
        trace_id=raw[5],
        state=raw[6],
        decision=bytes(raw[7]) if raw[7] is not None else None,
        decision_id=raw[8],
        decided_at=raw[9],
        grant=bytes(raw[10]) if raw[10] is not None else None,
        firm_name=raw[11] or "",
        clause=raw[12] or "",
    )


T = TypeVar("T")


class _Write:
    __slots__ = ("work", "done", "lead", "result", "error")

    def __init__(self, work: Callable[[Transaction], Any]):
        self.work = work
        self.done = threading.Event()
        self.lead = False  # set when this caller is handed the leader's turn
        self.result: Any = None
        self.error: BaseException | None = None


class GroupCommit:
    """Runs units of work from many threads in shared transactions.

    ``run(work)`` returns once ``work(tx)`` is committed (or raises what it or
    the commit raised). Whoever finds no transaction in progress leads: it
    takes every queued unit (up to ``max_batch``) into one transaction and
    commits once; units queued meanwhile wait and the first of them leads
    the next transaction. A unit that fails does not take the others with
    it: the batch is rolled back and its units are retried one transaction
    each (a database that is down fails them all at once instead)."""

    def __init__(self, db: Database, max_batch: int = 256):
        self.db = db
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Write] = []
        self._busy = False

    def run(self, work: Callable[[Transaction], T]) -> T:
        if self.db.in_batch():
            # This thread holds a batch open (a consumer applying its poll in
            # one transaction): the write is a savepoint of it, alone. Queued
            # behind another caller's lead it would wait for a leader that
            # waits for the connection this batch holds (on SQLite, a
            # deadlock); leading, it would take other callers' writes into a
            # transaction not yet committed and answer them before it is.
            with self.db.transaction() as tx:
                return work(tx)
        unit = _Write(work)
        with self._lock:
            self._queue.append(unit)
            leading = not self._busy
            self._busy = True
        if not leading:
            unit.done.wait()
            leading = unit.lead
        if leading:
            self._lead()
        if unit.error is not None:
            raise unit.error
        return unit.result

    def _lead(self) -> None:
        """Commit one batch (the leader's own unit is its first: a leader is
        first in the queue), then hand the turn to the next waiting unit."""
        try:
            with self._lock:
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            self._commit(batch)
        finally:
            with self._lock:
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                    successor.done.set()
                else:
                    self._busy = False

    def _commit(self, batch: list[_Write]) -> None:
        try:
            with self.db.transaction() as tx:
                results = [unit.work(tx) for unit in batch]
        except DatabaseUnavailable as exc:
            self._finish(batch, error=exc)
        except Exception as exc:  # noqa: BLE001 - retried one by one, so one bad unit fails alone
            if len(batch) == 1:
                self._finish(batch, error=exc)
            else:
                for unit in batch:
                    self._commit([unit])
        except BaseException as exc:  # interrupted: release every waiter before going
            self._finish(batch, error=exc)
            raise
        else:
            for unit, result in zip(batch, results):
                unit.result = result
            self._finish(batch)

    @staticmethod
    def _finish(batch: list[_Write], error: BaseException | None = None) -> None:
        for unit in batch:
            if error is not None:
                unit.error = error
            unit.done.set()


class SqlStore(migrations.OwnedSchema):
    """ApplicationStore (ports.py) plus the outbox queries the relay needs
    (create_schema and ping: migrations.OwnedSchema)."""

    history = HISTORY

    def __init__(self, db: Database):
        self.db = db
        self.writes = GroupCommit(db)
        # The relay's marks join the submissions' commits (one fsync for both).
        self.outbox = OutboxTable(db, "intake_outbox", RELAY_LOCK_KEY, write=self.writes.run)

    # -- ApplicationStore -------------------------------------------------

    def batch(self) -> ContextManager[Transaction]:
        """One transaction for every write this thread makes inside (a
        savepoint each, group-committed writes included: ``GroupCommit.run``):
        the status projections and the proposal pass apply a poll's records
        with one commit and one fsync instead of one per record.
        On SQLite every transaction of the process takes the connection's
        lock, so this also frees submissions from waiting behind a
        projection's fsync per record."""
        return self.db.batch()

    def get(self, application_id: str) -> StoredApplication | None:
        """The application with the history of its decisions (issue 14), in the order read."""
        with self.db.transaction() as tx:
            raw = tx.one(f"SELECT {_COLUMNS} FROM intake_applications WHERE application_id = ?", (application_id,))
            history = tx.all(
                "SELECT decision FROM intake_decisions WHERE application_id = ? ORDER BY read_at, decision_id",
                (application_id,),
            )
        if not raw:
            return None
        return dataclasses.replace(_row(raw), history=tuple(bytes(r[0]) for r in history))

    def add(self, application: StoredApplication, message: OutboxMessage) -> None:
        """Store the application and its outbox row, committed on return.
        An id already stored raises DuplicateKey carrying the stored row, read
        in the same transaction (no separate look-up before the insert)."""
        headers = encode_headers(message.headers)
        existing = self.writes.run(lambda tx: self._insert(tx, application, message, headers))
        if existing is not None:
            raise DuplicateKey(application.application_id, existing)

    @staticmethod
    def _insert(
        tx: Transaction, a: StoredApplication, message: OutboxMessage, headers: str
    ) -> StoredApplication | None:
        inserted = tx.execute(
            "INSERT INTO intake_applications (application_id, credit_code, payload_sha256, payload, "
            "received_at, trace_id, state, updated_at, firm_name, firm_name_key, clause) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (application_id) DO NOTHING",
            (
                a.application_id,
                a.credit_code,
                a.payload_sha256,
                a.payload,
                a.received_at,
                a.trace_id,
                a.state,
                a.received_at,
                a.firm_name,
                a.firm_name.casefold(),
                a.clause,
            ),
        ).rowcount
        if not inserted:
            return _row(
                tx.one(f"SELECT {_COLUMNS} FROM intake_applications WHERE application_id = ?", (a.application_id,))
            )
        tx.execute(
            "INSERT INTO intake_outbox (topic, key, value, headers, created_at) VALUES (?, ?, ?, ?, ?)",
            (message.topic, message.key, message.value, headers, a.received_at),
        )
        return None

    def list_by_firm(
        self, credit_code: str, limit: int, after: tuple[str, str] | None = None
    ) -> list[StoredApplication]:
        return self.search(Filters(credit_code=credit_code), limit, after)

    def search(self, filters: Filters, limit: int, after: tuple[str, str] | None = None) -> list[StoredApplication]:
        """Applications matching every filter set (search.py), newest first by
        time received; ``after`` is the (received_at, application_id) the
        previous page ended on. Values are bound, never spliced."""
        where, params = [], []
        if filters.credit_code:
            where.append("credit_code = ?")
            params.append(filters.credit_code)
        if filters.clause:
            where.append("clause = ?")
            params.append(filters.clause)
        if filters.state:
            where.append("state = ?")
            params.append(filters.state)
        if filters.firm_name:
            where.append("firm_name_key LIKE ? ESCAPE '\\'")
            params.append(like_pattern(filters.name_key))
        if after is not None:
            where.append("(received_at < ? OR (received_at = ? AND application_id < ?))")
            params += [after[0], after[0], after[1]]
        sql = f"SELECT {_COLUMNS} FROM intake_applications"  # nosec B608 - constant columns and conditions
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY received_at DESC, application_id DESC LIMIT ?"
        params.append(limit)
        with self.db.transaction() as tx:
            return [_row(r) for r in tx.all(sql, params)]

    # The decision and the payout events arrive on two topics, through two
    # consumers, in either order; each decides the state from what the other
    # has written. Both lock the application's row first, so the second sees
    # the first's commit: without the lock, PostgreSQL (read committed) lets
    # each miss the other and the application stays DECIDED for good.
    def apply_decision(
        self,
        application_id: str,
        decision_id: str,
        decision: bytes,
        at: str,
        replaces: Callable[[bytes | None, bytes], bool],
        state_of: Callable[[bytes | None, bytes | None], str],
    ) -> str:
        """'applied', 'replayed' (this decision is the one shown), 'superseded'
        (``replaces`` keeps the one shown: a computed decision after its
        reviewed one) or 'unknown'. The state is ``state_of`` the decision
        shown and the grant."""
        with self.db.transaction() as tx:
            raw = tx.one(
                "SELECT decision_id, decision FROM intake_applications WHERE application_id = ?" + _for_update(tx),
                (application_id,),
            )
            if raw is None:
                return "unknown"
            # Every decision read joins the application's history (once: its id), shown or not.
            tx.execute(
                "INSERT INTO intake_decisions (application_id, decision_id, decision, read_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (application_id, decision_id) DO NOTHING",
                (application_id, decision_id, decision, at),
            )
            if raw[0] == decision_id:
                return "replayed"
            current = bytes(raw[1]) if raw[1] is not None else None
            if not replaces(current, decision):
                return "superseded"
            # The payout events travel on another topic and may be folded in
            # first: with the grant already here, its state is the application's.
            grant = tx.one("SELECT grant_proto FROM intake_grants WHERE application_id = ?", (application_id,))
            tx.execute(
                "UPDATE intake_applications SET state = ?, "
                "decision = ?, decision_id = ?, decided_at = ?, updated_at = ? WHERE application_id = ?",
                (
                    state_of(decision, bytes(grant[0]) if grant else None),
                    decision,
                    decision_id,
                    at,
                    at,
                    application_id,
                ),
            )
            return "applied"

    def apply_payout_event(
        self,
        event_id: str,
        application_id: str,
        fold: Callable[[bytes | None], bytes],
        at: str,
        state_of: Callable[[bytes | None, bytes | None], str],
    ) -> str:
        """Fold one payout event into the application's grant, once per event id:
        'applied', 'replayed' or 'unknown' (no such application). The state is
        ``state_of`` the decision shown and the grant folded."""
        with self.db.transaction() as tx:
            if tx.one("SELECT 1 FROM intake_payout_events WHERE event_id = ?", (event_id,)):
                return "replayed"
            app = tx.one(
                "SELECT decision FROM intake_applications WHERE application_id = ?" + _for_update(tx),
                (application_id,),
            )
            if not app:
                return "unknown"
            raw = tx.one("SELECT grant_proto FROM intake_grants WHERE application_id = ?", (application_id,))
            folded = fold(bytes(raw[0]) if raw else None)
            if raw:
                tx.execute(
                    "UPDATE intake_grants SET grant_proto = ?, grant_updated_at = ? WHERE application_id = ?",
                    (folded, at, application_id),
                )
            else:
                tx.execute(
                    "INSERT INTO intake_grants (application_id, grant_proto, grant_updated_at) VALUES (?, ?, ?)",
                    (application_id, folded, at),
                )
            # Until the decision itself arrives (on its own topic), the state stays RECEIVED.
            decision = bytes(app[0]) if app[0] is not None else None
            tx.execute(
                "UPDATE intake_applications SET state = ?, updated_at = ? WHERE application_id = ?",
                (state_of(decision, folded), at, application_id),
            )
            tx.execute("INSERT INTO intake_payout_events (event_id, applied_at) VALUES (?, ?)", (event_id, at))
            return "applied"

    # -- 免申即享 proposals (intake_proposals, migration 0003) --------------

    _PROPOSAL_COLUMNS = (
        "proposal_id, credit_code, clause, fact_reference, state, proposal, proposed_on, expires_on, created_at"
    )

    @staticmethod
    def _proposal(raw: tuple) -> StoredProposal:
        return StoredProposal(raw[0], raw[1], raw[2], raw[3], raw[4], bytes(raw[5]), raw[6], raw[7], raw[8])

    def add_proposal(self, p: StoredProposal, message: OutboxMessage) -> bool:
        """Insert the proposal and its ProposalCreated outbox row in one
        transaction; False (nothing written) when its id is already stored."""
        headers = encode_headers(message.headers)

        def work(tx: Transaction) -> bool:
            inserted = tx.execute(
                "INSERT INTO intake_proposals (proposal_id, credit_code, clause, fact_reference, state, proposal, "
                "proposed_on, expires_on, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (proposal_id) DO NOTHING",
                (
                    p.proposal_id,
                    p.credit_code,
                    p.clause,
                    p.fact_reference,
                    p.state,
                    p.proposal,
                    p.proposed_on,
                    p.expires_on,
                    p.created_at,
                    p.created_at,
                ),
            ).rowcount
            if inserted:
                tx.execute(
                    "INSERT INTO intake_outbox (topic, key, value, headers, created_at) VALUES (?, ?, ?, ?, ?)",
                    (message.topic, message.key, message.value, headers, p.created_at),
                )
            return bool(inserted)

        return self.writes.run(work)

    def get_proposal(self, proposal_id: str) -> StoredProposal | None:
        with self.db.transaction() as tx:
            raw = tx.one(
                f"SELECT {self._PROPOSAL_COLUMNS} FROM intake_proposals WHERE proposal_id = ?",  # nosec B608 - constant
                (proposal_id,),
            )
        return self._proposal(raw) if raw else None

    def list_proposals(
        self, credit_code: str, limit: int, after: tuple[str, str] | None = None
    ) -> list[StoredProposal]:
        return self.search_proposals(Filters(credit_code=credit_code), limit, after)

    def search_proposals(
        self, filters: Filters, limit: int, after: tuple[str, str] | None = None
    ) -> list[StoredProposal]:
        """Proposals of one firm or of all (``filters.credit_code`` empty), in
        one state or any, newest first by creation."""
        where, params = [], []
        if filters.credit_code:
            where.append("credit_code = ?")
            params.append(filters.credit_code)
        if filters.state:
            where.append("state = ?")
            params.append(filters.state)
        if after is not None:
            where.append("(created_at < ? OR (created_at = ? AND proposal_id < ?))")
            params += [after[0], after[0], after[1]]
        sql = f"SELECT {self._PROPOSAL_COLUMNS} FROM intake_proposals"  # nosec B608 - constant
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, proposal_id DESC LIMIT ?"
        params.append(limit)
        with self.db.transaction() as tx:
            return [self._proposal(r) for r in tx.all(sql, params)]

    def decide_proposal(
        self,
        proposal_id: str,
        from_state: str,
        to_state: str,
        proposal: bytes,
        at: str,
        message: OutboxMessage,
        payee: str | None = None,
    ) -> bool:
        """Move the proposal from ``from_state`` to ``to_state`` with its event
        in the outbox, in one transaction; False (nothing written) when it is
        no longer in ``from_state`` (another call decided it first)."""
        headers = encode_headers(message.headers)

        def work(tx: Transaction) -> bool:
            changed = tx.execute(
                "UPDATE intake_proposals SET state = ?, proposal = ?, payee = COALESCE(?, payee), updated_at = ? "
                "WHERE proposal_id = ? AND state = ?",
                (to_state, proposal, payee, at, proposal_id, from_state),
            ).rowcount
            if changed:
                tx.execute(
                    "INSERT INTO intake_outbox (topic, key, value, headers, created_at) VALUES (?, ?, ?, ?, ?)",
                    (message.topic, message.key, message.value, headers, at),
                )
            return bool(changed)

        return self.writes.run(work)

    def proposals_past(self, day: str, limit: int = 500) -> list[StoredProposal]:
        """PROPOSED proposals whose window ended before ``day``."""
        with self.db.transaction() as tx:
            return [
                self._proposal(r)
                for r in tx.all(
                    f"SELECT {self._PROPOSAL_COLUMNS} FROM intake_proposals "  # nosec B608 - constant
                    "WHERE state = 'PROPOSED' AND expires_on < ? ORDER BY expires_on, proposal_id LIMIT ?",
                    (day, limit),
                )
            ]

    def proposal_counts(self) -> dict[str, int]:
        with self.db.transaction() as tx:
            return {str(s): int(n) for s, n in tx.all("SELECT state, COUNT(*) FROM intake_proposals GROUP BY state")}

    # -- outbox (relay) ---------------------------------------------------

    def relay_batch(self, publish: Callable[[list[OutboxRow]], Published], limit: int = 100) -> int | None:
        return self.outbox.relay_batch(publish, limit)

    def pending(self, limit: int = 100) -> list[OutboxRow]:
        return self.outbox.pending(limit)

    def mark_published(self, ids: list[int], at: str) -> None:
        self.outbox.mark_published(ids, at)

    def pending_count(self) -> int:
        return self.outbox.pending_count()

    def outbox_stats(self) -> tuple[int, str | None]:
        """(unpublished rows, created_at of the oldest of them or None) — for the metrics."""
        return self.outbox.stats()


def _for_update(tx: Any) -> str:
    """Row lock until the transaction ends (PostgreSQL); SQLite's BEGIN
    IMMEDIATE already serialises every writer."""
    return " FOR UPDATE" if tx.dialect == "postgresql" else ""
