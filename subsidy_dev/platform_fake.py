"""FakeDataPlatform: a TEST DOUBLE of the government data platform (政务数据平台),
for the tests and ``make run`` — never the real platform, never shipped.

A real HTTP server (stdlib ``http.server``, a thread) speaking the contract
of docs/data-platform.md over one in-memory state:

- ``GET /changes?cursor=<c>&limit=<n>``: the change feed (cursor ``v1.<seq>``
  = after that sequence; empty = from the start); 410 Gone for a cursor
  older than what it still keeps (``forget_history``);
- ``GET /snapshot``: every firm's facts in effect today, with the cursor to go on from;
- ``GET /firms/{credit_code}``: the registry contract of
  subsidy/platform/registry.py (HttpRegistry) over the same state;
- with a token, every request needs ``Authorization: Bearer <token>``
  (``/firms`` only when ``firms_need_token``), else 401.

Scripted changes (``move_out``, ``certify``, ``change``, ...), malformed
records (``append_raw``) and injected failures (``fail``: a status such as
500 or 503, a delay longer than a client's timeout, a body that is not
JSON; ``down``: 503 until ``up``) are methods, and the same over HTTP for a
separate process (``POST /_fake/...``, the token required): what the dev
stack and the demo use. Its own fold of the changes is deliberately simple
and separate from registry-sync's (a double shares no code with what it tests).

    python -m subsidy_dev.platform_fake --port 8790 --fixtures demo/registry.json --token-file var/platform.token
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime as dt
import http.server
import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHINA = dt.timezone(dt.timedelta(hours=8))
CURSOR_PREFIX = "v1."
_BASE_FIELDS = (
    "credit_code",
    "name",
    "kinds",
    "registered_in_district",
    "tax_registered_in_district",
    "independent_legal_person",
    "introduced_on",
)


def _today_in_songjiang() -> dt.date:
    return dt.datetime.now(CHINA).date()


@dataclasses.dataclass
class _Failure:
    status: int = 0  # an HTTP status to answer with
    delay_s: float = 0.0  # sleep before answering (a timeout, for a client with a shorter one)
    garbage: bool = False  # 200 with a body that is not JSON
    path: str = ""  # only requests whose path starts with this ("" any)
    times: int = 1


class FakeDataPlatform:
    """The test double (see the module doc). ``firms``: firm objects as in
    demo/registry.json; each becomes a FIRM change of the feed."""

    def __init__(
        self,
        firms: list[dict[str, Any]] | None = None,
        *,
        token: str = "",
        firms_need_token: bool = False,
        today: Callable[[], dt.date] = _today_in_songjiang,
        fixtures_on: str = "2025-01-01",
        journal: str | Path | None = None,
    ):
        self.token = token
        self.firms_need_token = firms_need_token
        self.today = today
        self._lock = threading.Lock()
        #: The feed: (position, entry) — entry as served (a malformed one may lack a sequence).
        self._log: list[tuple[int, Any]] = []
        self._position = 0
        self._forgotten_upto = 0
        self._failures: list[_Failure] = []
        self._down = False
        #: Entries served in the snapshot as they are (malformed on purpose).
        self.snapshot_extra: list[Any] = []
        self.requests: list[str] = []
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        #: With a journal file (the dev stack's), the feed survives a restart: its
        #: sequences go on where they were, as a real platform's do.
        self._journal = Path(journal) if journal else None
        if self._journal is not None and self._journal.exists():
            for line in self._journal.read_text(encoding="utf-8").splitlines():
                position, entry = json.loads(line)
                self._log.append((position, entry))
                self._position = max(self._position, position)
            return
        for firm in firms or []:
            self.change("FIRM", firm["credit_code"], _firm_data(firm), fixtures_on)

    def _append(self, position: int, entry: Any) -> None:
        """Under the lock."""
        self._log.append((position, entry))
        if self._journal is not None:
            with self._journal.open("a", encoding="utf-8") as out:
                out.write(json.dumps([position, entry], ensure_ascii=False) + "\n")

    @classmethod
    def from_file(cls, path: str | Path, **options: Any) -> FakeDataPlatform:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(doc["firms"], **options)

    # -- the feed, scripted -----------------------------------------------------------------

    def change(self, kind: str, credit_code: str, data: Any, effective_on: str | dt.date | None = None) -> int:
        """Append a change; its sequence."""
        with self._lock:
            self._position += 1
            day = effective_on or self.today()
            entry = {
                "sequence": self._position,
                "credit_code": credit_code,
                "kind": kind,
                "effective_on": day.isoformat() if isinstance(day, dt.date) else day,
                "recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                "data": copy.deepcopy(data),
            }
            self._append(self._position, entry)
            return self._position

    def append_raw(self, entry: Any, *, with_sequence: bool = True) -> int:
        """Append an entry as given (malformed on purpose); with ``with_sequence``
        and a dict, its ``sequence`` is set to its position."""
        with self._lock:
            self._position += 1
            entry = copy.deepcopy(entry)
            if with_sequence and isinstance(entry, dict):
                entry["sequence"] = self._position
            self._append(self._position, entry)
            return self._position

    def move_out(self, credit_code: str, effective_on: str | dt.date | None = None) -> list[int]:
        """The firm's registration and tax registration leave the district."""
        return [
            self.change("REGISTRATION", credit_code, {"in_district": False}, effective_on),
            self.change("TAX_REGISTRATION", credit_code, {"in_district": False}, effective_on),
        ]

    def move_back(self, credit_code: str, effective_on: str | dt.date | None = None) -> list[int]:
        return [
            self.change("REGISTRATION", credit_code, {"in_district": True}, effective_on),
            self.change("TAX_REGISTRATION", credit_code, {"in_district": True}, effective_on),
        ]

    def certify(
        self,
        credit_code: str,
        kind: str = "DCMM_LEVEL",
        level: str = "3",
        reference: str = "DCMM-2026-0001",
        awarded_on: str | dt.date | None = None,
        issuer: str = "中国电子信息行业联合会",
    ) -> int:
        """A recognition or certification awarded (default: DCMM level 3)."""
        day = awarded_on or self.today()
        day_text = day.isoformat() if isinstance(day, dt.date) else day
        data = {"kind": kind, "level": level, "reference": reference, "awarded_on": day_text, "issuer": issuer}
        return self.change("RECOGNITION_AWARDED", credit_code, data, day_text)

    def forget_history(self) -> None:
        """Compaction on the platform: every cursor before now is answered 410 Gone."""
        with self._lock:
            self._forgotten_upto = self._position

    # -- failures ---------------------------------------------------------------------------

    def fail(
        self, *, status: int = 0, delay_s: float = 0.0, garbage: bool = False, path: str = "", times: int = 1
    ) -> None:
        """The next ``times`` requests (to ``path``…) fail as said."""
        with self._lock:
            self._failures.append(_Failure(status, delay_s, garbage, path, times))

    def down(self) -> None:
        """Every request answers 503 until ``up``."""
        self._down = True

    def up(self) -> None:
        self._down = False

    def _take_failure(self, path: str) -> _Failure | None:
        with self._lock:
            for failure in self._failures:
                if path.startswith(failure.path):
                    failure.times -= 1
                    if failure.times <= 0:
                        self._failures.remove(failure)
                    return failure
        return None

    # -- the state --------------------------------------------------------------------------

    @property
    def high_water(self) -> int:
        return self._position

    def latest_sequence(self, credit_code: str) -> int:
        """The sequence of the firm's latest change in effect today (0: none)."""
        today = self.today().isoformat()
        with self._lock:
            log = list(self._log)
        return max(
            (
                position
                for position, entry in log
                if isinstance(entry, dict)
                and entry.get("sequence") == position
                and entry.get("credit_code") == credit_code
                and isinstance(entry.get("effective_on"), str)
                and entry["effective_on"] <= today
            ),
            default=0,
        )

    def state(self) -> dict[str, dict[str, Any]]:
        """Every firm's facts in effect today (changes dated ahead are not yet in them)."""
        today = self.today().isoformat()
        firms: dict[str, dict[str, Any]] = {}
        with self._lock:
            log = list(self._log)
        for position, entry in log:
            if not isinstance(entry, dict) or entry.get("sequence") != position:
                continue
            if not isinstance(entry.get("effective_on"), str) or entry["effective_on"] > today:
                continue
            _apply(firms, entry)
        return firms

    def page(self, cursor: str, limit: int) -> tuple[int, dict[str, Any]]:
        if cursor == "":
            after = 0
        elif cursor.startswith(CURSOR_PREFIX) and cursor[len(CURSOR_PREFIX) :].isdigit():
            after = int(cursor[len(CURSOR_PREFIX) :])
        else:
            return 400, {"error": "bad_cursor", "message": f"cursor: not a cursor of this feed: {cursor!r}"}
        with self._lock:
            if after < self._forgotten_upto:
                return 410, {
                    "error": "cursor_gone",
                    "message": "the feed no longer holds changes after this cursor: take GET /snapshot",
                }
            entries = [(p, e) for p, e in self._log if p > after][:limit]
            high_water = self._position
        next_cursor = f"{CURSOR_PREFIX}{entries[-1][0]}" if entries else (cursor or f"{CURSOR_PREFIX}0")
        return 200, {"changes": [e for _, e in entries], "next_cursor": next_cursor, "high_water": high_water}

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            sequence = self._position
        firms = self.state()
        return {
            "firms": [firms[code] for code in sorted(firms)] + copy.deepcopy(self.snapshot_extra),
            "cursor": f"{CURSOR_PREFIX}{sequence}",
            "sequence": sequence,
        }

    def firm(self, credit_code: str) -> dict[str, Any] | None:
        facts = self.state().get(credit_code)
        if facts is None:
            return None
        out = {k: facts[k] for k in _BASE_FIELDS if facts.get(k) not in (None, "")}
        out["contacts"] = facts.get("contacts", {})
        return out

    # -- HTTP -------------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on a thread; the base URL."""
        platform = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                platform._handle(self, "GET")

            def do_POST(self) -> None:
                platform._handle(self, "POST")

        self._server = http.server.ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-data-platform", daemon=True)
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _authorised(self, request: http.server.BaseHTTPRequestHandler, path: str) -> bool:
        if not self.token or (path.startswith("/firms/") and not self.firms_need_token):
            return True
        return request.headers.get("Authorization", "") == f"Bearer {self.token}"

    def _handle(self, request: http.server.BaseHTTPRequestHandler, method: str) -> None:
        parts = urllib.parse.urlsplit(request.path)
        path = parts.path
        self.requests.append(f"{method} {request.path}")
        if not self._authorised(request, path):
            return _send(request, 401, {"error": "unauthorised", "message": "Authorization: Bearer <token> required"})
        if method == "POST" and path.startswith("/_fake/"):
            return self._control(request, path)
        if self._down:
            return _send(request, 503, {"error": "unavailable", "message": "the platform is down (fake)"})
        failure = self._take_failure(path)
        if failure is not None:
            if failure.delay_s:
                time.sleep(failure.delay_s)
            if failure.garbage:
                return _send_bytes(request, 200, b"<html>maintenance</html>", "text/html")
            if failure.status:
                return _send(request, failure.status, {"error": "injected", "message": f"HTTP {failure.status} (fake)"})
        query = dict(urllib.parse.parse_qsl(parts.query))
        if method == "GET" and path == "/changes":
            try:
                limit = max(1, min(1000, int(query.get("limit", "100"))))
            except ValueError:
                return _send(request, 400, {"error": "bad_limit", "message": "limit: a whole number"})
            status, body = self.page(query.get("cursor", ""), limit)
            return _send(request, status, body)
        if method == "GET" and path == "/snapshot":
            return _send(request, 200, self.snapshot())
        if method == "GET" and path.startswith("/firms/"):
            code = urllib.parse.unquote(path[len("/firms/") :])
            firm = self.firm(code)
            if firm is None:
                return _send(request, 404, {"error": "not_found", "message": f"no firm {code}"})
            return _send(request, 200, firm)
        return _send(request, 404, {"error": "not_found", "message": path})

    def _control(self, request: http.server.BaseHTTPRequestHandler, path: str) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        try:
            body = json.loads(request.rfile.read(length) or b"{}")
        except ValueError:
            return _send(request, 400, {"error": "bad_json"})
        action = path[len("/_fake/") :]
        try:
            if action == "change":
                seq: Any = self.change(body["kind"], body["credit_code"], body.get("data"), body.get("effective_on"))
            elif action == "raw":
                seq = self.append_raw(body.get("entry"), with_sequence=bool(body.get("with_sequence", True)))
            elif action == "move_out":
                seq = self.move_out(body["credit_code"], body.get("effective_on"))
            elif action == "move_back":
                seq = self.move_back(body["credit_code"], body.get("effective_on"))
            elif action == "certify":
                seq = self.certify(body["credit_code"], **{k: v for k, v in body.items() if k != "credit_code"})
            elif action == "forget":
                self.forget_history()
                seq = None
            elif action == "fail":
                self.fail(**body)
                seq = None
            elif action in ("down", "up"):
                getattr(self, action)()
                seq = None
            else:
                return _send(request, 404, {"error": "unknown_action", "message": action})
        except (KeyError, TypeError) as exc:
            return _send(request, 400, {"error": "bad_request", "message": f"{type(exc).__name__}: {exc}"})
        return _send(request, 200, {"ok": True, "sequence": seq, "high_water": self.high_water})


def _firm_data(firm: dict[str, Any]) -> dict[str, Any]:
    data = {k: firm[k] for k in _BASE_FIELDS if k in firm}
    data["contacts"] = firm.get("contacts", {})
    for name in ("recognitions", "revenues", "identifier_usage"):
        data[name] = firm.get(name, [])
    return data


def _apply(firms: dict[str, dict[str, Any]], entry: dict[str, Any]) -> None:
    """The double's own fold (simple on purpose; lenient: what it cannot read it skips)."""
    code, kind, data = entry.get("credit_code"), entry.get("kind"), entry.get("data")
    if not isinstance(code, str) or not isinstance(data, dict):
        return
    if kind == "FIRM":
        firm = copy.deepcopy(data)
        firm["credit_code"] = code
    elif code in firms:
        firm = copy.deepcopy(firms[code])
        if kind == "REGISTRATION":
            firm["registered_in_district"] = data.get("in_district")
        elif kind == "TAX_REGISTRATION":
            firm["tax_registered_in_district"] = data.get("in_district")
        elif kind == "LEGAL_PERSON":
            firm["independent_legal_person"] = data.get("independent")
        elif kind == "CONTACTS":
            firm["contacts"] = dict(data)
        elif kind == "PROFILE":
            firm.update(data)
        elif kind == "RECOGNITION_AWARDED":
            firm["recognitions"] = [
                r
                for r in firm.get("recognitions", [])
                if (r.get("kind"), r.get("reference")) != (data.get("kind"), data.get("reference"))
            ] + [dict(data)]
        elif kind == "RECOGNITION_WITHDRAWN":
            firm["recognitions"] = [
                r
                for r in firm.get("recognitions", [])
                if (r.get("kind"), r.get("reference")) != (data.get("kind"), data.get("reference"))
            ]
        elif kind in ("REVENUE", "IDENTIFIER_USAGE"):
            name = "revenues" if kind == "REVENUE" else "identifier_usage"
            firm[name] = [e for e in firm.get(name, []) if e.get("year") != data.get("year")] + [dict(data)]
        else:
            return
    else:
        return
    firm["as_of"] = max(str(firms.get(code, {}).get("as_of", "")), entry["effective_on"])
    firm["feed_sequence"] = entry["sequence"]
    firms[code] = firm


def _send(request: http.server.BaseHTTPRequestHandler, status: int, body: Any) -> None:
    _send_bytes(request, status, json.dumps(body, ensure_ascii=False).encode(), "application/json")


def _send_bytes(request: http.server.BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
    try:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout): nothing to tell it
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="FakeDataPlatform: a test double of the data platform's feed")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--fixtures", default="demo/registry.json")
    parser.add_argument("--token-file", default="", help="the bearer token every request must carry")
    parser.add_argument("--fixtures-on", default="2025-01-01", help="effective_on of the fixture firms' FIRM changes")
    args = parser.parse_args(argv)
    token = Path(args.token_file).read_text(encoding="utf-8").strip() if args.token_file else ""
    platform = FakeDataPlatform.from_file(args.fixtures, token=token, fixtures_on=args.fixtures_on)
    url = platform.start(args.host, args.port)
    print(f"FakeDataPlatform (a test double) serving {url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        platform.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
