"""ListRecoveries' use case (subsidy/services/payout/recoveries.py) over a
fake query: the filter and the page size checked naming the field, the
status each filter asks for, paging with a token bound to its filter."""

from __future__ import annotations

import pytest

from subsidy.services.payout import recoveries
from subsidy.services.payout.model import InvalidArgument, RecoveryRow


def row(rid: str, opened_on: str, status: str) -> RecoveryRow:
    return RecoveryRow(
        rid, "A-1", "91310117313Q6C3D6G", "4", (("A-1/tranche-0", 100),), 100, 0, "r", False, opened_on, "rv", status
    )


class Query:
    def __init__(self, rows):
        self.rows = rows
        self.asked = []

    def page(self, status, limit, after):
        self.asked.append((status, limit, after))
        rows = sorted(
            (r for r in self.rows if status is None or r.status == status),
            key=lambda r: (r.opened_on, r.recovery_id),
            reverse=True,
        )
        if after is not None:
            rows = [r for r in rows if (r.opened_on, r.recovery_id) < after]
        return rows[:limit]


ROWS = [row("R-1", "2026-01-01", "OPEN"), row("R-2", "2026-02-01", "RECOVERED"), row("R-3", "2026-02-01", "OPEN")]


def test_each_filter_asks_for_its_status_and_pages_newest_first():
    q = Query(ROWS)
    rows, token = recoveries.list_recoveries(q, "OPEN", 1)
    assert [r.recovery_id for r in rows] == ["R-3"] and token
    assert q.asked[-1] == ("OPEN", 2, None)
    rows, token = recoveries.list_recoveries(q, "OPEN", 1, token)
    assert [r.recovery_id for r in rows] == ["R-1"] and token == ""
    assert q.asked[-1] == ("OPEN", 2, ("2026-02-01", "R-3"))
    assert [r.recovery_id for r in recoveries.list_recoveries(q, "CLOSED")[0]] == ["R-2"]
    assert [r.recovery_id for r in recoveries.list_recoveries(q)[0]] == ["R-3", "R-2", "R-1"]
    recoveries.list_recoveries(q, "ALL", 1000)
    assert q.asked[-1] == (None, 101, None)
    recoveries.list_recoveries(q, "ALL", 0)
    assert q.asked[-1] == (None, 21, None)


@pytest.mark.parametrize(
    "args, field",
    [
        (("open",), "filter"),
        (("OPEN", -1), "page_size"),
        (("OPEN", 0, "%%%"), "page_token"),
        (("OPEN", 0, "e30"), "page_token"),  # {}: not a position
    ],
)
def test_a_bad_request_is_refused_naming_the_field(args, field):
    with pytest.raises(InvalidArgument, match=f"^{field}:"):
        recoveries.list_recoveries(Query(ROWS), *args)


def test_a_token_of_one_filter_is_refused_for_another():
    q = Query(ROWS)
    _, token = recoveries.list_recoveries(q, "ALL", 1)
    with pytest.raises(InvalidArgument, match="^page_token: was issued for another filter"):
        recoveries.list_recoveries(q, "OPEN", 1, token)
