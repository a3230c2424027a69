"""After training: masks made permanent, the exact accumulator check and repair, neuron removal, reports.

The keep counts (how many weights each neuron may keep) drive the pruning callback during
training and the final masks here. Once the masks are permanent, the exact worst case of
every neuron is computed on its *integer* weights; a neuron that could overflow
``accumulator_budget`` bits loses its smallest weights until it fits. FHE wraps around
silently on overflow, so this check, not the training, is the guarantee.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from .accumulator_aware import project_module
from .budget import (
    accumulator_bounds,
    enforce_accumulator_budget,
    kept_weights_per_neuron,
    largest_weights_that_fit,
    signed_bit_width,
)
from .module import QuantMLP
from .pruning import make_masks_permanent, nonzero_per_neuron, set_row_masks, unmasked_weight

#: Dropping weights or neurons can shrink a per-tensor scale, so the check repeats; this often at most.
MAX_REPAIR_ROUNDS = 10


class PruningReports(NamedTuple):
    """What the estimator stores after finalizing, one entry per linear layer."""

    pruning_report: list[dict]  # -> ``pruning_report_``
    max_nonzero_per_neuron: list[int]  # -> ``max_nonzero_per_neuron_``
    accumulator_bits: list[int]  # -> ``accumulator_bits_``
    accumulator_ranges: list[tuple[int, int]]  # -> ``accumulator_ranges_``


def weight_caps(module: QuantMLP, layer_omegas: list[int], multiplier: float) -> list[int]:
    """``k = min(fan_in, floor(multiplier × Ω))`` per linear layer, at the layer's current fan-in."""
    return [
        kept_weights_per_neuron(linear.in_features, layer_omega, multiplier)
        for linear, layer_omega in zip(module.linears, layer_omegas)
    ]


def exact_keep_counts(module: QuantMLP, accumulator_budget: int) -> list[np.ndarray]:
    """Exact-budget mode: per neuron, its largest weights whose exact worst case fits."""
    counts = []
    for index, (linear, (low, high)) in enumerate(zip(module.linears, module.input_ranges())):
        weight = unmasked_weight(linear)
        integers = module.quantize_weights(index, weight)
        magnitudes = weight.detach().abs().cpu().numpy()
        counts.append(largest_weights_that_fit(integers, magnitudes, low, high, accumulator_budget))
    return counts


def keep_counts(
    module: QuantMLP, pruning_budget: str, layer_omegas: list[int], multiplier: float, accumulator_budget: int
) -> list[np.ndarray]:
    """Per layer, the weights each neuron may keep under ``pruning_budget``.

    ``floor(multiplier × Ω)`` (Ω from the layer's input bits) caps every
    neuron in every mode, the rule of Concrete ML's pruning page; "exact"
    keeps fewer where the exact worst case of that many would overflow.

    "l1" (accumulator-aware) keeps the cap too, and first scales each
    overflowing neuron's weights down until its exact worst case fits
    ``accumulator_budget`` (:func:`accumulator_aware.project_module`, the
    projection its training callback applies after every step). Doing it
    here as well means a budget set since the last step (the search's
    narrower candidates, ``_set_accumulator_budget``) is met by smaller
    weights at the next mask update or finalize, not by dropped ones.
    """
    caps = weight_caps(module, layer_omegas, multiplier)
    if pruning_budget == "l1":
        project_module(module, accumulator_budget)
    if pruning_budget in ("count", "l1"):
        return [np.full(linear.out_features, cap) for linear, cap in zip(module.linears, caps)]
    return [np.minimum(counts, cap) for counts, cap in zip(exact_keep_counts(module, accumulator_budget), caps)]


def finalize_pruning(
    module: QuantMLP, keep_counts: list[np.ndarray], accumulator_budget: int
) -> tuple[list[int], list[int]]:
    """Make masks permanent, then check and repair until stable.

    Returns, per layer, the weights the exact check dropped and the hidden
    neurons removed (if any were, the caller's optimizer holds stale parameters).
    """
    layers = list(module.linears)
    for layer, k in zip(layers, keep_counts):
        # Top-k of the weights as trained (masked ones are 0 and stay out).
        set_row_masks(layer, k, source=layer.weight.detach().clone())
    make_masks_permanent(module)

    dropped, removed = [0] * len(layers), [0] * len(layers)
    for _ in range(MAX_REPAIR_ROUNDS):
        changed = drop_overflowing_weights(module, accumulator_budget, dropped)
        changed = remove_dead_neurons(module, removed) or changed
        if not changed:
            break
    return dropped, removed


def drop_overflowing_weights(module: QuantMLP, accumulator_budget: int, dropped: list[int]) -> bool:
    """The exact check: drop each neuron's smallest weights until its worst case fits (counts into ``dropped``)."""
    changed = False
    for index, (layer, integer) in enumerate(zip(module.linears, module.integer_layers())):
        keep = enforce_accumulator_budget(
            integer.weights, None, integer.input_min, integer.input_max, accumulator_budget
        )
        drop = (integer.weights != 0) & ~keep
        if drop.any():
            with torch.no_grad():
                layer.weight[torch.from_numpy(drop)] = 0.0
            dropped[index] += int(drop.sum())
            changed = True
    return changed


def remove_dead_neurons(module: QuantMLP, removed: list[int]) -> bool:
    """Take hidden neurons with no incoming weight out of the network (fewer PBS; counts into ``removed``)."""
    changed = False
    for index, layer in enumerate(module.linears[:-1]):
        dead = np.flatnonzero(nonzero_per_neuron(layer.weight) == 0)
        dead = dead[: layer.out_features - 1]  # a layer keeps at least one neuron
        if len(dead):
            module.remove_hidden_neurons(index, dead)
            removed[index] += len(dead)
            changed = True
    return changed


def build_reports(
    module: QuantMLP,
    dropped: list[int],
    removed: list[int],
    *,
    layer_omegas: list[int],
    multiplier: float,
    pruning_budget: str,
) -> PruningReports:
    """Per layer: fan-in, Ω, kept non-zeros, sparsity and the exact accumulator bits and range."""
    report, bits, ranges = [], [], []
    caps = weight_caps(module, layer_omegas, multiplier)
    for index, (layer, integer) in enumerate(zip(module.linears, module.integer_layers())):
        low, high = accumulator_bounds(integer.weights, None, integer.input_min, integer.input_max)
        neuron_bits = signed_bit_width(low, high)
        nonzero = nonzero_per_neuron(integer.weights)
        float_nonzero = nonzero_per_neuron(layer.weight)
        bits.append(int(neuron_bits.max()))
        ranges.append((int(low.min()), int(high.max())))
        report.append(
            {
                "layer": index,
                "fan_in": int(integer.weights.shape[1]),
                "neurons": int(integer.weights.shape[0]),
                "neurons_removed": removed[index],
                "omega": layer_omegas[index],
                "budget": pruning_budget,
                "k": caps[index],
                "max_nonzero": int(nonzero.max()),
                "mean_nonzero": float(nonzero.mean()),
                "max_nonzero_float": int(float_nonzero.max()),
                "sparsity": float(1.0 - nonzero.sum() / integer.weights.size),
                "dropped_by_check": dropped[index],
                "accumulator_bits": int(neuron_bits.max()),
                "neuron_accumulator_bits": neuron_bits.tolist(),
            }
        )
    return PruningReports(report, caps, bits, ranges)
