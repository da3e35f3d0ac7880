"""subsidy.contracts.json_lines.loads answers exactly what json.loads does:
the same value (types included) or the same error message."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from subsidy.contracts import json_lines

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def same(a, b) -> bool:
    """Equal and of the same types all the way down (1 == 1.0 is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def outcome(loads, text: str):
    """What ``loads`` makes of ``text``: its value, or its error as a reader sees it."""
    try:
        return "value", loads(text)
    except json.JSONDecodeError as exc:
        return "error", (exc.msg, exc.lineno, exc.colno)
    except RecursionError:
        return "recursion", None


def same_outcome(text: str) -> bool:
    (kind, fast), (expected_kind, expected) = outcome(json_lines.loads, text), outcome(json.loads, text)
    return kind == expected_kind and (same(fast, expected) if kind == "value" else fast == expected)


@settings(max_examples=400)
@given(json_values, st.booleans())
def test_any_json_value_reads_as_json_reads_it(value, ascii_only):
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert same(json_lines.loads(text), json.loads(text))


@settings(max_examples=400)
@given(json_values, st.sampled_from([(",", ":"), (", ", ": "), (",\t", ":\r\n ")]), st.sampled_from([None, 0, 2]))
def test_floats_and_long_integers_read_as_json_reads_them_whatever_the_whitespace(value, separators, indent):
    """Compact, spaced and indented text (tabs, CR/LF): the same values, types included."""
    text = json.dumps(value, separators=separators, indent=indent)
    assert same(json_lines.loads(text), json.loads(text))


@pytest.mark.parametrize(
    "text",
    [
        '{"a":\n\t -12345678901234567890}',
        "[1,\r\n2.5]",
        '{"x": [0E0]}',
        "[9223372036854775808]",
        "[-9223372036854775809]",
    ],
)
def test_a_float_after_any_whitespace_or_a_64_bit_overflow_is_read_as_json_reads_it(text):
    assert same_outcome(text)


@settings(max_examples=400)
@given(st.text(alphabet='{}[]",:0123456789.eE+-truefalsn \\u\ud800', max_size=40))
def test_any_text_reads_or_fails_as_json_does(text):
    assert same_outcome(text)


@pytest.mark.parametrize(
    "text",
    [
        "123456789012345678901234567890",  # beyond 64 bits: an exact int, not a float
        '{"rent_paid_fen": 18446744073709551616}',
        "NaN",
        "-Infinity",
        "1e400",
        '"\\ud800"',  # a lone surrogate
        "[" * 2000 + "]" * 2000,  # deeper than orjson goes
        '{"a": 1, "a": 2}',  # the last of a repeated name
        "",
        '{"a": }',
    ],
)
def test_the_corners_where_orjson_differs(text):
    assert same_outcome(text)


@settings(max_examples=400)
@given(json_values | st.floats())
def test_any_value_is_written_as_json_dumps_writes_it_without_escaping(value):
    assert json_lines.dumps(value) == json.dumps(value, ensure_ascii=False)
