"""The registry port, its values and its adapters: the government data
platform's firm facts, as every service reads them.

Both read the same JSON object per firm::

    {"credit_code": "91310117...", "name": "...", "kinds": ["PLATFORM"],
     "registered_in_district": true, "tax_registered_in_district": true,
     "independent_legal_person": true, "introduced_on": "2022-09-01",
     "contacts": {"email": "...", "phone": "...", "webhook_url": "..."}}

The facts are validated with the contract's own validator
(subsidy.contracts.codec.parse_firm); contacts are kept for notifications and never
logged.

- FileRegistry: ``{"firms": [ {...}, ... ]}`` from a file (demo/registry.json).
- HttpRegistry: ``GET {base}/firms/{credit_code}``: 200 the object above,
  404 unknown firm; timeouts, connection errors and 5xx are retried with
  exponential backoff, then RegistryUnavailable.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import logging
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from subsidy.contracts.codec import BadInput, parse_firm
from subsidy.core.domain import Firm

log = logging.getLogger("subsidy.platform.registry")


@dataclasses.dataclass(frozen=True)
class Contacts:
    """Where notify reaches a firm. Never logged."""

    email: str = ""
    phone: str = ""
    webhook_url: str = ""

    def __repr__(self) -> str:  # keep contact details out of tracebacks and logs
        return "Contacts(<redacted>)"


@dataclasses.dataclass(frozen=True)
class FirmRecord:
    """What the government data platform knows about one firm."""

    firm: Firm
    contacts: Contacts = Contacts()


class RegistryUnavailable(Exception):
    """The government data platform could not be asked (down, slow, broken)."""


class Registry(Protocol):
    """The port: the government data platform's firm facts."""

    def firm(self, credit_code: str) -> FirmRecord | None:
        """The firm, or None if the platform does not know it.
        Raises RegistryUnavailable when the platform cannot be asked."""


class RegistryDataError(ValueError):
    """The registry's data is malformed (a file at start-up, or a platform answer)."""


def firm_record(obj: Any, where: str) -> FirmRecord:
    if not isinstance(obj, dict):
        raise RegistryDataError(f"{where}: a firm must be a JSON object")
    facts = {k: v for k, v in obj.items() if k != "contacts"}
    try:
        firm = parse_firm(facts, "firm")
    except BadInput as exc:
        raise RegistryDataError(f"{where}: {exc}") from None
    raw = obj.get("contacts") or {}
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k, ""), str) for k in ("email", "phone", "webhook_url")):
        raise RegistryDataError(f"{where}: contacts must be an object of email, phone, webhook_url strings")
    return FirmRecord(firm, Contacts(raw.get("email", ""), raw.get("phone", ""), raw.get("webhook_url", "")))


class FileRegistry:
    """Firm facts from a JSON file, read once at start-up (malformed: refuse to start)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RegistryDataError(f"{self.path}: cannot read the registry file: {exc}") from None
        firms = doc.get("firms") if isinstance(doc, dict) else None
        if not isinstance(firms, list):
            raise RegistryDataError(f"{self.path}: firms: must be a list of firm objects")
        self._firms: dict[str, FirmRecord] = {}
        for i, obj in enumerate(firms):
            record = firm_record(obj, f"{self.path}: firms[{i}]")
            code = record.firm.credit_code
            if code in self._firms:
                raise RegistryDataError(f"{self.path}: firms[{i}].credit_code: {code} is listed twice")
            self._firms[code] = record

    def firm(self, credit_code: str) -> FirmRecord | None:
        return self._firms.get(credit_code)

    def __len__(self) -> int:
        return len(self._firms)


class HttpRegistry:
    """JSON over HTTP to the government data platform (stdlib urllib, run in a worker thread)."""

    def __init__(
        self,
        base_url: str,
        timeout: float = 2.0,
        attempts: int = 3,
        backoff: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError("SUBSIDY_REGISTRY_URL: must be an http:// or https:// URL")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self._sleep = sleep

    def _url(self, credit_code: str) -> str:
        return f"{self.base_url}/firms/{urllib.parse.quote(credit_code, safe='')}"

    def firm(self, credit_code: str) -> FirmRecord | None:
        url = self._url(credit_code)
        last = ""
        for attempt in range(1, self.attempts + 1):
            try:
                # The scheme is checked in __init__ (http/https only).
                request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310  # nosec B310
                    body = response.read()
                try:
                    obj = json.loads(body)
                    record = firm_record(obj, f"registry answer for {credit_code}")
                except (ValueError, RegistryDataError) as exc:
                    raise RegistryUnavailable(
                        f"the government data platform answered with invalid data: {exc}"
                    ) from None
                if record.firm.credit_code != credit_code:
                    raise RegistryUnavailable(
                        f"the government data platform answered for {record.firm.credit_code}, not {credit_code}"
                    )
                return record
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return None
                if exc.code < 500 and exc.code != 429:
                    raise RegistryUnavailable(
                        f"the government data platform refused the lookup (HTTP {exc.code})"
                    ) from None
                last = f"HTTP {exc.code}"
            except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as exc:
                reason = getattr(exc, "reason", exc)
                last = (
                    "timed out"
                    if isinstance(reason, (socket.timeout, TimeoutError))
                    else str(reason) or type(exc).__name__
                )
            if attempt < self.attempts:
                delay = self.backoff * 2 ** (attempt - 1)
                log.warning(
                    "registry lookup failed, retrying",
                    extra={
                        "fields": {"credit_code": credit_code, "attempt": attempt, "error": last, "retry_in_s": delay}
                    },
                )
                self._sleep(delay)
        raise RegistryUnavailable(
            f"the government data platform is unavailable ({last} after {self.attempts} attempts); "
            "nothing was stored, try again later"
        )
