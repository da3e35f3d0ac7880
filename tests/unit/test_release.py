"""The release gate, holds and recovery rules (subsidy/core/release.py): pure."""

from __future__ import annotations

import datetime as dt

import pytest

from subsidy.core import release
from subsidy.core.release import AfterHold, FirmStanding, PaidTranche

D = dt.date.fromisoformat


def standing(*, known=True, registered=True, tax=True, independent=True, as_of="2026-01-10", sequence=5):
    return FirmStanding("X", known, D(as_of) if as_of else None, registered, tax, independent, sequence)


class TestGate:
    def test_a_firm_the_feed_never_mentioned_passes_and_says_so(self):
        result = release.gate(None)
        assert (result.passes, result.no_facts, result.codes, result.reason) == (True, True, (), "")

    def test_a_firm_meeting_the_scope_passes_with_its_facts_day(self):
        result = release.gate(standing())
        assert (result.passes, result.no_facts, result.facts_as_of) == (True, False, D("2026-01-10"))

    @pytest.mark.parametrize(
        ("changes", "codes", "text"),
        [
            ({"registered": False}, (release.REGISTERED_OUTSIDE,), "工商登记已不在松江区"),
            ({"tax": False}, (release.TAX_REGISTERED_OUTSIDE,), "税务登记已不在松江区"),
            ({"independent": False}, (release.NOT_INDEPENDENT,), "已不具备独立法人资格"),
            (
                {"registered": False, "tax": False},
                (release.REGISTERED_OUTSIDE, release.TAX_REGISTERED_OUTSIDE),
                "工商登记已不在松江区；税务登记已不在松江区",
            ),
        ],
    )
    def test_each_condition_of_the_scope_fails_with_its_reason_in_chinese(self, changes, codes, text):
        result = release.gate(standing(**changes))
        assert (result.passes, result.codes, result.reason) == (False, codes, text)

    def test_a_tombstone_fails_whatever_the_flags(self):
        result = release.gate(standing(known=False, as_of=""))
        assert (result.passes, result.codes, result.facts_as_of) == (False, (release.UNKNOWN_TO_PLATFORM,), None)
        assert result.reason == "政务数据平台已无该企业的登记信息"


class TestNewer:
    def test_only_a_higher_sequence_is_newer(self):
        assert release.newer(None, 1)
        assert release.newer(standing(sequence=5), 6)
        assert not release.newer(standing(sequence=5), 5)
        assert not release.newer(standing(sequence=5), 4)


class TestAfterHold:
    UNTIL = D("2026-04-10")

    def test_facts_restored_within_the_grace_release_it_even_when_read_after_the_grace(self):
        restored = release.gate(standing(as_of="2026-04-10"))
        assert release.after_hold(restored, self.UNTIL, D("2026-03-01")) == AfterHold.RELEASE
        assert release.after_hold(restored, self.UNTIL, D("2026-04-20")) == AfterHold.RELEASE

    def test_facts_restored_after_the_grace_do_not_release_it(self):
        late = release.gate(standing(as_of="2026-04-11"))
        assert release.after_hold(late, self.UNTIL, D("2026-04-11")) == AfterHold.CANCEL

    def test_still_failing_it_is_kept_through_the_last_day_and_cancelled_the_day_after(self):
        failing = release.gate(standing(registered=False))
        assert release.after_hold(failing, self.UNTIL, D("2026-04-10")) == AfterHold.KEEP
        assert release.after_hold(failing, self.UNTIL, D("2026-04-11")) == AfterHold.CANCEL

    def test_hold_until_adds_the_grace_days(self):
        assert release.hold_until(D("2026-01-11"), 90) == D("2026-04-11")
        with pytest.raises(ValueError):
            release.hold_until(D("2026-01-11"), -1)

    def test_the_cancel_reason_names_the_hold_the_grace_and_why(self):
        failing = release.gate(standing(tax=False))
        text = release.cancel_reason(failing, D("2026-01-11"), D("2026-04-11"))
        assert (
            text
            == "暂停拨付（2026年1月11日起）宽限期至2026年4月11日届满，企业仍不符合《政策》一、适用范围：税务登记已不在松江区"
        )


class TestAllocate:
    def test_the_amount_is_spread_in_order_up_to_what_is_unclaimed(self):
        tranches = [PaidTranche("t0", 100, 30), PaidTranche("t1", 50, 0)]
        assert release.allocate(100, tranches) == (("t0", 70), ("t1", 30))
        assert release.allocate(70, tranches) == (("t0", 70),)

    def test_at_most_what_was_paid_and_not_yet_claimed(self):
        tranches = [PaidTranche("t0", 100, 30), PaidTranche("t1", 50, 0)]
        assert release.allocate(120, tranches) == (("t0", 70), ("t1", 50))
        with pytest.raises(release.RecoveryRefused, match=r"^amount_fen: 121 fen .* 120 fen \(paid 150 fen\)"):
            release.allocate(121, tranches)

    @pytest.mark.parametrize("amount", [0, -1])
    def test_the_amount_must_be_positive(self, amount):
        with pytest.raises(release.RecoveryRefused, match="^amount_fen: must be positive"):
            release.allocate(amount, [PaidTranche("t0", 100, 0)])


class TestCapRelease:
    USES = (("1.rent", 100), ("2", 50))

    def test_nothing_is_freed_unless_the_award_is_void(self):
        assert release.cap_release(80, False, self.USES) == ()

    def test_a_void_award_frees_in_the_order_of_its_uses_after_what_was_freed_before(self):
        assert release.cap_release(80, True, self.USES) == (("1.rent", 80),)
        assert release.cap_release(80, True, self.USES, already_released_fen=80) == (("1.rent", 20), ("2", 50))

    def test_never_more_than_the_grant_holds(self):
        assert release.cap_release(500, True, self.USES) == (("1.rent", 100), ("2", 50))
        assert release.cap_release(10, True, self.USES, already_released_fen=150) == ()
