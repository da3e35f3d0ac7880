"""Page tokens of the gRPC listings (intake's ListApplications, payout's
ListTranches): where the last page ended, as an opaque string the caller
hands back for the next page.

A token is the position as compact JSON, URL-safe base64 without padding.
It is not signed: it only says where to go on, and each service checks what
it reads from it (the right listing, the right filters, strings where it
expects strings) before it uses it. Tokens issued before this module existed
are the same strings, so a caller paging across a deploy is not lost.

A token comes from the caller, so ``decode`` trusts nothing about it: a token
longer than ``MAX_TOKEN_LENGTH`` is refused before it is decoded, and any
failure of the decoding (bad base64, bad UTF-8, bad JSON, JSON nested deeper
than the parser's recursion limit) is ``BadPageToken``, which the servers
answer with INVALID_ARGUMENT naming ``page_token`` (docs/security.md).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

MAX_TOKEN_LENGTH = 1024
"""Characters. The positions the services write are under 200 (payout: a
16-character filter fingerprint, a date, a tranche id; intake: a credit code,
a timestamp, an application id)."""


class BadPageToken(ValueError):
    """Not a token ``encode`` made (truncated, altered, made up)."""


def encode(position: Mapping[str, Any]) -> str:
    text = json.dumps(dict(position), separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(token: str) -> dict[str, Any]:
    """The position ``encode`` was given; BadPageToken for anything else."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise BadPageToken("not a page token")
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
    except (ValueError, binascii.Error, UnicodeError, RecursionError):
        # JSONDecodeError and bad base64 are ValueErrors; JSON nested deeper
        # than the parser's recursion limit is a RecursionError
        raise BadPageToken("not a page token") from None
    if not isinstance(data, dict):
        raise BadPageToken("not a page token")
    return data
