"""The input grid: the power-of-two step at which the network reads its inputs, and each column's range.

The first layer sees each feature as a signed ``n_input_bits`` integer times one power-of-two
scale (Concrete ML's PoT quantizers). The step trades rounding against clipping: on standardized
data at 4 bits a step of 0.25 clips every value beyond 1.75 σ, a step of 0.5 only beyond 3.5 σ.

Brevitas can learn the step during training (``input_scale="learned"``), but the learned step
settled at the clipping end on every 4-bit data set measured (0.25), where a noisy linear
regression loses R² (a ridge on those inputs: 0.955, on the 0.5 grid 0.962). ``"auto"`` chooses the
step once, before training, on the training inputs: the power of two whose rounding and clipping
change them least (mean squared error). The step is part of the circuit's input quantizer, so the
client that encrypts applies it too; nothing changes at deployment.

"learned" stays the default: over three seeds of the generalization benchmark "auto" left the mean
gap to a float MLP unchanged, gaining on some sets (diabetes +0.031 R²) and losing more than a point
on others (Friedman #3 −0.022; breast cancer, whose long tails make the 3-bit step 1 instead of 0.5,
almost a point: −0.009; docs/pruning.md).

Each column is also read within its training range (:func:`column_bounds`, :func:`clip_to_bounds`):
the accumulator bounds then count a one-hot column (0 or 1) by 0..1/step instead of the signed
range, which lets a first layer over many one-hot columns keep a finer input (house prices, 37 of
41 columns one-hot: docs/pruning.md, "Each column's training range").
"""

from __future__ import annotations

import math

import numpy as np

from .budget import default_input_bits, first_layer_cap

#: Rows the choice looks at, at most (evenly spaced): the error curve is smooth in the step.
MAX_ROWS = 10_000


def quantization_error(X: np.ndarray, scale: float, n_bits: int) -> float:
    """Mean squared change of ``X`` when read as signed ``n_bits`` integers times ``scale``."""
    low, high = -(2 ** (n_bits - 1)), 2 ** (n_bits - 1) - 1
    return float(np.mean((np.clip(np.round(X / scale), low, high) * scale - X) ** 2))


def mse_input_scale(X: np.ndarray, n_bits: int) -> float:
    """The power-of-two step with the least :func:`quantization_error` on ``X`` (the coarser one
    on a tie: it clips less). All-zero inputs get 1.

    The error is a mean of squares, so a few extreme values pull the step up (one value of 600
    among 40,000 standard normal ones asks for a step of 128): "auto" assumes features on
    comparable, standardized scales (e.g. ``StandardScaler``), as the network does."""
    X = np.asarray(X, dtype=np.float64)
    X = X[:: max(1, math.ceil(len(X) / MAX_ROWS))]
    magnitudes = np.abs(X[X != 0])
    if not magnitudes.size:
        return 1.0
    levels = 2 ** (n_bits - 1)
    # From a step that clips nothing down to one that spreads a typical value over every level.
    coarsest = math.ceil(math.log2(float(magnitudes.max()) / levels)) + 1
    finest = min(coarsest - n_bits - 3, math.floor(math.log2(float(np.median(magnitudes)) / levels)) - 1)
    steps = [2.0**exponent for exponent in range(coarsest, finest - 1, -1)]
    errors = [quantization_error(X, step, n_bits) for step in steps]
    return check_input_scale(steps[int(np.argmin(errors))])


def is_power_of_two(value: float) -> bool:
    mantissa, _ = math.frexp(float(value))
    return value > 0 and mantissa == 0.5


def resolve_input_scale(value, X: np.ndarray, n_bits: int) -> float | None:
    """The fixed step the network reads its inputs at, or None for a learned one.

    ``value`` is the ``input_scale`` parameter: "auto" (:func:`mse_input_scale` on ``X``),
    "learned", or a power of two (validated by :func:`check_input_scale`).
    """
    if value == "learned":
        return None
    if value == "auto":
        return mse_input_scale(X, n_bits)
    return check_input_scale(value)


#: The steps a circuit can use: brevitas floors its threshold at 1e-10 and float32 ends near 2^128.
STEP_RANGE = (2.0**-24, 2.0**24)


def check_input_scale(value) -> float:
    """A given step as a float; a clear error unless it is a power of two (the circuit's
    input quantizer can only use those) within :data:`STEP_RANGE`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f'input_scale must be "auto", "learned" or a power of two, got {value!r}.')
    if not is_power_of_two(value):
        raise ValueError(
            f"input_scale must be a power of two (e.g. 0.25 or 0.5), got {value!r}: Concrete ML's "
            'input quantizer uses power-of-two scales. "auto" chooses one from the training data.'
        )
    low, high = STEP_RANGE
    if not low <= value <= high:
        raise ValueError(
            f"input_scale {value!r} is outside [2^-24, 2^24], where the input quantizer works: "
            "rescale the features (e.g. with sklearn.preprocessing.StandardScaler)."
        )
    return float(value)


#: Per input column, the lowest and the highest value the network reads it at.
ColumnBounds = tuple[np.ndarray, np.ndarray]


def column_bounds(X: np.ndarray) -> ColumnBounds:
    """Each column's (min, max) over the training rows: the range the network reads it in.

    Inputs are clipped to it before quantization (:func:`clip_to_bounds`), so the accumulator
    bounds may count a column by what it can produce: a one-hot or missing-value indicator column
    (0 or 1) widens a neuron's sum on one side, by ``|w| / step``, instead of both, by
    ``|w| · 2^(n_input_bits-1)`` (:meth:`~fhe_estimators.module.QuantMLP.first_input_range`).
    """
    X = np.asarray(X, dtype=np.float32)
    return X.min(axis=0).astype(np.float64), X.max(axis=0).astype(np.float64)


def clip_to_bounds(X: np.ndarray, bounds: ColumnBounds | None) -> np.ndarray:
    """``X`` (float32) with every column clipped to its training range, as the network reads it.

    A value beyond the range the model was trained on reads as the range's end, as a tree
    model reads it; the FHE guarantee counts on it. Rows inside the range are unchanged.
    """
    X = np.asarray(X, dtype=np.float32)
    if bounds is None:
        return X
    lowest, highest = (np.asarray(end, dtype=np.float32) for end in bounds)
    return np.clip(X, lowest, highest)


def column_magnitudes(bounds: ColumnBounds, n_bits: int, step: float) -> np.ndarray:
    """Each column's largest integer magnitude when its range ``bounds`` is read as signed
    ``n_bits`` integers times ``step`` (what the input-width rule counts, per column)."""
    low, high = -(2 ** (n_bits - 1)), 2 ** (n_bits - 1) - 1
    lowest = np.clip(np.floor(np.asarray(bounds[0]) / step), low, high)
    highest = np.clip(np.ceil(np.asarray(bounds[1]) / step), low, high)
    return np.maximum(np.abs(lowest), np.abs(highest)).astype(np.int64)


def free_input_bits(estimator, X: np.ndarray) -> int:
    """``n_input_bits``, or the free extra bits of :func:`.budget.default_input_bits` for a fit on
    ``X``: judged on the inputs a first-layer neuron may keep (all, or its ``first_layer_density_``
    share), each counted by the integers its training range (``input_bounds_``) reads as at the
    step :func:`expected_step` foresees."""
    if estimator.n_input_bits is not None:
        return estimator.n_input_bits
    kept_inputs = first_layer_cap(estimator.n_features_in_, estimator.first_layer_density_)

    def magnitudes(bits: int) -> np.ndarray:
        return column_magnitudes(estimator.input_bounds_, bits, expected_step(estimator.input_scale, X, bits))

    return default_input_bits(kept_inputs, estimator.n_w_bits, estimator.n_a_bits, estimator.n_accum_bits, magnitudes)


def expected_step(input_scale, X: np.ndarray, n_bits: int) -> float:
    """The input step expected at ``n_bits`` before training: the fixed ``input_scale``, else the
    MSE step of ``"auto"``, halved for a learned one (it settled one power of two finer on every
    standardized set measured)."""
    step = resolve_input_scale(input_scale, X, n_bits)
    return step if step is not None else mse_input_scale(X, n_bits) / 2
