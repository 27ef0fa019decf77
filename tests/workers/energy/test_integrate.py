import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.energy.integrate import counter_delta, legacy_one_second_sum_j, summary, trapezoid_j


def test_trapezoid_is_exact_for_piecewise_linear_power_at_uneven_timestamps() -> None:
    times = [0.0, 0.1, 0.35, 1.0, 3.0]
    power = [100.0, 200.0, 200.0, 50.0, 50.0]
    expected = 0.1 * 150 + 0.25 * 200 + 0.65 * 125 + 2.0 * 50
    assert trapezoid_j(times, power) == pytest.approx(expected)


def test_trapezoid_joins_the_neighbours_of_a_missing_reading() -> None:
    assert trapezoid_j([0.0, 1.0, 2.0], [10.0, None, 30.0]) == pytest.approx(40.0)


def test_trapezoid_needs_two_readings_and_never_invents_zero() -> None:
    assert trapezoid_j([0.0], [100.0]) is None
    assert trapezoid_j([0.0, 1.0], [None, 100.0]) is None


@given(
    st.lists(st.floats(min_value=0.01, max_value=5.0), min_size=1, max_size=50),
    st.floats(min_value=0.0, max_value=500.0),
)
def test_constant_power_integrates_to_power_times_duration(
    steps: list[float], watts: float
) -> None:
    times = [0.0]
    for step in steps:
        times.append(times[-1] + step)
    assert trapezoid_j(times, [watts] * len(times)) == pytest.approx(watts * times[-1])


def test_the_legacy_one_second_sum_ignores_timestamps() -> None:
    # Samples 2 s apart: the earlier tool counted each as 1 s, half the energy.
    times = [0.0, 2.0, 4.0, 6.0]
    power = [100.0] * 4
    assert legacy_one_second_sum_j(power) == 400.0
    assert trapezoid_j(times, power) == 600.0


def test_counter_delta_handles_one_wraparound() -> None:
    max_range = 262_143_328_850
    assert counter_delta(100, 250, max_range) == 150
    assert counter_delta(max_range - 50, 70, max_range) == 120


def test_counter_going_backwards_without_a_range_is_an_error() -> None:
    with pytest.raises(ValueError, match="backwards"):
        counter_delta(100, 50, None)


def test_summary_skips_missing_readings() -> None:
    assert summary([1.0, None, 3.0]) == (2.0, 3.0, 1.0)
    avg, mx, mn = summary([None, None])
    assert avg is None and mx is None and mn is None
