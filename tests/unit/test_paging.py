"""subsidy.platform.paging: the one page-token encoding of intake's and
payout's listings."""

from __future__ import annotations

import base64
import json

import pytest

from subsidy.platform import paging


def test_a_token_is_the_position_as_compact_json_in_unpadded_url_safe_base64():
    """The form both services issued before, so tokens held across a deploy still work."""
    position = {"c": "91310117MA1K7D2E8N", "r": "2025-03-01T00:00:00.000000Z", "i": "SJ-1"}
    token = paging.encode(position)
    assert token == base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")
    assert "=" not in token and paging.decode(token) == position


@pytest.mark.parametrize("token", ["garbage!", "", "WzEsMl0", "bnVsbA", "%%%", "页", "eyJ"])
def test_anything_else_is_a_bad_token(token):
    """Not base64, not JSON, or JSON that is not an object ([1,2], null)."""
    with pytest.raises(paging.BadPageToken):
        paging.decode(token)


def test_an_object_without_the_keys_is_left_to_the_service_to_refuse():
    assert paging.decode("e30") == {}  # {}


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000, '{"a":' * 100_000, "[" * 5_000],
    ids=["deep-list", "deep-object", "deep-list-short"],
)
def test_a_deeply_nested_token_is_a_bad_token_not_a_recursion_error(text):
    """Issue 17: json.loads raised RecursionError (INTERNAL, a traceback in the log)."""
    token = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
    with pytest.raises(paging.BadPageToken):
        paging.decode(token)


def test_a_recursion_error_in_the_decoder_is_a_bad_token_whatever_the_bound(monkeypatch):
    """The length bound is the first line; a decoder failure of any kind is still BadPageToken."""
    monkeypatch.setattr(paging, "MAX_TOKEN_LENGTH", 10**7)
    token = base64.urlsafe_b64encode(b"[" * 100_000).decode().rstrip("=")
    with pytest.raises(paging.BadPageToken):
        paging.decode(token)


def test_a_token_longer_than_the_bound_is_refused_before_decoding():
    position = {"c": "x" * paging.MAX_TOKEN_LENGTH}
    with pytest.raises(paging.BadPageToken):
        paging.decode(paging.encode(position))


def test_a_real_position_fits_well_within_the_bound():
    position = {"q": "0" * 16, "d": "2035-07-07", "t": "T-" + "9" * 64}
    assert len(paging.encode(position)) < paging.MAX_TOKEN_LENGTH // 2
