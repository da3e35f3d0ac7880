"""No tests here: payout's unit of work in memory (ports.py), for the use
cases' tests (test_handlers.py), in the manner of cosmicpython's
FakeUnitOfWork: the same tables as dicts and lists, ``commits`` counted.

It keeps the promise the SQL store keeps (adapters/store.py): what a unit of
work wrote is kept only when it commits. ``__enter__`` takes a copy of the
tables, and leaving without ``commit()`` puts the copy back, as a ROLLBACK
would; so a test of a refusal sees that nothing was written."""

from __future__ import annotations

import copy
import dataclasses

from subsidy.services.payout.model import CANCELLED, DUE, HELD, PAID, SCHEDULED, GrantState, InboxRow, UsageRow


class FakeFirms:
    def __init__(self):
        self.rows: set[str] = set()
        #: Every lock taken, in order (a firm locked twice in one unit of work appears twice).
        self.locked: list[str] = []

    def lock(self, credit_code, at):
        self.rows.add(credit_code)
        self.locked.append(credit_code)


class FakeInbox:
    def __init__(self):
        self.rows: dict[str, tuple[str, str]] = {}  # decision id -> (application id, result)
        self.firms: dict[str, str] = {}  # decision id -> credit code

    def has(self, decision_id):
        return decision_id in self.rows

    def get(self, decision_id):
        if decision_id not in self.rows:
            return None
        application_id, result = self.rows[decision_id]
        return InboxRow(decision_id, application_id, self.firms[decision_id], result)

    def add(self, decision, result, at):
        assert decision.decision_id not in self.rows, "the inbox's primary key"
        self.rows[decision.decision_id] = (decision.application_id, result)
        self.firms[decision.decision_id] = decision.credit_code


class FakeGrants:
    def __init__(self):
        self.rows: dict[str, object] = {}  # application id -> GrantRow (as written: no tranches)

    def is_applied(self, application_id):
        return application_id in self.rows

    def trace_id(self, application_id):
        grant = self.rows.get(application_id)
        return grant.trace_id if grant is not None else ""

    def add(self, grant, submitted_on, at):
        assert grant.application_id not in self.rows, "the grants' primary key"
        self.rows[grant.application_id] = dataclasses.replace(grant, tranches=(), submitted_on=submitted_on.isoformat())

    def replace(self, grant, at):
        old = self.rows[grant.application_id]
        if old.state != GrantState.RESERVED:
            return
        self.rows[grant.application_id] = dataclasses.replace(
            old,
            decision_id=grant.decision_id,
            outcome=grant.outcome,
            policy_version=grant.policy_version,
            max_award_fen=grant.max_award_fen,
            granted_fen=grant.granted_fen,
            decision_year=grant.decision_year,
            reasons=grant.reasons,
            uses=grant.uses,
            tranche_shares_percent=grant.tranche_shares_percent,
        )

    def by_decision(self, decision_id):
        return next((g for g in self.rows.values() if g.decision_id == decision_id), None)

    def set_state(self, application_id, state, notice_id, day, reason, at):
        day_field = "payable_on" if state == GrantState.PAYABLE else "withdrawn_on"
        self.rows[application_id] = dataclasses.replace(
            self.rows[application_id], state=state, notice_id=notice_id, withdraw_reason=reason, **{day_field: day}
        )

    def of_firm(self, credit_code):
        return sorted(
            (g for g in self.rows.values() if g.credit_code == credit_code),
            key=lambda g: (g.decision_year, g.application_id),
        )

    def get(self, application_id):
        return self.rows.get(application_id)

    def declare_void(self, application_id, at):
        self.rows[application_id] = dataclasses.replace(self.rows[application_id], void=True)

    def add_cap_released(self, application_id, fen, at):
        grant = self.rows[application_id]
        self.rows[application_id] = dataclasses.replace(grant, cap_released_fen=grant.cap_released_fen + fen)


class FakeTranches:
    def __init__(self):
        self.rows: dict[str, object] = {}  # tranche id -> TrancheRow

    def get(self, tranche_id):
        return self.rows.get(tranche_id)

    def add(self, tranche, at):
        assert tranche.tranche_id not in self.rows, "the tranches' primary key"
        self.rows[tranche.tranche_id] = tranche

    def _set(self, tranche_id, **changes):
        self.rows[tranche_id] = dataclasses.replace(self.rows[tranche_id], **changes)
        return self.rows[tranche_id]

    def firms_due(self, day):
        return sorted({t.credit_code for t in self.rows.values() if t.status == SCHEDULED and t.due_on <= day})

    def mark_due(self, credit_code, day, at):
        due = [
            t.tranche_id
            for t in self.rows.values()
            if t.credit_code == credit_code and t.status == SCHEDULED and t.due_on <= day
        ]
        return [self._set(tranche_id, status=DUE) for tranche_id in due]

    def mark_paid(self, tranche_id, paid_on, payment_id, at):
        self._set(tranche_id, status=PAID, paid_on=paid_on, payment_id=payment_id)

    def mark_cancelled(self, tranche_id, cancelled_on, reason, at):
        self._set(tranche_id, status=CANCELLED)
        #: The reason each cancelled tranche was given (the SQL store keeps it in cancel_reason).
        self.cancel_reasons = {**getattr(self, "cancel_reasons", {}), tranche_id: reason}

    def firms_held(self):
        return sorted({t.credit_code for t in self.rows.values() if t.status == HELD})

    def of_firm_in(self, credit_code, statuses, due_by=""):
        return sorted(
            (
                t
                for t in self.rows.values()
                if t.credit_code == credit_code and t.status in statuses and (not due_by or t.due_on <= due_by)
            ),
            key=lambda t: (t.due_on, t.tranche_id),
        )

    def mark_held(self, tranche_id, held_on, hold_until, reason, at):
        t = self.rows[tranche_id]
        self._set(
            tranche_id,
            status=HELD,
            held_on=held_on,
            hold_until=hold_until,
            hold_reason=reason,
            hold_count=t.hold_count + 1,
        )

    def mark_released(self, tranche_id, at):
        if self.rows[tranche_id].status == HELD:
            self._set(tranche_id, status=DUE)

    def of_application(self, application_id):
        return sorted((t for t in self.rows.values() if t.application_id == application_id), key=lambda t: t.number)

    def of_firm(self, credit_code):
        return sorted(
            (t for t in self.rows.values() if t.credit_code == credit_code), key=lambda t: (t.application_id, t.number)
        )

    def page(self, query, limit):
        rows = [
            t
            for t in self.rows.values()
            if (not query.due_from or t.due_on >= query.due_from)
            and (not query.due_to or t.due_on <= query.due_to)
            and (not query.statuses or t.status in query.statuses)
            and (query.after is None or (t.due_on, t.tranche_id) > query.after)
        ]
        return sorted(rows, key=lambda t: (t.due_on, t.tranche_id))[:limit]

    def of_budget_year(self, year):
        return sorted((t for t in self.rows.values() if t.budget_year == year), key=lambda t: (t.due_on, t.tranche_id))


class FakeUsage:
    def __init__(self):
        self.rows: dict[tuple[str, str], UsageRow] = {}  # (credit code, scope) -> row

    def used_fen(self, credit_code, scope):
        row = self.rows.get((credit_code, scope))
        return row.used_fen if row else 0

    def add(self, credit_code, scope, limit, cap_fen, granted_fen):
        self.rows[(credit_code, scope)] = UsageRow(
            scope, limit, self.used_fen(credit_code, scope) + granted_fen, cap_fen
        )

    def release(self, credit_code, scope, fen):
        row = self.rows[(credit_code, scope)]
        self.rows[(credit_code, scope)] = dataclasses.replace(row, used_fen=max(0, row.used_fen - fen))

    def of_firm(self, credit_code):
        return [row for (code, scope), row in sorted(self.rows.items()) if code == credit_code]


class FakePayments:
    def __init__(self):
        self.rows: dict[str, object] = {}  # payment id -> Payment

    def has(self, payment_id):
        return payment_id in self.rows

    def add(self, payment, at):
        assert payment.payment_id not in self.rows, "the payments' primary key"
        self.rows[payment.payment_id] = payment


class FakeFacts:
    def __init__(self):
        self.rows: dict[str, object] = {}  # credit code -> FirmStanding
        self.names: dict[str, str] = {}

    def get(self, credit_code):
        return self.rows.get(credit_code)

    def put(self, standing, name, at):
        self.rows[standing.credit_code] = standing
        self.names[standing.credit_code] = name


class FakeRecoveries:
    def __init__(self):
        self.rows: dict[str, object] = {}  # recovery id -> RecoveryRow

    def get(self, recovery_id):
        return self.rows.get(recovery_id)

    def add(self, recovery, at):
        assert recovery.recovery_id not in self.rows, "the recoveries' primary key"
        self.rows[recovery.recovery_id] = recovery

    def claimed_fen(self, application_id):
        out: dict[str, int] = {}
        for r in self.rows.values():
            if r.application_id == application_id:
                for tranche_id, fen in r.allocations:
                    out[tranche_id] = out.get(tranche_id, 0) + fen
        return out

    def of_firm(self, credit_code):
        return sorted(
            (r for r in self.rows.values() if r.credit_code == credit_code),
            key=lambda r: (r.application_id, r.opened_on, r.recovery_id),
        )

    def add_recovered(self, recovery_id, fen, status, at):
        r = self.rows[recovery_id]
        self.rows[recovery_id] = dataclasses.replace(r, recovered_fen=r.recovered_fen + fen, status=status)


class FakeConfirmations:
    def __init__(self):
        self.rows: dict[str, object] = {}

    def has(self, confirmation_id):
        return confirmation_id in self.rows

    def add(self, confirmation, at):
        assert confirmation.confirmation_id not in self.rows, "the confirmations' primary key"
        self.rows[confirmation.confirmation_id] = confirmation


class FakeOutbox:
    def __init__(self):
        self.messages: list = []  # in the order written, once per event id

    def add(self, messages, at):
        seen = {m.event_id for m in self.messages}
        for m in messages:
            if m.event_id not in seen:
                self.messages.append(m)
                seen.add(m.event_id)

    @property
    def event_ids(self):
        return [m.event_id for m in self.messages]


_TABLES = (
    "firms",
    "inbox",
    "grants",
    "tranches",
    "usage",
    "payments",
    "outbox",
    "facts",
    "recoveries",
    "confirmations",
)


class FakeUnitOfWork:
    def __init__(self):
        self.firms = FakeFirms()
        self.inbox = FakeInbox()
        self.grants = FakeGrants()
        self.tranches = FakeTranches()
        self.usage = FakeUsage()
        self.payments = FakePayments()
        self.outbox = FakeOutbox()
        self.facts = FakeFacts()
        self.recoveries = FakeRecoveries()
        self.confirmations = FakeConfirmations()
        self.commits = 0
        self._before: dict | None = None

    def __enter__(self):
        assert self._before is None, "a unit of work inside a unit of work"
        self._before = copy.deepcopy({name: getattr(self, name) for name in _TABLES})
        return self

    def commit(self):
        assert self._before is not None, "commit outside a unit of work"
        self._before = None
        self.commits += 1

    def __exit__(self, exc_type, exc, tb):
        if self._before is not None:  # not committed: as a rollback, nothing of it stays
            for name, table in self._before.items():
                setattr(self, name, table)
            self._before = None
