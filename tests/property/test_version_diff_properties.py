"""Properties of `subsidy policy diff` (issue 14): a version against itself
differs in nothing, and the per-year outlay difference is the sum of the
per-application differences (through the calculator: caps, one-time awards,
tranches)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import applications

from subsidy.contracts.calculator import Comparison
from subsidy.core import credit_code
from subsidy.core.versions import diff, load_versions

VERSIONS = load_versions()
ALL = [VERSIONS.get(i) for i in VERSIONS.ids()]
DRAFT, FINAL = VERSIONS.get("songjiang-ii-2022-draft"), VERSIONS.get("fictional-final-2023")
# A few firms and ids, so caps fill up and one-time awards repeat under both versions.
FEW_FIRMS = st.sampled_from([credit_code.complete(c) for c in ("91310117MA1J1234", "91310117AB12CD34")])
FEW_IDS = st.sampled_from([f"APP-{n}" for n in range(10)])
BATCHES = st.lists(applications(codes=FEW_FIRMS, ids=FEW_IDS), min_size=1, max_size=12)
PROFILE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_every_version_against_itself_has_no_change():
    for version in ALL:
        assert diff(version, version) == []
    assert diff(DRAFT, FINAL), "the fictional final differs from the draft"


@PROFILE
@given(BATCHES, st.sampled_from(ALL))
def test_a_version_against_itself_decides_every_application_alike(batch, version):
    comparison = Comparison(version.policy, version.policy)
    for app in batch:
        row = comparison.add(app)
        assert not row["differs"], row
        assert row["old"] == row["new"]
    assert all(year["difference_fen"] == 0 for year in comparison.by_year())


@PROFILE
@given(BATCHES, st.sampled_from([(DRAFT, FINAL), (FINAL, DRAFT)]))
def test_the_per_year_difference_is_the_sum_of_the_per_application_differences(batch, pair):
    old, new = pair
    comparison = Comparison(old.policy, new.policy)
    for app in batch:
        comparison.add(app)
    summed: dict[str, int] = {}
    for row in comparison.rows:
        for year, fen in row["difference_by_year_fen"].items():
            summed[year] = summed.get(year, 0) + fen
        assert row["difference_fen"] == sum(row["difference_by_year_fen"].values())
        assert isinstance(row["difference_fen"], int)
    by_year = comparison.by_year()
    assert {str(y["year"]): y["difference_fen"] for y in by_year if y["difference_fen"]} == {
        y: fen for y, fen in summed.items() if fen
    }
    for year in by_year:
        assert year["new_fen"] - year["old_fen"] == year["difference_fen"]
    assert sum(y["difference_fen"] for y in by_year) == sum(r["difference_fen"] for r in comparison.rows)
    # Per firm too: what the firms gain or lose adds up to the budget's difference.
    firms = comparison.by_firm()
    assert sum(f["difference_fen"] for f in firms) == sum(y["difference_fen"] for y in by_year)
    assert len(firms) == len({r["credit_code"] for r in comparison.rows})
