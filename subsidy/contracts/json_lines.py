"""Reading JSON text fast, with exactly the standard library's results.

``subsidy simulate`` and ``subsidy evaluate`` read JSON lines; parsing them
with ``json.loads`` took a fifth of the calculator's time per application
(bench/calculator.py). orjson (Rust, wheels for every platform we ship) parses
them in under half the time. Its results differ from ``json.loads`` in a few
corners, and those go to ``json.loads``, so what the calculator answers --
a decision or an error message -- is byte for byte what it was:

- integers beyond 64 bits: orjson reads them as floats, json as exact
  integers, so a value holding any float is read again by json (money and
  every other number of the contract is an integer: a float is rare, and a
  walk over a parsed line costs a third of what orjson saves);
- NaN, Infinity, numbers beyond a double's range, lone surrogates in
  strings, nesting deeper than 1,024: orjson refuses what json reads (or
  refuses with its own words), so anything orjson refuses is read again by
  json, which reads it or refuses it with the message it always gave.

Without an orjson wheel for the platform, json alone does the work.

Lines are written by ``dumps``: ``json.dumps(value, ensure_ascii=False)``'s
text exactly (orjson's differs: no spaces after separators), from one encoder
made once -- ``json.dumps`` with any option builds a new encoder per call,
a fifth of the cost of writing a calculator's line.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - a platform without the wheel
    orjson = None


def loads(text: str) -> Any:
    """``json.loads(text)``: the same value, or the same JSONDecodeError."""
    if orjson is not None:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # json says why (or reads what orjson refuses), below
        else:
            if not _holds_float(value):
                return value
    return json.loads(text)


def _holds_float(value: Any) -> bool:
    kind = type(value)
    if kind is dict:
        value = value.values()
    elif kind is not list:
        return kind is float
    for item in value:
        kind = type(item)
        if kind is float or ((kind is dict or kind is list) and _holds_float(item)):
            return True
    return False


_ENCODER = json.JSONEncoder(ensure_ascii=False)


def dumps(value: Any) -> str:
    """``json.dumps(value, ensure_ascii=False)``: the same text."""
    return _ENCODER.encode(value)
