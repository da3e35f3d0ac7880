"""Page tokens of the gRPC listings (intake's ListApplications, payout's
ListTranches): where the last page ended, as an opaque string the caller
hands back for the next page.

A token is the position as compact JSON, URL-safe base64 without padding.
It is not signed: it only says where to go on, and each service checks what
it reads from it (the right listing, the right filters, strings where it
expects strings) before it uses it. Tokens issued before this module existed
are the same strings, so a caller paging across a deploy is not lost.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any


class BadPageToken(ValueError):
    """Not a token ``encode`` made (truncated, altered, made up)."""


def encode(position: Mapping[str, Any]) -> str:
    text = json.dumps(dict(position), separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(token: str) -> dict[str, Any]:
    """The position ``encode`` was given; BadPageToken for anything else."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
    except (ValueError, binascii.Error, UnicodeError):  # JSONDecodeError and bad base64 are ValueErrors
        raise BadPageToken("not a page token") from None
    if not isinstance(data, dict):
        raise BadPageToken("not a page token")
    return data
