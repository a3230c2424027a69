"""Accumulator bit-budget math: Ω and exact worst-case accumulator bounds.

Everything here works on plain integers and numpy arrays, so it can be unit
tested (and reasoned about) without torch or Concrete.

In FHE a neuron's sum ``Σ w_q·x_q + b_q`` is computed on encrypted integers
and wraps around silently if it leaves the circuit's bit-width. Two tools
bound it:

* :func:`omega` is the classic worst-case *count*: how many non-zero terms a
  sum may have if every weight and input sits at its largest magnitude.
* :func:`accumulator_bounds` is the *exact* interval the sum can take over
  every input the quantizer can produce, for the actual integer weights.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Union

import numpy as np

#: An input range's end: one integer for every input of a layer, or one per input (array).
InputBound = Union[int, np.ndarray]

#: Largest table-lookup input Concrete can compile (in bits).
CONCRETE_MAX_BITS = 16
#: Widest input :func:`default_input_bits` gives for free. Measured on the generalization benchmark:
#: 6 bits for first-layer neurons keeping 2 or 3 inputs scored no better than 5 over 4 seeds
#: (Friedman #1 0.006 R² lower, moons 0.007), and at (4,4,12) iris lost a test row on 2 seeds of 5
#: at 6 bits (none at 5). Each finer bit also costs one rounding PBS per first-layer neuron
#: (docs/pruning.md, "The widest free input").
MAX_FREE_INPUT_BITS = 5


def check_positive_int(value, name: str) -> int:
    """Return ``value`` as an ``int`` or raise a clear error naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {value!r} ({type(value).__name__}).")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def omega(n_accum_bits: int, n_w_bits: int, n_a_bits: int) -> int:
    """Worst-case number of non-zero terms a neuron's sum may have.

    ``Ω = floor((2^n_accum − 1) / ((2^n_w − 1)(2^n_a − 1)))``: with every
    weight and input at its maximal magnitude, a sum of Ω terms still fits in
    ``n_accum_bits``. Example: ``omega(16, 2, 2) == 7281``.
    """
    n_accum_bits = check_positive_int(n_accum_bits, "n_accum_bits")
    n_w_bits = check_positive_int(n_w_bits, "n_w_bits")
    n_a_bits = check_positive_int(n_a_bits, "n_a_bits")
    value = terms_that_fit(n_accum_bits, n_w_bits, n_a_bits)
    if value == 0:
        raise ValueError(
            f"Ω is 0 for n_accum_bits={n_accum_bits}, n_w_bits={n_w_bits}, n_a_bits={n_a_bits}: "
            "not even one weight can be kept per neuron. Raise n_accum_bits to at least "
            f"{n_w_bits + n_a_bits} or lower n_w_bits / n_a_bits."
        )
    return value


def terms_that_fit(n_accum_bits: int, n_w_bits: int, n_a_bits: int) -> int:
    """Ω's formula on valid bit-widths, 0 included (:func:`omega` refuses 0): to ask whether a
    width is possible at all without an error."""
    return (2**n_accum_bits - 1) // ((2**n_w_bits - 1) * (2**n_a_bits - 1))


def default_input_bits(
    n_features: int,
    n_w_bits: int,
    n_a_bits: int,
    n_accum_bits: int,
    column_magnitudes: Callable[[int], np.ndarray] | None = None,
) -> int:
    """Input bit-width when the user does not choose one: the widest, up to
    :data:`MAX_FREE_INPUT_BITS` (or ``n_a_bits + 1`` when that is wider), at which the first layer
    still fits ``n_accum_bits`` with *no* pruning (``n_features``: the inputs a first-layer neuron
    may keep; fewer with a sparse first layer), and ``n_a_bits`` when not even one bit more fits.

    The worst case is every weight at its most negative integer times every
    input at its largest magnitude: ``n_features · 2^(n_w−1) · 2^(b−1)``, or, given
    ``column_magnitudes`` (bits -> each column's largest integer magnitude at that width), the
    ``n_features`` largest of them in place of ``2^(b−1)`` each: a one-hot column that reads as
    0 or 4 counts 4, not 16. When that fits, the extra input precision is free (nothing must be
    pruned for it, at ``n_accum_bits``; the search's narrower widths keep the input and
    prune for it); when it does not, inputs keep ``n_a_bits`` and pruning keeps its room.
    """
    widest = max(n_a_bits + 1, MAX_FREE_INPUT_BITS)
    for bits in range(widest, n_a_bits, -1):
        if column_magnitudes is None:
            inputs = n_features * 2 ** (bits - 1)
        else:
            inputs = int(np.sort(np.asarray(column_magnitudes(bits), dtype=np.int64))[::-1][:n_features].sum())
        if inputs * 2 ** (n_w_bits - 1) <= 2 ** (n_accum_bits - 1) - 1:
            return bits
    return n_a_bits


def kept_weights_per_neuron(fan_in: int, omega_value: int, multiplier: float) -> int:
    """``k = min(fan_in, floor(multiplier × Ω))``, at least 1."""
    return int(max(1, min(fan_in, np.floor(multiplier * omega_value))))


def first_layer_cap(n_inputs: int, density: float) -> int:
    """Inputs a first-layer neuron may keep at ``density`` (``first_layer_density``):
    ``ceil(density × n_inputs)``, at least 1."""
    return max(1, min(int(n_inputs), math.ceil(density * n_inputs - 1e-9)))


def accumulator_bounds(
    weights: np.ndarray, bias: np.ndarray | None, input_min: InputBound, input_max: InputBound
) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-neuron (min, max) of ``W @ x + b`` over all integer ``x`` in range.

    ``weights`` is the integer matrix of shape (n_neurons, fan_in); ``input_min`` and
    ``input_max`` are one range for every input or one per input (arrays of length fan_in).
    Each term ``w·x`` reaches its extremes at an end of its input's range, and the
    terms are independent, so summing the per-term extremes is exact (and never
    looser than ``Σ|w|·max|x| + |b|``).
    """
    weights = np.asarray(weights, dtype=np.int64)
    at_min, at_max = weights * _as_int(input_min), weights * _as_int(input_max)
    low = np.minimum(at_min, at_max).sum(axis=1)
    high = np.maximum(at_min, at_max).sum(axis=1)
    if bias is not None:
        bias = np.asarray(bias, dtype=np.int64)
        low, high = low + bias, high + bias
    return low, high


def _as_int(bound: InputBound) -> np.ndarray:
    return np.asarray(bound, dtype=np.int64)


def signed_bit_width(low, high) -> np.ndarray:
    """Bits of the smallest signed integer type holding every value in ``[low, high]``.

    ``b`` bits hold ``[-2^(b-1), 2^(b-1) - 1]``. Works element-wise on arrays.
    """
    low = np.minimum(np.asarray(low, dtype=np.int64), 0)
    high = np.maximum(np.asarray(high, dtype=np.int64), 0)
    # Bits for the magnitude: -low needs ceil(log2(-low)), high needs ceil(log2(high + 1)).
    neg_bits = np.where(low < 0, np.ceil(np.log2(np.maximum(-low, 1))).astype(np.int64), 0)
    pos_bits = np.ceil(np.log2(high + 1)).astype(np.int64)
    return np.maximum(neg_bits, pos_bits) + 1


def fits_signed(low, high, n_bits: int) -> np.ndarray:
    """Whether ``[low, high]`` fits a signed ``n_bits`` integer (element-wise)."""
    return (np.asarray(low) >= -(2 ** (n_bits - 1))) & (np.asarray(high) <= 2 ** (n_bits - 1) - 1)


def enforce_accumulator_budget(
    weights: np.ndarray,
    bias: np.ndarray | None,
    input_min: InputBound,
    input_max: InputBound,
    n_accum_bits: int,
    headroom: int = 0,
) -> np.ndarray:
    """Keep-mask dropping each neuron's smallest ``|w|`` until its exact bound fits.

    Returns a boolean array shaped like ``weights``: True where the weight is
    kept. Neurons that already fit keep all their non-zero weights. A neuron
    whose bias alone overflows keeps no weights (the bias is the caller's to
    handle; with Concrete's quantized bias this does not happen in practice).
    ``headroom`` is added to each neuron's upper bound: what rounding the
    accumulator (half up) before its table lookup may add to it.
    """
    weights = np.asarray(weights, dtype=np.int64)
    keep = weights != 0
    low, high = accumulator_bounds(weights, bias, input_min, input_max)
    for row in np.flatnonzero(~fits_signed(low, high + headroom, n_accum_bits)):
        neuron = weights[row].copy()
        # Drop in increasing |w| order; ties broken by index so it is deterministic.
        for col in np.argsort(np.abs(neuron), kind="stable"):
            if neuron[col] == 0:
                continue
            neuron[col] = 0
            keep[row, col] = False
            row_bias = None if bias is None else np.asarray(bias)[row : row + 1]
            lo, hi = accumulator_bounds(neuron[None, :], row_bias, input_min, input_max)
            if fits_signed(lo, hi + headroom, n_accum_bits)[0]:
                break
    return keep


def largest_weights_that_fit(
    weights: np.ndarray, magnitudes: np.ndarray, input_min: InputBound, input_max: InputBound, n_accum_bits: int
) -> np.ndarray:
    """Per neuron: how many of its largest weights fit ``n_accum_bits`` exactly.

    Weights are taken in decreasing ``magnitudes`` order (the float ``|w|``,
    which breaks ties between equal integers); each one widens the exact
    accumulator interval, so the count is the longest prefix that still fits.
    This is the exact-budget mode: small weights cost little, so a neuron
    usually keeps more than Ω of them.
    """
    weights = np.asarray(weights, dtype=np.int64)
    order = np.argsort(-np.asarray(magnitudes), axis=1, kind="stable")
    ranked = np.take_along_axis(weights, order, axis=1)
    ranked_min, ranked_max = (
        np.take_along_axis(np.broadcast_to(_as_int(bound), weights.shape), order, axis=1) for bound in (input_min, input_max)
    )
    at_min, at_max = ranked * ranked_min, ranked * ranked_max
    low = np.cumsum(np.minimum(at_min, at_max), axis=1)
    high = np.cumsum(np.maximum(at_min, at_max), axis=1)
    return fits_signed(low, high, n_accum_bits).sum(axis=1)
