"""Accumulator-aware training: every neuron's weights are kept small enough to fit the budget.

The idea is A2Q (Colbert et al., ICCV 2023, "Quantized Neural Networks for Low-Precision
Accumulation with Guaranteed Overflow Avoidance"): bound the L1 norm of each output
channel's integer weights so that its accumulator cannot overflow ``P`` bits for *any*
input, and train under that constraint. Weights then become smaller rather than fewer.

brevitas ships A2Q as a weight quantizer, but it needs a per-channel scale and an input
quant tensor, neither of which Concrete ML 1.9 imports (see ``docs/pruning.md``). Here the
same constraint is enforced on our per-tensor power-of-two weight quantizer by projection:
after each optimizer step, each neuron whose *exact* worst case (``budget.accumulator_bounds``
on ``q = clamp(round(w / s))`` over the layer's integer input range) does not fit the
accumulator budget has its float weights scaled down, by the largest factor in ``[0, 1]``
that makes it fit. With unsigned inputs (after a ReLU, ``[0, 2^n_a − 1]``) the positive
weights alone set the maximum and the negative ones alone the minimum, so the two signs are
scaled separately; with signed inputs (the first layer) one factor scales the whole neuron.

Scaling, rather than clipping the L1 norm to A2Q's closed form ``‖q‖₁ ≤ (2^(P−1) − 1) / max|x|``,
uses the exact bound, which is looser: after a ReLU it bounds the positive and the negative
weights each by that amount instead of their sum.

The per-tensor scale ``s`` is shared by the neurons of a layer and follows its largest weight
(brevitas' max statistics, rounded up to a power of two). Scaling the neuron that holds it
is futile: once its largest weight falls under the power-of-two threshold, ``s`` halves and
every integer of the layer doubles, its own included (a first version did this and spiralled
the layer's weights down batch after batch). So the layer's largest weight is anchored: that
neuron fits by shrinking its other weights, and ``s`` does not move. The projection
re-checks on the integers brevitas computes and repeats if a neuron still overflows (at most
``MAX_PROJECTION_ROUNDS``). The estimator's exact check after training stays the guarantee;
with this projection it has (almost) nothing left to drop.
"""

from __future__ import annotations

import numpy as np
import torch
from skorch.callbacks import Callback
from torch.nn.utils import prune

from .budget import InputBound, accumulator_bounds, fits_signed
from .circuit_plan import rounding_headroom
from .module import masked_weight

#: Projection passes per call (a pass can halve a layer's shared scale; the next one fixes that).
MAX_PROJECTION_ROUNDS = 4
#: Bisection steps for each scaling factor (2^-14: the factor errs by < 0.01%, on the small side).
BISECTION_STEPS = 14


def _bounds(integers: np.ndarray, input_min: InputBound, input_max: InputBound) -> tuple[np.ndarray, np.ndarray]:
    """``budget.accumulator_bounds`` row by row on float arrays (no bias: Concrete folds it into the lookup)."""
    at_min, at_max = integers * input_min, integers * input_max
    return np.minimum(at_min, at_max).sum(axis=-1), np.maximum(at_min, at_max).sum(axis=-1)


def _largest_fitting_factor(weights: np.ndarray, anchored: np.ndarray, scale: float, n_w_bits: int, fits) -> np.ndarray:
    """Per row, the largest ``c`` in ``[0, 1]`` with ``fits(clamp(round(c · w / s)))`` (bisection).

    ``anchored`` weights are not scaled. ``fits`` maps integer rows to a boolean per row
    and must hold at ``c = 0`` (else the row gets 0) and be monotone: shrinking never moves
    an integer away from 0, so an interval that fits keeps fitting.
    """
    high = 2 ** (n_w_bits - 1) - 1
    low_c = np.zeros((weights.shape[0], 1))
    high_c = np.ones_like(low_c)
    for _ in range(BISECTION_STEPS):
        middle = (low_c + high_c) / 2
        scaled = np.where(anchored, weights, middle * weights)
        ok = fits(np.clip(np.round(scaled / scale), -high - 1, high))[:, None]
        low_c = np.where(ok, middle, low_c)
        high_c = np.where(ok, high_c, middle)
    return low_c[:, 0]


def fitting_factors(
    weights,
    scale: float,
    n_w_bits: int,
    input_min: InputBound,
    input_max: InputBound,
    n_bits: int,
    anchored=None,
    headroom: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per neuron (row of ``weights``), factors for its positive and its negative weights.

    Scaling the positive weights by the first and the negative ones by the second (except
    the ``anchored`` ones, a boolean mask like ``weights``) makes the neuron's exact worst
    case fit a signed ``n_bits`` accumulator at weight scale ``scale`` (1 where it already
    fits; ``headroom``, what rounding before the next lookup may add, counts against the upper
    end). With a signed input range both factors are equal.
    """
    if isinstance(weights, torch.Tensor):
        weights = weights.detach().cpu().numpy()
    weights = np.asarray(weights, dtype=np.float64)
    anchored = np.zeros(weights.shape, dtype=bool) if anchored is None else np.asarray(anchored, dtype=bool)
    limit_low, limit_high = -(2 ** (n_bits - 1)), 2 ** (n_bits - 1) - 1 - headroom
    pos_factor = np.ones(weights.shape[0])
    neg_factor = pos_factor.copy()

    def bounds(q):
        return _bounds(q, input_min, input_max)

    def shrink(rows: np.ndarray, part: np.ndarray, check) -> np.ndarray:
        return _largest_fitting_factor(part[rows], anchored[rows], scale, n_w_bits, check)

    high = 2 ** (n_w_bits - 1) - 1
    low, top = bounds(np.clip(np.round(weights / scale), -high - 1, high))
    if np.all(np.asarray(input_min) >= 0):
        # Unsigned inputs: positive weights alone set the maximum, negative ones the minimum.
        rows = top > limit_high
        if rows.any():
            pos_factor[rows] = shrink(rows, np.maximum(weights, 0), lambda q: bounds(q)[1] <= limit_high)
        rows = low < limit_low
        if rows.any():
            neg_factor[rows] = shrink(rows, np.minimum(weights, 0), lambda q: bounds(q)[0] >= limit_low)
    else:
        rows = (top > limit_high) | (low < limit_low)
        if rows.any():

            def both(q):
                lo, hi = bounds(q)
                return (lo >= limit_low) & (hi <= limit_high)

            pos_factor[rows] = neg_factor[rows] = shrink(rows, weights, both)
    return pos_factor, neg_factor


@torch.no_grad()
def project_layer(module, index: int, n_bits: int) -> int:
    """Scale down the neurons of linear layer ``index`` whose exact worst case overflows ``n_bits``.

    The layer's largest ``|w|`` is anchored (never scaled): it sets the shared power-of-two
    scale, and shrinking it would halve the scale and double every integer of the layer,
    its own neuron's included, so that neuron must fit by shrinking its other weights.
    The scaling applies to the trained weights (``weight_orig`` under a pruning mask, so a
    pruned weight that comes back is as small as its neuron). Returns how many neurons shrank.
    """
    layer = module.linears[index]
    input_min, input_max = module.input_ranges()[index]
    if prune.is_pruned(layer):
        # After an optimizer step ``weight`` is stale until the next forward; quant_weight() reads it.
        layer.weight = layer.weight_orig * layer.weight_mask
    weight = masked_weight(layer).detach().cpu().numpy().astype(np.float64)
    scale = float(layer.quant_weight().scale)
    anchored = np.zeros(weight.shape, dtype=bool)
    anchored.flat[np.argmax(np.abs(weight))] = True
    headroom = rounding_headroom(module, index, n_bits)
    pos_factor, neg_factor = fitting_factors(
        weight, scale, module.n_w_bits, input_min, input_max, n_bits, anchored, headroom
    )
    shrunk = (pos_factor < 1) | (neg_factor < 1)
    if not shrunk.any():
        return 0
    target = layer.weight_orig if prune.is_pruned(layer) else layer.weight
    signs = target.detach().cpu().numpy() > 0
    factors = np.where(anchored, 1.0, np.where(signs, pos_factor[:, None], neg_factor[:, None]))
    target.mul_(torch.as_tensor(factors, dtype=target.dtype, device=target.device))
    if prune.is_pruned(layer):
        layer.weight = layer.weight_orig * layer.weight_mask  # what quant_weight() reads until the next forward
    return int(shrunk.sum())


def overflowing_neurons(module, n_bits: int) -> list[int]:
    """Per linear layer, neurons whose exact worst case (brevitas' own integers) overflows ``n_bits``."""
    counts = []
    for integer in module.integer_layers():
        low, high = accumulator_bounds(integer.weights, None, integer.input_min, integer.input_max)
        counts.append(int((~fits_signed(low, high, n_bits)).sum()))
    return counts


@torch.no_grad()
def project_module(module, n_bits: int) -> list[int]:
    """Project every linear layer of ``module`` onto the ``n_bits`` accumulator budget.

    Returns, per layer, the neuron scalings done. Passes repeat while a layer's shared scale
    moved and left a neuron overflowing (at most ``MAX_PROJECTION_ROUNDS``).
    """
    shrunk = [0] * len(module.linears)
    for _ in range(MAX_PROJECTION_ROUNDS):
        this_round = [project_layer(module, index, n_bits) for index in range(len(module.linears))]
        shrunk = [total + now for total, now in zip(shrunk, this_round)]
        # Nothing shrank: every neuron fit at the current scales (checked on the same integers).
        if not any(this_round) or not any(overflowing_neurons(module, n_bits)):
            break
    return shrunk


class AccumulatorAwareProjection(Callback):
    """Projected training: after every optimizer step, each neuron is shrunk onto its budget.

    Parameters
    ----------
    n_bits : int or None
        Accumulator budget (signed bits). None reads the net's ``accumulator_budget_`` at
        every step, so the projection follows ``_set_accumulator_budget`` (the search's
        narrower candidates) without rebuilding the callback.

    Records ``shrunk_neurons`` in ``history`` each epoch: how many neuron scalings the
    projection did (0 once training has settled inside the budget).
    """

    def __init__(self, n_bits: int | None = None):
        self.n_bits = n_bits

    def budget(self, net) -> int:
        return int(net.accumulator_budget_ if self.n_bits is None else self.n_bits)

    def initialize(self):
        # skorch calls ``on_batch_end`` after the optimizer step. Installed on the instance, not
        # defined on the class: skorch 0.11 warns about *any* class overriding on_batch_end (an
        # old-signature check), though this one has the current signature.
        self.on_batch_end = self._project_after_step
        self._shrunk = 0
        return self

    def on_epoch_begin(self, net, **kwargs):
        self._shrunk = 0

    def _project_after_step(self, net, batch=None, training=False, **kwargs):
        if training:
            self._shrunk = getattr(self, "_shrunk", 0) + sum(project_module(net.module_, self.budget(net)))

    def on_epoch_end(self, net, **kwargs):
        net.history.record("shrunk_neurons", int(getattr(self, "_shrunk", 0)))
