"""Ω and the exact accumulator bounds, checked against brute force."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhe_estimators import omega
from fhe_estimators.budget import (
    MAX_FREE_INPUT_BITS,
    accumulator_bounds,
    default_input_bits,
    enforce_accumulator_budget,
    fits_signed,
    kept_weights_per_neuron,
    largest_weights_that_fit,
    signed_bit_width,
)


@pytest.mark.parametrize(
    "accum, w, a, expected",
    [(16, 2, 2, 7281), (10, 3, 3, 20), (12, 4, 4, 18), (8, 2, 2, 28), (4, 2, 2, 1)],
)
def test_omega_values(accum, w, a, expected):
    assert omega(n_accum_bits=accum, n_w_bits=w, n_a_bits=a) == expected


def test_omega_zero_names_the_bits_to_change():
    with pytest.raises(ValueError, match="Ω is 0.*Raise n_accum_bits to at least 8"):
        omega(6, 4, 4)


@pytest.mark.parametrize("bad", [0, -3])
def test_omega_rejects_non_positive_bits(bad):
    with pytest.raises(ValueError, match="n_w_bits must be a positive integer"):
        omega(10, bad, 3)


@pytest.mark.parametrize("bad", [2.5, "3", None, True])
def test_omega_rejects_non_integer_bits(bad):
    with pytest.raises(TypeError, match="n_a_bits must be a positive integer"):
        omega(10, 3, bad)


def test_kept_weights_is_capped_by_fan_in_and_at_least_one():
    assert kept_weights_per_neuron(fan_in=30, omega_value=20, multiplier=1.0) == 20
    assert kept_weights_per_neuron(fan_in=30, omega_value=20, multiplier=4.0) == 30
    assert kept_weights_per_neuron(fan_in=30, omega_value=20, multiplier=0.01) == 1
    assert kept_weights_per_neuron(fan_in=100, omega_value=20, multiplier=2.5) == 50


@pytest.mark.parametrize(
    "low, high, bits", [(0, 0, 1), (-1, 0, 1), (0, 1, 2), (-512, 511, 10), (-513, 0, 11), (0, 512, 11), (-4, 3, 3)]
)
def test_signed_bit_width(low, high, bits):
    assert int(signed_bit_width(low, high)) == bits
    assert fits_signed(low, high, bits)
    assert not fits_signed(low, high, bits - 1) or bits == 1


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.integers(-4, 3), min_size=1, max_size=5),
    bias=st.integers(-20, 20),
    input_range=st.sampled_from([(-4, 3), (0, 7), (-2, 1)]),
)
def test_bounds_equal_brute_force(weights, bias, input_range):
    low_in, high_in = input_range
    w = np.array([weights])
    low, high = accumulator_bounds(w, np.array([bias]), low_in, high_in)
    sums = [int(np.dot(weights, x)) + bias for x in itertools.product(range(low_in, high_in + 1), repeat=len(weights))]
    assert low[0] == min(sums) and high[0] == max(sums)
    # Never looser than the textbook bound Σ|w|·max|x| + |b|.
    textbook = np.abs(w).sum() * max(abs(low_in), abs(high_in)) + abs(bias)
    assert max(abs(low[0]), abs(high[0])) <= textbook


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.lists(st.integers(-4, 3), min_size=3, max_size=3), min_size=1, max_size=4),
    column_ranges=st.lists(st.sampled_from([(-4, 3), (0, 2), (0, 7), (-1, 0), (0, 0)]), min_size=3, max_size=3),
)
def test_per_column_bounds_equal_brute_force_and_rank_per_column(weights, column_ranges):
    # One range per input column (the model input's, clipped to its training range): still exact.
    w = np.array(weights)
    lows, highs = (np.array(end) for end in zip(*column_ranges))
    low, high = accumulator_bounds(w, None, lows, highs)
    grid = list(itertools.product(*(range(lo, hi + 1) for lo, hi in column_ranges)))
    sums = np.array(grid) @ w.T
    np.testing.assert_array_equal(low, sums.min(axis=0))
    np.testing.assert_array_equal(high, sums.max(axis=0))
    # largest_weights_that_fit reorders the columns by magnitude: their ranges must follow them.
    magnitudes = np.abs(w) + np.arange(3) * 0.01
    for n_bits in (2, 3, 4):
        counts = largest_weights_that_fit(w, magnitudes, lows, highs, n_bits)
        for row, count in enumerate(counts):
            order = np.argsort(-magnitudes[row], kind="stable")
            for prefix in (count, count + 1):
                kept = np.zeros(3, dtype=np.int64)
                kept[order[:prefix]] = w[row, order[:prefix]]
                fits = fits_signed(*accumulator_bounds(kept[None, :], None, lows, highs), n_bits)[0]
                assert fits == (prefix == count) or prefix > 3


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.lists(st.integers(-4, 3), min_size=8, max_size=8), min_size=1, max_size=6),
    n_accum_bits=st.integers(4, 9),
)
def test_enforce_budget_fits_and_drops_smallest_first(weights, n_accum_bits):
    w = np.array(weights)
    keep = enforce_accumulator_budget(w, None, 0, 7, n_accum_bits)
    kept = np.where(keep, w, 0)
    low, high = accumulator_bounds(kept, None, 0, 7)
    assert fits_signed(low, high, n_accum_bits).all()
    assert not (keep & (w == 0)).any()
    for row, row_keep in zip(w, keep):
        dropped, remaining = np.abs(row[~row_keep & (row != 0)]), np.abs(row[row_keep])
        if dropped.size and remaining.size:
            assert dropped.max() <= remaining.min()


@pytest.mark.parametrize("n_features, expected", [(1, 5), (3, 5), (4, 5), (7, 5), (8, 4), (15, 4), (16, 3), (30, 3)])
def test_default_input_bits_take_the_widest_width_the_unpruned_layer_fits(n_features, expected):
    # 3-bit weights (most negative -4), b-bit inputs (most negative -2^(b-1)): 511 fits 10 bits.
    assert default_input_bits(n_features, 3, 3, 10) == expected

    def worst_case_fits(bits):
        low, high = accumulator_bounds(np.full((1, n_features), -4), None, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        assert high == n_features * 4 * 2 ** (bits - 1)
        return fits_signed(low, high, 10)

    assert expected == 3 or worst_case_fits(expected)
    assert expected == MAX_FREE_INPUT_BITS or not worst_case_fits(expected + 1)  # one more would need pruning


def test_default_input_bits_count_each_column_by_its_own_magnitude():
    # 41 columns, 37 of them one-hot (reading 0 or 1/step): full-range counting gives 3 bits, the
    # per-column magnitudes give 4 (4 columns at 8 and 37 at 2: 4·(32 + 74) = 424 <= 511).
    def magnitudes(bits):
        step = {4: 0.5, 5: 0.25}[bits]
        return np.array([2 ** (bits - 1)] * 4 + [int(1 / step)] * 37)

    assert default_input_bits(41, 3, 3, 10) == 3
    assert default_input_bits(41, 3, 3, 10, magnitudes) == 4
    # A sparse first layer keeps the largest magnitudes first: 11 inputs, 4·(4·16 + 7·4) = 368 at 5 bits.
    assert default_input_bits(11, 3, 3, 10, magnitudes) == 5


def test_default_input_bits_stop_at_the_widest_free_input():
    assert default_input_bits(1, 3, 3, 10) == MAX_FREE_INPUT_BITS == 5  # 7 bits would fit too
    assert default_input_bits(4, 4, 4, 12) == 5  # 6 would fit: n_a_bits + 1 is the cap's floor
    assert default_input_bits(1, 2, 8, 16) == 9  # one more than wide activations, never fewer


def test_rounding_headroom_counts_against_the_upper_bound():
    # Unsigned 3-bit inputs (0..7): a neuron of 18 weights of +1 reaches 126, of 19 reaches 133.
    weights = np.ones((1, 18), dtype=np.int64)
    assert enforce_accumulator_budget(weights, None, 0, 7, 8).all()  # 126 fits [-128, 127]
    # Rounding 3 bits half up may add 4 before the lookup: 130 no longer fits, one weight goes.
    keep = enforce_accumulator_budget(weights, None, 0, 7, 8, headroom=4)
    assert keep.sum() == 17
