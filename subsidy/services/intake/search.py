"""Listings across firms (issue 15): the filters of ListApplications and
ListProposals, checked at the edge, and their page tokens.

A filter left empty matches everything. ``credit_code`` is optional for the
district's staff (REVIEWER, OPERATOR, PORTAL: access.yaml); an ENTERPRISE
caller is bound to its own credit code by the access interceptor (the field
must equal the token's), so its firm-name search only ever looks inside its
own applications and never tells it another firm exists (docs/security.md).

The firm name is matched as a substring, case-folded (``str.casefold``) on
both sides, so SQLite and PostgreSQL answer alike; ``%``, ``_`` and ``\\``
in the query are matched literally (``LIKE ... ESCAPE '\\'``).

A page token carries a fingerprint of the filters it was issued for; handed
back with other filters it is refused naming ``page_token`` (a page of one
search continued as another would skip or repeat rows silently).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import unicodedata
from typing import Any

from subsidy.core import credit_code
from subsidy.core.clauses import CLAIM_BY_KEY, IDS
from subsidy.platform import paging
from subsidy.services.intake.model import PROPOSAL_STATES, STATES, InvalidApplication

MAX_FIRM_NAME = 100
"""Characters of a firm-name query: the registry's names are under 60."""

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


@dataclasses.dataclass(frozen=True)
class Filters:
    credit_code: str = ""
    firm_name: str = ""
    clause: str = ""
    state: str = ""

    @property
    def name_key(self) -> str:
        return self.firm_name.casefold()

    def fingerprint(self) -> str:
        """16 hex digits naming these filters (in the page token)."""
        text = json.dumps(dataclasses.astuple(self), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def like_pattern(text: str) -> str:
    """``%text%`` with LIKE's wildcards and the escape character escaped (ESCAPE '\\')."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _check_credit_code(code: str) -> str:
    if code and not credit_code.is_valid(code):
        raise InvalidApplication("credit_code", f"not a valid unified social credit code: {code[:40]!r}")
    return code


def _check_firm_name(name: str) -> str:
    name = name.strip()
    if len(name) > MAX_FIRM_NAME:
        raise InvalidApplication("firm_name", f"longer than {MAX_FIRM_NAME} characters")
    if any(unicodedata.category(ch)[0] == "C" for ch in name):
        raise InvalidApplication("firm_name", "contains control or unassigned characters")
    return name


def application_filters(code: str = "", firm_name: str = "", clause: str = "", state: str = "") -> Filters:
    """The filters of ListApplications, each checked (InvalidApplication naming the field)."""
    if clause and clause not in IDS:
        raise InvalidApplication("clause", f"not a clause of the policy: {clause[:40]!r} (one of {', '.join(IDS)})")
    if state and state not in STATES:
        raise InvalidApplication("state", f"not an application state: {state[:40]!r}")
    return Filters(_check_credit_code(code), _check_firm_name(firm_name), clause, state)


def proposal_filters(code: str = "", state: str = "") -> Filters:
    if state and state not in PROPOSAL_STATES:
        raise InvalidApplication("state", f"not a proposal state: {state[:40]!r}")
    return Filters(credit_code=_check_credit_code(code), state=state)


def page_size(size: int) -> int:
    if size < 0:
        raise InvalidApplication("page_size", "must not be negative")
    return min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_token(filters: Filters, at: str, last_id: str) -> str:
    return paging.encode({"f": filters.fingerprint(), "t": at, "i": last_id})


def decode_token(filters: Filters, token: str) -> tuple[str, str] | None:
    """Where the previous page ended; None for no token. A token of another
    listing, or of this one with other filters, is refused naming page_token."""
    if not token:
        return None
    try:
        data: Any = paging.decode(token)
        if not isinstance(data.get("t"), str) or not isinstance(data.get("i"), str):
            raise ValueError
    except ValueError:  # BadPageToken is a ValueError
        raise InvalidApplication("page_token", "is not a page token of this listing") from None
    if data.get("f") != filters.fingerprint():
        raise InvalidApplication("page_token", "was issued for other filters; start again without it")
    return data["t"], data["i"]


def search_columns(payload: bytes) -> tuple[str, str, str]:
    """(firm name, its case-folded key, clause id) of a stored subsidy.v1.Application;
    empty strings where the payload has none or is not one (a row no search
    by name or clause finds, rather than a migration that cannot finish)."""
    from google.protobuf.message import DecodeError

    from subsidy.v1 import application_pb2

    try:
        message = application_pb2.Application.FromString(payload)
    except DecodeError:
        return "", "", ""
    key = message.WhichOneof("claim")
    claim = CLAIM_BY_KEY.get(key) if key else None
    name = message.firm.name
    return name, name.casefold(), claim.CLAUSE if claim is not None else ""
