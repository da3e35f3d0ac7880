"""Structured logs: one JSON object per line on standard error, with the
service name and the trace id of the application being handled.

The trace id travels in a context variable, so a handler sets it once
(`with trace(trace_id):`) and every log line under it carries it. Log
application ids, credit codes, clause ids and amounts; never contact details
or people's names.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator

_trace_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)


@contextlib.contextmanager
def trace(trace_id: str | None) -> Iterator[None]:
    token = _trace_id.set(trace_id)
    try:
        yield
    finally:
        _trace_id.reset(token)


def current_trace_id() -> str | None:
    return _trace_id.get()


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        trace_id = getattr(record, "trace_id", None) or _trace_id.get()
        if trace_id:
            entry["trace_id"] = trace_id
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return one_line(json.dumps(entry, ensure_ascii=False, default=str))


#: Characters JSON leaves as they are but that some readers take for a line
#: break (Python's str.splitlines, JavaScript, several log shippers).
_LINE_BREAKERS = str.maketrans({"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def one_line(text: str) -> str:
    """A JSON document on exactly one line, whatever a client put in an id or
    a reason: json.dumps escapes CR, LF and every other C0 control already;
    this escapes the Unicode line breaks it keeps, so no input can forge a
    second log entry (issue 17)."""
    return text.translate(_LINE_BREAKERS)


def setup(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The Kafka clients are chatty at INFO.
    for noisy in ("kafka", "aiokafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fields(**values: object) -> dict[str, dict[str, object]]:
    """`log.info("decided", extra=fields(application_id=..., outcome=...))`."""
    return {"fields": values}
