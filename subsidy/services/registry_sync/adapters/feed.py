"""The data platform's change feed over HTTP (docs/data-platform.md), stdlib urllib:

- ``GET {base}/changes?cursor=<c>&limit=<n>`` → ``{"changes": [...],
  "next_cursor": "...", "high_water": <sequence>}``; 410 Gone: the cursor
  is no longer known (``CursorGone``);
- ``GET {base}/snapshot`` → ``{"firms": [...], "cursor": "...", "sequence": <n>}``.

Every request carries ``Authorization: Bearer <token>`` (the token from
``SUBSIDY_REGISTRY_SYNC_FEED_TOKEN_FILE``, never logged) and has a timeout.
Timeouts, connection errors, 5xx and 429 are retried with exponential
backoff (``Retry-After`` honoured up to the cap) ``attempts`` times, then
``FeedUnavailable``; 401/403 and other 4xx are not retried. An answer that is
not a page (not JSON, no ``next_cursor``) is ``FeedBroken``: nothing of it is used.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from subsidy.services.registry_sync.ports import CursorGone, FeedBroken, FeedUnavailable, Page, RawChange, Snapshot

log = logging.getLogger("subsidy.services.registry_sync.feed")

MAX_BODY_BYTES = 64 << 20


class HttpFeed:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        attempts: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError("SUBSIDY_REGISTRY_SYNC_FEED_URL: must be an http:// or https:// URL")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"HttpFeed({self.base_url!r}, token=<redacted>)"

    def _get(self, path: str, query: dict[str, str]) -> Any:
        url = f"{self.base_url}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        last = ""
        for attempt in range(1, self.attempts + 1):
            delay = self.backoff * 2 ** (attempt - 1)
            try:
                request = urllib.request.Request(url, headers=headers)  # noqa: S310 - scheme checked
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310  # nosec B310
                    body = response.read(MAX_BODY_BYTES + 1)
                return decode_body(path, body)
            except urllib.error.HTTPError as exc:
                if exc.code == 410:
                    raise CursorGone(f"{path}: HTTP 410 Gone") from None
                if exc.code in (401, 403):
                    raise FeedUnavailable(
                        f"{path}: the data platform refused our credentials (HTTP {exc.code}); "
                        "check SUBSIDY_REGISTRY_SYNC_FEED_TOKEN_FILE"
                    ) from None
                if exc.code < 500 and exc.code != 429:
                    raise FeedUnavailable(f"{path}: the data platform refused the request (HTTP {exc.code})") from None
                last = f"HTTP {exc.code}"
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
                if retry_after and retry_after.isdigit():
                    delay = max(delay, float(retry_after))
            except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                last = (
                    "timed out"
                    if isinstance(reason, (socket.timeout, TimeoutError))
                    else str(reason) or type(exc).__name__
                )
            if attempt < self.attempts:
                delay = min(delay, self.max_backoff)
                log.warning(
                    "data platform request failed, retrying",
                    extra={"fields": {"path": path, "attempt": attempt, "error": last, "retry_in_s": delay}},
                )
                self._sleep(delay)
        raise FeedUnavailable(f"{path}: the data platform is unavailable ({last} after {self.attempts} attempts)")

    def changes(self, cursor: str, limit: int) -> Page:
        query = {"limit": str(limit)}
        if cursor:
            query["cursor"] = cursor
        doc = self._get("/changes", query)
        if not isinstance(doc, dict):
            raise FeedBroken("/changes: the answer is not a JSON object")
        changes, next_cursor, high_water = doc.get("changes"), doc.get("next_cursor"), doc.get("high_water", 0)
        if not isinstance(changes, list):
            raise FeedBroken("/changes: changes: must be a list")
        if not isinstance(next_cursor, str) or not next_cursor:
            raise FeedBroken("/changes: next_cursor: must be a non-empty string")
        if type(high_water) is not int or high_water < 0:
            raise FeedBroken(f"/changes: high_water: must be a whole number >= 0, got {high_water!r}")
        return Page([_raw(c) for c in changes], next_cursor, high_water)

    def snapshot(self) -> Snapshot:
        doc = self._get("/snapshot", {})
        if not isinstance(doc, dict):
            raise FeedBroken("/snapshot: the answer is not a JSON object")
        firms, cursor, sequence = doc.get("firms"), doc.get("cursor"), doc.get("sequence")
        if not isinstance(firms, list):
            raise FeedBroken("/snapshot: firms: must be a list")
        if not isinstance(cursor, str) or not cursor:
            raise FeedBroken("/snapshot: cursor: must be a non-empty string")
        if type(sequence) is not int or sequence < 0:
            raise FeedBroken(f"/snapshot: sequence: must be a whole number >= 0, got {sequence!r}")
        return Snapshot([_raw(f) for f in firms], cursor, sequence)


def decode_body(path: str, body: bytes) -> Any:
    """The platform's answer as JSON, or FeedBroken: too large, not JSON, or
    nested deeper than the parser's recursion limit (a RecursionError, not a
    ValueError)."""
    if len(body) > MAX_BODY_BYTES:
        raise FeedBroken(f"{path}: the answer is larger than {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise FeedBroken(f"{path}: the answer is not JSON: {exc}") from None
    except RecursionError:
        raise FeedBroken(f"{path}: the answer is not JSON: nested too deep") from None


def _raw(obj: Any) -> RawChange:
    try:
        raw = json.dumps(obj, ensure_ascii=False, sort_keys=True).encode()
    except UnicodeEncodeError:
        # A lone surrogate (JSON "\\udXXX") has no UTF-8 form: the bytes kept for
        # the dead letter escape it; model.check_text refuses the change.
        raw = json.dumps(obj, ensure_ascii=True, sort_keys=True).encode()
    return RawChange(obj, raw)
