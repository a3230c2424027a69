"""The quantized MLP trained by the estimators, built from brevitas layers.

Layout (the graph Concrete ML's ``compile_brevitas_qat_model`` imports)::

    QuantIdentity(n_input_bits, signed)        # quantizes the model input (a fixed step if input_scale)
    QuantLinear(n_w_bits) -> QuantReLU(n_a_bits, unsigned)   # × each hidden layer
    QuantLinear(n_w_bits)                      # outputs (logits / regression values)

Every scale is a power of two (Concrete ML's PoT quantizers), which lets
Concrete ML replace each requantization by a cheap rounding before the table
lookup. Biases stay in float: Concrete ML then folds them into the table
lookup, so they never enter the integer accumulator.

That rounding happens on the accumulator *before* the float bias is added, so
the circuit does not compute what brevitas alone would. The forward pass
therefore reproduces it (with a straight-through gradient): the network is
trained, and predicts in the clear, exactly as it will run in FHE.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import brevitas.nn as qnn
import numpy as np
import torch
from concrete.ml.quantization.qat_quantizers import Int8ActPerTensorPoT, Int8WeightPerTensorPoT
from torch import nn

from . import fast_quant
from .budget import InputBound
from .input_grid import check_input_scale


#: The most low bits ``round_accumulator`` removes: an accumulator is far below 2^63 (at most
#: fan-in × 2^(n_w_bits + n_a_bits)), so removing more gives the same 0.
MAX_ROUNDED_BITS = 64


@dataclass
class IntegerLayer:
    """What a linear layer looks like to the FHE circuit: integers only."""

    weights: np.ndarray  # (n_neurons, fan_in) integer weights
    input_min: InputBound  # smallest integer each input can take (one for all, or per column)
    input_max: InputBound  # largest integer each input can take


def remember_scale(quantizer: nn.Module, inputs, output) -> None:
    """Forward hook of each weight quantizer: keep the scale it just gave, so that
    ``round_accumulator`` reads the very scale the layer used instead of quantizing the
    weights a second time (a third of the forward pass in brevitas' Python)."""
    quantizer.last_scale = output.scale.detach()


def activation_scale(activation: nn.Module) -> torch.Tensor:
    """The activation quantizer's scale as in eval mode: what ``quant_act_scale()`` returns (the
    running statistics while they are collected, the learned scale after), read from the scaling
    module alone instead of quantizing a sentinel with the whole proxy switched to eval and back."""
    tensor_quant = activation.act_quant.fused_activation_quant_proxy.tensor_quant
    scaling = tensor_quant.scaling_impl
    was_training = scaling.training
    scaling.training = False  # its eval branch only reads its buffer or parameter, not the input
    try:
        threshold = scaling(activation.act_quant._zero_hw_sentinel())
    finally:
        scaling.training = was_training
    return threshold / tensor_quant.int_scaling_impl(tensor_quant.msb_clamp_bit_width_impl())


def masked_weight(linear: nn.Module) -> torch.Tensor:
    """The layer's float weight with its pruning mask, recomputed (torch's pruning hook only
    refreshes ``weight`` when the layer itself is called)."""
    if hasattr(linear, "weight_mask"):
        return linear.weight_orig * linear.weight_mask
    return linear.weight


def round_accumulator(z: torch.Tensor, bias: torch.Tensor, unit: torch.Tensor, output_scale: torch.Tensor) -> torch.Tensor:
    """Round the integer accumulator of ``z`` (a linear layer's output: ``unit`` × integers + ``bias``)
    the way Concrete ML's PoT pass does.

    Concrete removes ``log2(output_scale / unit)`` low bits of the accumulator (round half up)
    before the table lookup adds the bias and applies the activation. The gradient passes
    straight through. ``unit`` is the input scale times the weight scale.
    """
    ratio = float(output_scale / unit)
    if not math.isfinite(ratio) or ratio <= 0:
        # A dead layer (every weight, or every input, pruned or decayed to zero): nothing to
        # round. Seen with a strong weight decay on a small network: 0 / 0 here.
        return z
    # Past MAX_ROUNDED_BITS every accumulator rounds to 0 anyway (a layer whose input scale
    # collapsed: seen with two hidden layers at a strong weight decay, where 2**lsbs overflowed).
    lsbs = min(int(round(math.log2(ratio))), MAX_ROUNDED_BITS)
    if lsbs <= 0:
        return z
    step = float(2**lsbs)
    accumulator = torch.round((z - bias).detach() / unit)
    rounded = torch.floor(accumulator / step + 0.5) * step
    return z + (rounded - accumulator) * unit


class QuantMLP(nn.Module):
    """Multi-layer perceptron with quantized weights and activations.

    Parameters
    ----------
    input_dim, output_dim : sizes of the input and output layers.
    hidden_layer_sizes : widths of the hidden layers (may be empty).
    n_w_bits, n_a_bits : bit-widths of weights and of hidden activations.
    n_input_bits : bit-width of the model input (default: ``n_a_bits``).
    input_scale : a fixed power-of-two step for the model input (:mod:`~.input_grid`); None
        lets brevitas learn it.
    input_bounds : per input column, the (lowest, highest) values it is read at (the
        estimator clips inputs to its training data's range, :func:`~.input_grid.clip_to_bounds`),
        which narrow each column's integer range in the accumulator bounds; None: the
        quantizer's full range for every column.
    collect_stats_steps : training steps over which each activation quantizer
        measures its input range before its scale becomes a learned parameter.
        Until then the scale is not settled, so it must end well before training
        does (brevitas' default, 300 steps, is longer than many tabular fits).
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        hidden_layer_sizes: Sequence[int] = (64,),
        n_w_bits: int = 3,
        n_a_bits: int = 3,
        collect_stats_steps: int = 300,
        n_input_bits: int | None = None,
        input_scale: float | None = None,
        input_bounds: tuple[Sequence[float], Sequence[float]] | None = None,
    ):
        super().__init__()
        #: What rebuilds an identical module (brevitas layers do not pickle; see ``to_state``).
        self.init_kwargs = dict(
            input_dim=input_dim,
            output_dim=output_dim,
            hidden_layer_sizes=tuple(hidden_layer_sizes),
            n_w_bits=n_w_bits,
            n_a_bits=n_a_bits,
            collect_stats_steps=collect_stats_steps,
            n_input_bits=n_input_bits,
            input_scale=input_scale,
            input_bounds=None if input_bounds is None else tuple(list(map(float, end)) for end in input_bounds),
        )
        self.input_bounds = None if input_bounds is None else tuple(np.asarray(end, dtype=np.float64) for end in input_bounds)
        self.n_w_bits = n_w_bits
        self.n_a_bits = n_a_bits
        self.n_input_bits = n_a_bits if n_input_bits is None else n_input_bits
        # brevitas' constant scaling takes the threshold: the step times 2^(bits-1) when signed.
        fixed = {}
        if input_scale is not None:
            threshold = check_input_scale(input_scale) * 2 ** (self.n_input_bits - 1)
            fixed = {"scaling_impl_type": "const", "scaling_init": threshold}
        self.input_quant = qnn.QuantIdentity(
            bit_width=self.n_input_bits,
            signed=True,
            act_quant=Int8ActPerTensorPoT,
            return_quant_tensor=True,
            collect_stats_steps=collect_stats_steps,
            **fixed,
        )
        sizes = [input_dim, *hidden_layer_sizes, output_dim]
        self.linears = nn.ModuleList(
            qnn.QuantLinear(
                fan_in,
                fan_out,
                bias=True,
                weight_bit_width=n_w_bits,
                weight_quant=Int8WeightPerTensorPoT,
                bias_quant=None,
                return_quant_tensor=False,
            )
            for fan_in, fan_out in zip(sizes[:-1], sizes[1:])
        )
        for linear in self.linears:
            linear.weight_quant.register_forward_hook(remember_scale)
        self.activations = nn.ModuleList(
            qnn.QuantReLU(
                bit_width=n_a_bits,
                signed=False,
                act_quant=Int8ActPerTensorPoT,
                return_quant_tensor=True,
                collect_stats_steps=collect_stats_steps,
            )
            for _ in hidden_layer_sizes
        )

        #: Reproduce Concrete ML's accumulator rounding in ``forward`` (off while exporting).
        self.round_like_concrete = True
        #: False while ``float_pretraining`` trains the same weights unquantized (see
        #: :class:`~fhe_estimators.callbacks.FloatPretraining`); always True once trained.
        self.quantized = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.quantized:
            return self._float_forward(x)
        plan = self._fast_quantizers() if self.round_like_concrete and torch._C._get_tracing_state() is None else None
        if plan is not None:
            return self._fast_forward(x, plan)
        x = self.input_quant(x)
        for linear, activation in zip(self.linears[:-1], self.activations):
            z = linear(x)
            if self.round_like_concrete:
                # The weight scale ``linear`` has just used (:func:`remember_scale`).
                unit = x.scale.detach() * linear.weight_quant.last_scale
                z = round_accumulator(z, linear.bias, unit, activation_scale(activation).detach())
            x = activation(z)
        return self.linears[-1](x)

    #: Whether :meth:`forward` may take :meth:`_fast_forward` (False: always brevitas' layers).
    use_fast_quantizers = True

    def _fast_quantizers(self) -> dict | None:
        """The :class:`~.fast_quant.FastQuantizer` of every quantizer (``"input"``, ``"weights"``,
        ``"activations"``) when :meth:`_fast_forward` computes what brevitas' layers do
        (:func:`~.fast_quant.supports_layers`); None otherwise. Kept between calls, and built anew
        whenever brevitas has replaced a quantizer module (it does for a weight's on
        ``prune.remove`` and for every one on ``load_state_dict``: the kept ones would compute with
        stale scales) or a hook was added (:func:`~.fast_quant.unhooked`, checked on every call)."""
        layers = (self.input_quant, self.linears, self.activations)
        if not self.use_fast_quantizers or not fast_quant.unhooked(*layers, weight_hook=remember_scale):
            return None
        tensor_quants = {
            "input": fast_quant.activation_tensor_quant(self.input_quant),
            "weights": [linear.weight_quant.tensor_quant for linear in self.linears],
            "activations": [fast_quant.activation_tensor_quant(activation) for activation in self.activations],
        }
        plan = self.__dict__.get("_fast_quantizer_plan")
        if plan is None or not fast_quant.plan_matches(plan, tensor_quants):
            if not fast_quant.supports_layers(*layers):
                return None
            plan = self.__dict__["_fast_quantizer_plan"] = {
                "input": fast_quant.FastQuantizer(tensor_quants["input"]),
                "weights": [fast_quant.FastQuantizer(quant) for quant in tensor_quants["weights"]],
                "activations": [fast_quant.FastQuantizer(quant) for quant in tensor_quants["activations"]],
            }
        return plan

    def _fast_forward(self, x: torch.Tensor, plan: dict) -> torch.Tensor:
        """:meth:`forward` through brevitas' quantizer functions rather than its layers
        (:mod:`.fast_quant`, ``plan`` from :meth:`_fast_quantizers`): the same tensors and gradients,
        a training step 1.7–1.9× faster."""
        x, x_scale = plan["input"](self.input_quant.act_quant.fused_activation_quant_proxy.activation_impl(x))
        hidden = zip(self.linears[:-1], plan["weights"], self.activations, plan["activations"])
        for linear, weight_quantizer, activation, activation_quantizer in hidden:
            z, weight_scale = self._fast_linear(linear, weight_quantizer, x)
            threshold = activation_quantizer.settled_threshold()
            if threshold is None:  # statistics still collected: brevitas' eval-mode scale
                output_scale = activation_scale(activation).detach()
            else:
                output_scale = (threshold / activation_quantizer.int_threshold).detach()
            z = round_accumulator(z, linear.bias, x_scale.detach() * weight_scale, output_scale)
            relu = activation.act_quant.fused_activation_quant_proxy.activation_impl
            x, x_scale = activation_quantizer(relu(z), threshold)
        z, _ = self._fast_linear(self.linears[-1], plan["weights"][-1], x)
        return z

    @staticmethod
    def _fast_linear(linear: nn.Module, weight_quantizer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A ``QuantLinear`` (float bias) on the quantized input value ``x``, and its weight scale
        (kept as :func:`remember_scale` keeps it)."""
        weights, scale = weight_quantizer(fast_quant.run_pre_hooks(linear, x))
        linear.weight_quant.last_scale = scale.detach()
        return nn.functional.linear(x, weights, linear.bias), linear.weight_quant.last_scale

    def outputs_on(self, X) -> np.ndarray:
        """Outputs on a whole array in one call, in eval mode and without gradients (the
        training mode is restored): what predictions in the clear and training scores read."""
        device = next(self.parameters()).device
        inputs = torch.as_tensor(np.asarray(X), dtype=torch.float32, device=device)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                return self(inputs).cpu().numpy()
        finally:
            self.train(was_training)

    def _float_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The same network with every quantizer off: float weights (pruning masks applied), ReLU.

        The activation quantizers are not called, so their range statistics are collected
        once quantization starts, on the pre-trained network's activations.
        """
        for linear in self.linears[:-1]:
            x = torch.relu(nn.functional.linear(x, masked_weight(linear), linear.bias))
        last = self.linears[-1]
        return nn.functional.linear(x, masked_weight(last), last.bias)

    @contextmanager
    def exporting(self) -> Iterator["QuantMLP"]:
        """The plain brevitas graph, for Concrete ML to import (it adds the rounding itself)."""
        previous, self.round_like_concrete = self.round_like_concrete, False
        try:
            yield self
        finally:
            self.round_like_concrete = previous

    def input_ranges(self) -> list[tuple[InputBound, InputBound]]:
        """Integer range of each linear layer's input: the first layer's per column
        (:meth:`first_input_range`), the others' as their activation quantizer defines it."""
        hidden = (0, 2**self.n_a_bits - 1)
        return [self.first_input_range()] + [hidden] * (len(self.linears) - 1)

    @torch.no_grad()
    def first_input_range(self) -> tuple[InputBound, InputBound]:
        """Integer range of the model input: the quantizer's signed range, narrowed per column to
        what the column's ``input_bounds`` can produce at the current step.

        A one-hot or indicator column (training values 0 and 1) then reads as 0 or ``1 / step``
        (0..4 at a 0.25 step) instead of -16..15 at 5 bits: its weight widens only one side of
        the accumulator, and far less. Floor and ceiling keep the range a superset of what any
        rounding of a clipped input gives."""
        low, high = -(2 ** (self.n_input_bits - 1)), 2 ** (self.n_input_bits - 1) - 1
        if self.input_bounds is None:
            return low, high
        scale = float(self.input_quant.quant_act_scale())
        if not math.isfinite(scale) or scale <= 0:
            return low, high
        lowest, highest = self.input_bounds
        return (
            np.clip(np.floor(lowest / scale), low, high).astype(np.int64),
            np.clip(np.ceil(highest / scale), low, high).astype(np.int64),
        )

    @torch.no_grad()
    def extreme_inputs(self) -> np.ndarray:
        """In-range inputs driving each first-layer accumulator to its maximum and its minimum.

        Two rows per first-layer neuron: every input at the end of its range
        that pushes the sum up (or down). Added to the calibration data, they
        make Concrete size the first layer for its true worst case, even when
        the calibration data alone is narrow (or constant).
        """
        low, high = self.input_ranges()[0]
        weights = self.integer_layers()[0].weights
        to_max = np.where(weights > 0, high, low)
        to_min = np.where(weights > 0, low, high)
        scale = float(self.input_quant.quant_act_scale())
        return (np.concatenate([to_max, to_min]) * scale).astype(np.float32)

    @torch.no_grad()
    def integer_layers(self) -> list[IntegerLayer]:
        """Integer weights and input ranges of every linear layer, as brevitas quantizes them."""
        layers = []
        for linear, (low, high) in zip(self.linears, self.input_ranges()):
            weights = linear.quant_weight().int().cpu().numpy().astype(np.int64)
            layers.append(IntegerLayer(weights, low, high))
        return layers

    @torch.no_grad()
    def quantize_weights(self, index: int, weights: torch.Tensor) -> np.ndarray:
        """Integers ``weights`` would get with layer ``index``'s current weight quantizer.

        Used to rank candidate weights (e.g. pruned ones that may come back)
        exactly as the circuit would see them.
        """
        linear = self.linears[index]
        scale = linear.quant_weight().scale.detach()
        high = 2 ** (self.n_w_bits - 1) - 1
        integers = torch.clamp(torch.round(weights.detach() / scale), -high - 1, high)
        return integers.cpu().numpy().astype(np.int64)

    @torch.no_grad()
    def remove_hidden_neurons(self, index: int, neurons: np.ndarray) -> None:
        """Physically remove hidden ``neurons`` of linear layer ``index`` whose weights are all 0.

        Such a neuron outputs a constant (its quantized ``ReLU(bias)``), so its
        contribution is folded into the next layer's bias and the network
        computes the same function with fewer neurons (fewer table lookups).
        """
        layer, following = self.linears[index], self.linears[index + 1]
        if index >= len(self.activations):
            raise ValueError("Only hidden layers (not the output layer) can lose neurons.")
        if torch.count_nonzero(layer.weight[neurons]):
            raise ValueError("Only neurons whose incoming weights are all zero can be removed.")
        constant = self.activations[index](layer.bias[neurons].unsqueeze(0)).value.squeeze(0)
        following_weight = following.quant_weight().value
        following.bias += following_weight[:, neurons] @ constant
        keep = np.setdiff1d(np.arange(layer.out_features), neurons)
        # Shrink the parameters in place: brevitas tracks these very Parameter objects.
        layer.weight.data = layer.weight.data[keep].clone()
        layer.bias.data = layer.bias.data[keep].clone()
        following.weight.data = following.weight.data[:, keep].clone()
        layer.out_features = following.in_features = len(keep)

    def hidden_sizes(self) -> list[int]:
        """Current widths of the hidden layers (after any neuron removal)."""
        return [linear.out_features for linear in self.linears[:-1]]

    def to_state(self) -> dict:
        """A picklable description: constructor arguments (current widths) and weights."""
        return {"init": {**self.init_kwargs, "hidden_layer_sizes": tuple(self.hidden_sizes())}, "weights": self.state_dict()}

    @classmethod
    def from_state(cls, state: dict) -> "QuantMLP":
        """Rebuild a module saved with :meth:`to_state`."""
        module = cls(**state["init"])
        module.load_state_dict(state["weights"])
        return module.eval()
