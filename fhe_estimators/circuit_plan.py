"""What a fitted network's circuit will look like, before compiling: per layer, the
accumulator width, the bits Concrete ML's rounding removes and the table-lookup width.

Read off Concrete ML 1.9.0's sources (see :mod:`fhe_estimators.cost` for the PBS count law
they give); :mod:`fhe_estimators.cost` prices the plan with the per-machine PBS table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .budget import accumulator_bounds, signed_bit_width


@dataclass
class LayerPlan:
    """One linear layer as the circuit will compute it."""

    neurons: int
    accumulator_bits: int  # width of the integer accumulator in the circuit
    lsbs_removed: int  # bits rounded away before the TLU (0 for the output layer)
    hidden: bool  # hidden layers cost PBS; the output layer does not
    noise_gain: float  # max over neurons of ‖integer weights‖₂ (Concrete's MANP of this dot)

    @property
    def tlu_bits(self) -> int:
        return self.accumulator_bits - self.lsbs_removed


def parse_rounding(rounding) -> tuple[int | None, bool]:
    """``rounding_threshold_bits`` in Concrete ML's forms -> (n_bits or None, exact?)."""
    if rounding is None:
        return None, True
    if isinstance(rounding, dict):
        method = rounding.get("method", "exact")
        method = str(getattr(method, "name", method)).lower()
        if method not in ("exact", "approximate") or "n_bits" not in rounding:
            raise ValueError(f'rounding_threshold_bits dict needs "n_bits" and an exact/approximate "method"; got {rounding!r}.')
        return int(rounding["n_bits"]), method == "exact"
    if isinstance(rounding, bool) or not isinstance(rounding, (int, np.integer)) or rounding < 1:
        raise ValueError(f"rounding_threshold_bits must be None, a positive int or a dict; got {rounding!r}.")
    return int(rounding), True


def concrete_bits(low: int, high: int) -> int:
    """Bits Concrete gives a value in ``[low, high]`` (``Integer.that_can_represent``)."""
    low, high = int(low), int(high)
    if low < 0:
        return int(signed_bit_width(low, high))
    return max(1, high.bit_length())


def _scale(value) -> float:
    return float(value.detach().cpu().reshape(-1)[0]) if hasattr(value, "detach") else float(value)


def _pot_lsbs(module, index: int) -> int:
    """Concrete ML's power-of-two rounding: ``-(log2 s_in + log2 s_w - log2 s_out)`` when > 0."""
    input_scale = module.input_quant.quant_act_scale() if index == 0 else module.activations[index - 1].quant_act_scale()
    weight_scale = module.linears[index].quant_weight().scale
    output_scale = module.activations[index].quant_act_scale()
    scales = [_scale(s) for s in (input_scale, weight_scale, output_scale)]
    if not all(np.isfinite(s) and s > 0 for s in scales):
        return 0  # a dead layer (all weights or inputs zero): nothing to round, as QuantMLP does
    lsbs = -sum(sign * int(np.rint(np.log2(s))) for sign, s in zip((1, 1, -1), scales))
    return max(0, lsbs)


def headroom_of(lsbs: int, accumulator_bits: int) -> int:
    """What rounding ``lsbs`` low bits (half up) may add to a ``accumulator_bits``-bit accumulator:
    ``2^(lsbs-1)``; 0 without rounding, or when it would remove every bit (a degenerate scale, e.g.
    an activation quantizer that only ever saw zeros, which Concrete's own checks diagnose)."""
    return 2 ** (lsbs - 1) if 0 < lsbs < accumulator_bits else 0


def rounding_headroom(module, index: int, accumulator_bits: int) -> int:
    """What Concrete ML's power-of-two rounding (half up, before a hidden layer's lookup) may add
    to that layer's ``accumulator_bits``-bit accumulator (:func:`headroom_of`); 0 for the output layer.

    An accumulator at exactly ``2^(b-1) - 1`` fits ``b`` signed bits, but rounded up it does not:
    Concrete then compiles ``b + 1`` bits. The exact check counts it (:mod:`.finalize`).
    """
    if index >= len(module.linears) - 1:
        return 0
    return headroom_of(_pot_lsbs(module, index), accumulator_bits)


def calibration_accumulator_bits(module, X: np.ndarray, n_bits: int) -> tuple[list[int], list[int]]:
    """Accumulator widths over ``X`` and the lsbs ``rounding_threshold_bits=n_bits`` removes.

    Reproduces Concrete ML's calibration pass (``cnp_round(calibrate_rounding=True)``) in
    numpy: quantize the input, accumulate with the integer weights, round ``max(0, b - n)``
    bits, apply bias + ReLU + the activation quantizer, next layer. Only the hidden layers
    round; the output layer's entry is its width with 0 lsbs.
    """
    import torch

    with torch.no_grad():
        layers = module.integer_layers()
        low, high = module.input_ranges()[0]
        scale = _scale(module.input_quant.quant_act_scale())
        q = np.clip(np.rint(np.asarray(X, dtype=np.float64) / scale), low, high).astype(np.int64)
        widths, removed = [], []
        for index, layer in enumerate(layers):
            accumulator = q @ layer.weights.T
            bits = concrete_bits(accumulator.min(), accumulator.max()) if accumulator.size else 1
            widths.append(bits)
            if index == len(layers) - 1:
                removed.append(0)
                break
            lsbs = max(0, bits - n_bits)
            removed.append(lsbs)
            if lsbs:
                accumulator = np.floor_divide(accumulator + (1 << (lsbs - 1)), 1 << lsbs) << lsbs
            linear, activation = module.linears[index], module.activations[index]
            weight_scale = _scale(linear.quant_weight().scale)
            bias = linear.bias.detach().cpu().numpy().astype(np.float64)
            z = accumulator * (scale * weight_scale) + bias
            scale = _scale(activation.quant_act_scale())
            q = np.rint(np.clip(np.maximum(z, 0.0) / scale, 0, 2**module.n_a_bits - 1)).astype(np.int64)
    return widths, removed


def hint_bits(low: int, high: int, lsbs: int) -> int:
    """What :func:`fhe_estimators.compilation.compile_module` makes each accumulator (its worst case
    plus the rounding's headroom): the circuit's accumulator width."""
    headroom = headroom_of(lsbs, int(signed_bit_width(low, high)))
    return int(signed_bit_width(low, high + headroom))


def plan_circuit(
    module,
    accumulator_ranges: Sequence[tuple[int, int]] | None = None,
    *,
    rounding_threshold_bits=None,
    calibration: np.ndarray | None = None,
    notes: list[str] | None = None,
) -> list[LayerPlan]:
    """Each linear layer as the compiled circuit will have it (no compilation)."""
    notes = [] if notes is None else notes
    layers = module.integer_layers()
    if accumulator_ranges is None:
        accumulator_ranges = []
        for layer in layers:
            low, high = accumulator_bounds(layer.weights, None, layer.input_min, layer.input_max)
            accumulator_ranges.append((int(low.min()), int(high.max())))
    n_bits, _ = parse_rounding(rounding_threshold_bits)
    n_hidden = len(layers) - 1
    if n_bits is None:
        removed = [_pot_lsbs(module, index) for index in range(n_hidden)] + [0]
    else:
        if calibration is None:
            # Without data, each layer's calibrated width is taken as its worst case (an upper
            # bound: more lsbs removed, so exact rounding's PBS count may be overestimated).
            notes.append("no calibration data: rounding_threshold_bits applied to worst-case accumulator widths")
            removed = [max(0, concrete_bits(low, high) - n_bits) for low, high in accumulator_ranges[:-1]] + [0]
        else:
            _, removed = calibration_accumulator_bits(module, calibration, n_bits)
    plan = []
    for index, (layer, (low, high), lsbs) in enumerate(zip(layers, accumulator_ranges, removed)):
        bits = hint_bits(low, high, lsbs)
        if index < n_hidden and lsbs >= bits:
            # Concrete refuses this circuit (compile_module explains why); price what is left.
            notes.append(
                f"layer {index}'s rounding would remove all {bits} bits of its accumulator: Concrete cannot "
                "compile this network (degenerate quantization scales); priced as if 1 bit were kept"
            )
            lsbs = bits - 1
        gain = float(np.sqrt((layer.weights.astype(np.float64) ** 2).sum(axis=1)).max()) if layer.weights.size else 0.0
        plan.append(LayerPlan(int(layer.weights.shape[0]), bits, int(lsbs), index < n_hidden, gain))
    return plan
