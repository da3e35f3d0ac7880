"""subsidy.core.dates: the one format of a moment (intake, payout and the
outbox relay write it) and the one 29 February rule (clause 1's rent window,
payout's due dates)."""

from __future__ import annotations

import datetime as dt

import pytest

from subsidy.core.dates import add_years, rfc3339

CST = dt.timezone(dt.timedelta(hours=8))


def test_a_moment_is_written_in_utc_with_microseconds_and_z():
    assert rfc3339(dt.datetime(2025, 3, 1, 8, 0, tzinfo=CST)) == "2025-03-01T00:00:00.000000Z"
    assert rfc3339(dt.datetime(2025, 3, 1, 0, 0, 0, 7, tzinfo=dt.UTC)) == "2025-03-01T00:00:00.000007Z"


def test_in_milliseconds_the_rest_is_cut_off_not_rounded():
    """The form of ce_time and a dead letter's failed_at."""
    assert (
        rfc3339(dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=CST), "milliseconds") == "2024-02-29T15:59:59.999Z"
    )
    assert rfc3339(dt.datetime(2025, 3, 1, 0, 0, 0, 999, tzinfo=dt.UTC), "milliseconds") == "2025-03-01T00:00:00.000Z"


@pytest.mark.parametrize(
    "moment",
    [
        dt.datetime(2025, 3, 1, tzinfo=dt.UTC),
        dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=CST),
        dt.datetime(1999, 12, 31, 16, 0, 0, 1, tzinfo=CST),
    ],
)
def test_the_format_is_the_one_intake_and_the_outbox_wrote_before(moment):
    """Intake and the relay formatted with strftime, payout with isoformat:
    the same text for every year from 1000 on, so stored rows compare alike."""
    assert rfc3339(moment) == moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_moments_written_this_way_sort_as_text_in_the_order_of_time():
    moments = [
        dt.datetime(2025, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=k * 999_983) for k in range(0, 200_000, 997)
    ]
    assert sorted(map(rfc3339, moments)) == [rfc3339(m) for m in moments]


def test_the_same_date_years_later_turns_29_february_into_1_march_in_a_common_year():
    assert add_years(dt.date(2025, 2, 20), 2) == dt.date(2027, 2, 20)
    assert add_years(dt.date(2024, 2, 29), 1) == dt.date(2025, 3, 1)
    assert add_years(dt.date(2024, 2, 29), 4) == dt.date(2028, 2, 29)
    assert add_years(dt.date(2024, 2, 29), 0) == dt.date(2024, 2, 29)
