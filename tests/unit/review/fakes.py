"""No tests here: review's unit of work in memory (ports.py), for the use
cases' tests (test_handlers.py). What a unit of work wrote is kept only when
it commits: ``__enter__`` copies the tables, leaving without ``commit()``
puts the copy back (a ROLLBACK), so a refusal's test sees nothing written."""

from __future__ import annotations

import copy
import dataclasses

from subsidy.core.workflow.notice import NoticePeriod
from subsidy.services.review.model import AuditEntry


class FakeItems:
    def __init__(self):
        self.rows = {}  # item id -> (item, deadline, trace id)

    def get(self, item_id):
        row = self.rows.get(item_id)
        return row[0] if row else None

    def add(self, item, deadline, trace_id, at):
        if item.item_id in self.rows:
            return False
        self.rows[item.item_id] = (item, deadline, trace_id)
        return True

    def update(self, item, at):
        _, deadline, trace = self.rows[item.item_id]
        self.rows[item.item_id] = (item, deadline, trace)

    def trace_id(self, item_id):
        return self.rows[item_id][2]

    def page(self, *, clause, reason, statuses, assignee, overdue_on, after, limit):
        out = []
        for item, deadline, _ in sorted(self.rows.values(), key=lambda r: (r[0].queued_on.isoformat(), r[0].item_id)):
            if clause and item.decision.clause != clause:
                continue
            if reason and reason not in item.reasons:
                continue
            if statuses and item.status not in statuses:
                continue
            if assignee and item.assignee != assignee:
                continue
            if overdue_on is not None and (item.closed or not deadline < overdue_on):
                continue
            if after is not None and (item.queued_on.isoformat(), item.item_id) <= after:
                continue
            out.append((item, deadline))
        return out[:limit]


class FakeApplications:
    def __init__(self):
        self.rows = {}

    def put(self, application_id, credit_code, firm_name, payload, at):
        self.rows.setdefault(application_id, (firm_name, payload))

    def get(self, application_id):
        return self.rows.get(application_id)


class FakeGrants:
    def __init__(self):
        self.rows = {}  # decision id -> GrantRow

    def add(self, grant, at):
        if grant.decision_id in self.rows:
            return False
        self.rows[grant.decision_id] = grant
        return True

    def pool(self):
        return sorted(
            (g for g in self.rows.values() if not g.notice_id and g.granted_fen > 0 and g.state == "RESERVED"),
            key=lambda g: (g.credit_code, g.decision_id),
        )

    def of_firm(self, credit_code):
        return sorted(
            (g for g in self.rows.values() if g.credit_code == credit_code),
            key=lambda g: (g.decision_year, g.decision_id),
        )

    def set_state(self, decision_id, state):
        if decision_id in self.rows:
            self.rows[decision_id] = dataclasses.replace(self.rows[decision_id], state=state)

    def mark_noticed(self, decision_ids, notice_id):
        for d in decision_ids:
            if not self.rows[d].notice_id:
                self.rows[d] = dataclasses.replace(self.rows[d], notice_id=notice_id)


class FakeNotices:
    def __init__(self):
        self.rows = {}

    def add(self, notice, at):
        assert notice.notice_id not in self.rows
        self.rows[notice.notice_id] = notice

    def get(self, notice_id):
        return self.rows.get(notice_id)

    def count(self):
        return len(self.rows)

    def page(self, after, limit):
        return [self.rows[k] for k in sorted(self.rows) if k > (after or "")][:limit]


class FakeLines:
    def __init__(self, notices):
        self.rows = {}
        self.notices = notices

    def add(self, line):
        assert line.line_id not in self.rows
        assert all(x.decision_id != line.decision_id for x in self.rows.values()), "decision_id is unique"
        self.rows[line.line_id] = line

    def get(self, line_id):
        return self.rows.get(line_id)

    def of_notice(self, notice_id):
        return sorted(
            (x for x in self.rows.values() if x.notice_id == notice_id), key=lambda x: (x.credit_code, x.line_id)
        )

    def set_status(self, line_id, status, payable_on, at):
        self.rows[line_id] = dataclasses.replace(self.rows[line_id], status=status, payable_on=payable_on)

    def waiting(self, status, ended_before):
        return sorted(
            (
                x
                for x in self.rows.values()
                if x.status == status and self.notices.rows[x.notice_id].last_day < ended_before
            ),
            key=lambda x: x.line_id,
        )


class FakeObjections:
    def __init__(self):
        self.rows = {}  # id -> (objection, notice id, credit code, objector)

    def add(self, objection, notice_id, credit_code, objector_credit_code):
        assert objection.objection_id not in self.rows
        self.rows[objection.objection_id] = (objection, notice_id, credit_code, objector_credit_code)

    def get(self, objection_id):
        return self.rows.get(objection_id)

    def update(self, objection):
        _, n, c, o = self.rows[objection.objection_id]
        self.rows[objection.objection_id] = (objection, n, c, o)

    def of_line(self, line_id):
        return sorted((r[0] for r in self.rows.values() if r[0].line_id == line_id), key=lambda o: o.objection_id)


class FakeAudit:
    def __init__(self):
        self.rows: list[AuditEntry] = []

    def add(self, subject, role, action, target, before, after, at):
        self.rows.append(AuditEntry(len(self.rows) + 1, at, subject, role, action, target, before, after))

    def page(self, target, after, limit):
        return [e for e in self.rows if e.target == target and e.sequence > after][:limit]


class FakeOutbox:
    def __init__(self):
        self.rows = {}  # event id -> OutboxMessage, in insertion order

    def add(self, messages, at):
        for m in messages:
            self.rows.setdefault(m.event_id, m)


class FakeUnitOfWork:
    def __init__(self):
        self.items = FakeItems()
        self.applications = FakeApplications()
        self.grants = FakeGrants()
        self.notices = FakeNotices()
        self.lines = FakeLines(self.notices)
        self.objections = FakeObjections()
        self.audit = FakeAudit()
        self.outbox = FakeOutbox()
        self.commits = 0
        self._saved = None

    _TABLES = ("items", "applications", "grants", "notices", "objections", "audit", "outbox")

    def __enter__(self):
        assert self._saved is None, "a unit of work is already open"
        self._saved = {name: copy.deepcopy(getattr(self, name).rows) for name in self._TABLES}
        self._saved["lines"] = copy.deepcopy(self.lines.rows)
        return self

    def commit(self):
        self.commits += 1
        self._saved = None

    def __exit__(self, *exc):
        if self._saved is not None:
            for name, rows in self._saved.items():
                getattr(self, name).rows = rows
            self._saved = None

    def snapshot(self):
        """Everything the tables hold, to compare before and after a refusal."""
        return copy.deepcopy({name: getattr(self, name).rows for name in (*self._TABLES, "lines")})


__all__ = ["FakeUnitOfWork", "NoticePeriod"]
