"""In-memory fakes of the intake ports, and sample applications."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools

from subsidy.core.domain import Firm
from subsidy.platform.outbox import OutboxMessage
from subsidy.platform.registry import Contacts, FirmRecord, RegistryUnavailable
from subsidy.services.intake import handlers, search
from subsidy.services.intake.model import (
    DirectoryEntry,
    DuplicateKey,
    StoredApplication,
)
from subsidy.v1 import application_pb2

FIRM = "91310117MA1K7D2E8N"  # 上海泗泾智造示范工厂有限公司 (demo/registry.json)
PROVIDER = "91310117H2LTFY5G3W"  # 上海松云, listed with cloud services
PLATFORM_NO_CLOUD = "913101170K3H6637X7"  # listed, no cloud services
UNKNOWN_FIRM = "91310117000000019J"


class FakeStore:
    def __init__(self):
        self.rows: dict[str, StoredApplication] = {}
        self.outbox: list[OutboxMessage] = []
        self.race_with: StoredApplication | None = None  # inserted "concurrently" on the next add
        self.payout_events: set[str] = set()

    def get(self, application_id):
        return self.rows.get(application_id)

    def add(self, application, message):
        if self.race_with is not None:
            self.rows[self.race_with.application_id] = self.race_with
            self.race_with = None
        if application.application_id in self.rows:
            raise DuplicateKey(application.application_id)
        self.rows[application.application_id] = application
        self.outbox.append(message)

    def list_by_firm(self, credit_code, limit, after=None):
        return self.search(search.Filters(credit_code=credit_code), limit, after)

    def search(self, filters, limit, after=None):
        def matches(r):
            return (
                (not filters.credit_code or r.credit_code == filters.credit_code)
                and (not filters.clause or r.clause == filters.clause)
                and (not filters.state or r.state == filters.state)
                and filters.name_key in r.firm_name.casefold()
            )

        rows = sorted(
            (r for r in self.rows.values() if matches(r)),
            key=lambda r: (r.received_at, r.application_id),
            reverse=True,
        )
        if after is not None:
            rows = [r for r in rows if (r.received_at, r.application_id) < after]
        return rows[:limit]

    def apply_decision(self, application_id, decision_id, decision, at, replaces, state_of):
        row = self.rows.get(application_id)
        if row is None:
            return "unknown"
        if row.decision_id == decision_id:
            return "replayed"
        if not replaces(row.decision, decision):
            return "superseded"
        self.rows[application_id] = dataclasses.replace(
            row,
            state=state_of(decision, row.grant),
            decision=decision,
            decision_id=decision_id,
            decided_at=at,
        )
        return "applied"

    def apply_payout_event(self, event_id, application_id, fold, at, state_of):
        if event_id in self.payout_events:
            return "replayed"
        row = self.rows.get(application_id)
        if row is None:
            return "unknown"
        grant = fold(row.grant)
        self.rows[application_id] = dataclasses.replace(row, grant=grant, state=state_of(row.decision, grant))
        self.payout_events.add(event_id)
        return "applied"


class FakeRegistry:
    def __init__(self, firms=(), down=False):
        self.firms = {f.credit_code: FirmRecord(f, Contacts("x@example.cn", "+86-21-0000", "")) for f in firms}
        self.down = down
        self.calls = 0

    def firm(self, credit_code):
        self.calls += 1
        if self.down:
            raise RegistryUnavailable("the government data platform is unavailable (test)")
        return self.firms.get(credit_code)


class FakeDirectory:
    def __init__(self, years=None):
        self._years = years or {}

    def years(self):
        return sorted(self._years)

    def entries(self, year):
        return list(self._years.get(year, ()))


REGISTERED = Firm(
    credit_code=FIRM,
    name="上海泗泾智造示范工厂有限公司",
    kinds=("INDUSTRIAL", "SME"),
    registered_in_district=True,
    tax_registered_in_district=True,
    independent_legal_person=True,
)

DIRECTORY = {
    2024: [
        DirectoryEntry(PROVIDER, "上海松云工业互联网科技有限公司", "PLATFORM", True),
        DirectoryEntry(PLATFORM_NO_CLOUD, "上海标联信息技术有限公司", "PLATFORM", False),
    ],
    2025: [DirectoryEntry(PROVIDER, "上海松云工业互联网科技有限公司", "PLATFORM", True)],
}


def clock(start=dt.datetime(2025, 3, 1, 8, 0, tzinfo=dt.UTC)):
    ticks = itertools.count()
    return lambda: start + dt.timedelta(seconds=next(ticks))


def deps(store=None, registry=None, directory=None):
    traces = (f"{i:032x}" for i in itertools.count(1))
    return handlers.Deps(
        store=store if store is not None else FakeStore(),
        registry=registry if registry is not None else FakeRegistry([REGISTERED]),
        directory=directory if directory is not None else FakeDirectory(DIRECTORY),
        clock=clock(),
        new_trace_id=lambda: next(traces),
    )


def rent_application(application_id="T-0001", credit_code=FIRM, **firm):
    return application_pb2.Application(
        application_id=application_id,
        submitted_on="2025-02-20",
        firm=application_pb2.Firm(credit_code=credit_code, **firm),
        rent=application_pb2.RentClaim(
            recognized_key_platform=True, lease_start="2024-09-01", lease_end="2025-08-31", rent_paid_fen=480000000
        ),
    )


def cloud_application(application_id="T-C-01", provider=PROVIDER, year=2024, claimed=False):
    return application_pb2.Application(
        application_id=application_id,
        submitted_on="2025-02-20",
        firm=application_pb2.Firm(credit_code=FIRM),
        cloud_adoption=application_pb2.CloudAdoptionClaim(
            provider_credit_code=provider,
            provider_listed_in_directory=claimed,
            service_year=year,
            spend_fen=1800000,
        ),
    )
