"""Recoveries (追回) across firms (ListRecoveries; the console's finance page,
issue 15): open ones (status OPEN, money still to come back), closed ones
(RECOVERED) or all, newest opened first, paged. A use case over a read-only
query (adapters/recoveries_store.py); no Kafka, gRPC or SQL here.

A page token names the filter it was issued for (a token of the open list
handed to the closed list would skip rows silently, so it is refused naming
page_token) and where the page ended: (opened_on, recovery_id).
"""

from __future__ import annotations

from typing import Protocol

from subsidy.platform import paging
from subsidy.services.payout.model import RECOVERY_OPEN, RECOVERY_RECOVERED, InvalidArgument, RecoveryRow

FILTERS = {"ALL": None, "OPEN": RECOVERY_OPEN, "CLOSED": RECOVERY_RECOVERED}
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


class RecoveryQuery(Protocol):
    def page(self, status: str | None, limit: int, after: tuple[str, str] | None) -> list[RecoveryRow]:
        """Recoveries in ``status`` (None: any), by (opened_on, recovery_id)
        descending, strictly after ``after`` in that order."""


def check(filter_name: str, page_size: int, page_token: str) -> tuple[str | None, int, tuple[str, str] | None]:
    """(status, size, position) of a request, or InvalidArgument naming the field."""
    if filter_name not in FILTERS:
        raise InvalidArgument(f"filter: must be one of {', '.join(FILTERS)}, not {filter_name[:40]!r}")
    if page_size < 0:
        raise InvalidArgument("page_size: must not be negative")
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    after = None
    if page_token:
        try:
            data = paging.decode(page_token)
            if not isinstance(data.get("o"), str) or not isinstance(data.get("i"), str):
                raise ValueError
        except ValueError:
            raise InvalidArgument("page_token: is not a page token of this listing") from None
        if data.get("f") != filter_name:
            raise InvalidArgument("page_token: was issued for another filter; start again without it")
        after = (data["o"], data["i"])
    return FILTERS[filter_name], size, after


def list_recoveries(
    query: RecoveryQuery, filter_name: str = "ALL", page_size: int = 0, page_token: str = ""
) -> tuple[list[RecoveryRow], str]:
    """One page of recoveries and the token of the next ("" on the last)."""
    status, size, after = check(filter_name, page_size, page_token)
    rows = query.page(status, size + 1, after)
    more = len(rows) > size
    rows = rows[:size]
    token = paging.encode({"f": filter_name, "o": rows[-1].opened_on, "i": rows[-1].recovery_id}) if more else ""
    return rows, token
