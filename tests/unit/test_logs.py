"""Structured logs (subsidy/platform/logs.py): whatever a client sends in an
id, a reason or a header, one log call is one line of JSON (issue 17: no
input forges a second entry)."""

from __future__ import annotations

import json
import logging

import pytest

from subsidy.platform import logs

HOSTILE = [
    "SJ-2025-7100\r\nBcc: x@evil",
    'x"} {"level": "info", "message": "forged"',
    "nel\u0085line",
    "ls\u2028ps\u2029end",
    "nul\x00bell\x07esc\x1b[31m",
]


def _format(message: str, **fields: object) -> str:
    record = logging.LogRecord("t", logging.WARNING, __file__, 1, message, (), None)
    record.fields = fields  # type: ignore[attr-defined]
    return logs.JsonFormatter("intake").format(record)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_a_hostile_value_stays_on_one_line_and_reads_back_unchanged(hostile):
    line = _format(f"rejected {hostile}", application_id=hostile)
    assert len(line.splitlines()) == 1
    assert "\n" not in line and "\r" not in line
    entry = json.loads(line)
    assert entry["application_id"] == hostile and entry["message"] == f"rejected {hostile}"


def test_a_field_json_cannot_encode_is_written_as_text_not_dropped():
    class Odd:
        def __str__(self) -> str:
            return "odd\nvalue"

    line = _format("x", thing=Odd())
    assert len(line.splitlines()) == 1 and json.loads(line)["thing"] == "odd\nvalue"


def test_a_traceback_stays_inside_its_entry():
    try:
        raise ValueError("bad\u2028thing")
    except ValueError:
        import sys

        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = logs.JsonFormatter("payout").format(record)
    assert len(line.splitlines()) == 1 and "ValueError" in json.loads(line)["error"]
