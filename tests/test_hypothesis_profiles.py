"""The hypothesis profiles of conftest.py: no saved draw is ever replayed, default runs are reproducible."""
import pytest
from hypothesis import given, settings, strategies as st


def test_no_profile_keeps_an_example_database():
    """A draw that failed once must not fail every later run from ``.hypothesis/``."""
    for name in ("dev", "ci", "nightly"):
        assert settings.get_profile(name).database is None, name
    assert settings().database is None


def test_the_default_and_ci_profiles_draw_the_same_examples_every_run():
    assert settings.get_profile("dev").derandomize and settings.get_profile("ci").derandomize
    assert not settings.get_profile("nightly").derandomize


def _draws():
    seen = []

    @settings(max_examples=5)
    @given(st.integers(0, 2**62))
    def record(n):
        seen.append(n)

    record()
    return seen


def test_two_runs_of_one_test_draw_the_same_values():
    if not settings().derandomize:
        pytest.skip("HYPOTHESIS_PROFILE=nightly draws fresh examples by design")
    assert _draws() == _draws()
