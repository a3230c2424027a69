"""brevitas' quantizers computed with brevitas' own functions, without its layers of modules.

A brevitas layer reaches its quantizer through a proxy, a ``QuantTensor`` and a dozen nested
modules (``RescalingIntQuant`` -> ``IntQuant`` -> ``RoundSte`` ...), and recomputes constants such
as the integer range from the bit width as tensor arithmetic on every call: about 250 µs per
quantizer on our small networks, where the arithmetic that matters takes a fraction of it, and a
training step calls four or more. :class:`FastQuantizer` does what ``RescalingIntQuant.forward``
does, step for step, with the same functions (``round_ste``, ``ceil_ste``, ``tensor_clamp_ste``,
``abs_binary_sign_grad``, ...), its constants computed once, so that values and gradients are
the same to the bit. What it does not reproduce it asks of brevitas' own module: an activation's
scale while its statistics are collected (the first training steps), a constant input scale.

:func:`supports_layers` checks that every quantizer of a network is built the way this
reproduces (the quantizers of Concrete ML's ``Int8ActPerTensorPoT`` and ``Int8WeightPerTensorPoT``)
and that no layer has a hook this path would skip; otherwise the network keeps brevitas' layers
(:meth:`~.module.QuantMLP.forward`). tests/test_fast_quant.py trains the same network both ways
and compares every parameter, buffer and gradient after every step.
"""

from __future__ import annotations

from typing import Callable

import torch
from brevitas.core.bit_width.const import BitWidthConst
from brevitas.core.function_wrapper.clamp import TensorClamp
from brevitas.core.function_wrapper.misc import Identity, LogTwo, PowerOfTwo
from brevitas.core.function_wrapper.ops_ste import CeilSte, RoundSte, ScalarClampMinSte, TensorClampSte
from brevitas.core.function_wrapper.shape import OverTensorView
from brevitas.core.quant.delay import _NoDelay
from brevitas.core.quant.int import RescalingIntQuant
from brevitas.core.restrict_val import PowerOfTwoRestrictValue
from brevitas.core.scaling.int_scaling import PowerOfTwoIntScaling
from brevitas.core.scaling.runtime import StatsFromParameterScaling
from brevitas.core.scaling.standalone import ParameterFromRuntimeStatsScaling
from brevitas.core.stats.stats_op import AbsMax
from brevitas.core.zero_point import ZeroZeroPoint
from brevitas.function.ops import max_int, min_int, tensor_clamp
from brevitas.function.ops_ste import abs_binary_sign_grad, ceil_ste, round_ste, scalar_clamp_min_ste, tensor_clamp_ste
from brevitas.function.shape import over_tensor
from torch import nn
from torch.nn.modules import module as torch_module
from torch.nn.utils.prune import BasePruningMethod

#: The clamp each ``tensor_clamp_impl`` module stands for (weights: straight-through; activations: plain).
CLAMPS = {TensorClampSte: tensor_clamp_ste, TensorClamp: tensor_clamp}


def supports(tensor_quant: nn.Module) -> bool:
    """Whether :class:`FastQuantizer` computes what ``tensor_quant`` does."""
    if type(tensor_quant) is not RescalingIntQuant:
        return False
    int_quant = tensor_quant.int_quant
    return (
        type(int_quant.float_to_int_impl) is RoundSte
        and type(int_quant.tensor_clamp_impl) in CLAMPS
        and type(int_quant.delay_wrapper.delay_impl) is _NoDelay
        and type(tensor_quant.zero_point_impl) is ZeroZeroPoint
        and type(tensor_quant.int_scaling_impl) is PowerOfTwoIntScaling
        and type(tensor_quant.msb_clamp_bit_width_impl) is BitWidthConst
    )


def _power_of_two_ceil(restrict: nn.Module) -> bool:
    return type(restrict) is PowerOfTwoRestrictValue and type(restrict.float_to_int_impl) is CeilSte and type(restrict.power_of_two) is PowerOfTwo


#: A ``clamp_min_ste`` module this does not reproduce.
UNKNOWN_CLAMP = object()


def _clamp_min_value(clamp: nn.Module):
    """A ``clamp_min_ste`` module's lower bound (None: brevitas' ``Identity``, no clamp)."""
    if type(clamp) is ScalarClampMinSte:
        return clamp.min_val
    return None if type(clamp) is Identity else UNKNOWN_CLAMP


class FastQuantizer:
    """One ``RescalingIntQuant``'s forward; the bit width's constants computed once."""

    def __init__(self, tensor_quant: nn.Module):
        self.tensor_quant = tensor_quant
        int_quant = tensor_quant.int_quant
        bit_width = tensor_quant.msb_clamp_bit_width_impl()
        self.int_threshold = max_int(tensor_quant.int_scaling_impl.signed, False, bit_width) + 1
        self.zero_point = tensor_quant.zero_point_impl.zero_point()
        self.min_int = min_int(int_quant.signed, int_quant.narrow_range, bit_width)
        self.max_int = max_int(int_quant.signed, int_quant.narrow_range, bit_width)
        self.clamp = CLAMPS[type(int_quant.tensor_clamp_impl)]
        scaling = tensor_quant.scaling_impl
        self._weight_stats = self._learned = False
        if type(scaling) is StatsFromParameterScaling:
            stats, stats_scaling = scaling.parameter_list_stats, scaling.stats_scaling_impl
            restrict = stats_scaling.restrict_clamp_scaling
            self._min_val = _clamp_min_value(restrict.clamp_min_ste)
            self._weight_stats = (
                stats.extra_tracked_params_list is None
                and type(stats.first_tracked_param.view_shape_impl) is OverTensorView
                and type(stats.stats.stats_impl) is AbsMax
                and stats.stats.stats_impl.stats_reduce_dim is None
                and type(stats_scaling.restrict_scaling_pre) is LogTwo
                and type(stats_scaling.affine_rescaling) is Identity
                and _power_of_two_ceil(restrict.restrict_value_impl)
                and self._min_val is not UNKNOWN_CLAMP
            )
        elif type(scaling) is ParameterFromRuntimeStatsScaling:
            self._min_val = _clamp_min_value(scaling.clamp_scaling.clamp_min_ste)
            self._learned = _power_of_two_ceil(scaling.restrict_scaling.restrict_value_impl) and self._min_val is not UNKNOWN_CLAMP

    def _clamp_min(self, x: torch.Tensor) -> torch.Tensor:
        return x if self._min_val is None else scalar_clamp_min_ste(x, self._min_val)

    def settled_threshold(self) -> torch.Tensor | None:
        """An activation's threshold once its statistics are collected (its learned parameter, the
        same in training and eval mode, as ``ParameterFromRuntimeStatsScaling`` gives it); None before."""
        scaling = self.tensor_quant.scaling_impl
        if not self._learned or scaling.counter <= scaling.collect_stats_steps:
            return None
        return abs_binary_sign_grad(self._clamp_min(2.0 ** ceil_ste(scaling.value)))

    def _threshold(self, x: torch.Tensor) -> torch.Tensor:
        """``scaling_impl(x)``: the weights' ``StatsFromParameterScaling`` step for step, a settled
        activation's parameter, and brevitas' own module for anything else."""
        if self._weight_stats:
            stats = self.tensor_quant.scaling_impl.parameter_list_stats
            tracked = stats.first_tracked_param.parameter
            threshold = torch.max(torch.abs(tracked.reshape(over_tensor(tracked)))).view(stats.stats.stats_output_shape)
            return self._clamp_min(2.0 ** ceil_ste(torch.log2(threshold)))
        settled = self.settled_threshold()
        return self.tensor_quant.scaling_impl(x) if settled is None else settled

    def __call__(self, x: torch.Tensor, threshold: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The quantized value of ``x`` and its scale (``threshold``: the scale's threshold if already computed)."""
        if threshold is None:
            threshold = self._threshold(x)
        scale = threshold / self.int_threshold
        y = x / scale  # IntQuant.to_int ...
        y = y + self.zero_point
        y = round_ste(y)
        y = self.clamp(y, min_val=self.min_int, max_val=self.max_int)
        y = y - self.zero_point  # ... and IntQuant.forward (its delay wrapper is a no-op)
        y = y * scale
        return y, scale


def plan_matches(plan: dict, tensor_quants: dict) -> bool:
    """Whether every :class:`FastQuantizer` of ``plan`` is built on the quantizer module now in its place."""
    if plan["input"].tensor_quant is not tensor_quants["input"]:
        return False
    return all(
        len(plan[kind]) == len(tensor_quants[kind])
        and all(kept.tensor_quant is current for kept, current in zip(plan[kind], tensor_quants[kind]))
        for kind in ("weights", "activations")
    )


def activation_tensor_quant(layer: nn.Module) -> nn.Module:
    """The ``RescalingIntQuant`` of a ``QuantIdentity`` / ``QuantReLU``."""
    return layer.act_quant.fused_activation_quant_proxy.tensor_quant


def run_pre_hooks(linear: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A layer's pre-forward hooks, as a call would run them (torch's pruning hook recomputes
    ``weight`` from ``weight_orig`` and the mask); its weight afterwards."""
    for hook in linear._forward_pre_hooks.values():
        hook(linear, (x,))  # torch's pruning only (:func:`unhooked`): it sets ``weight``, returns None
    return linear.weight


def supports_layers(input_quant: nn.Module, linears, activations) -> bool:
    """Whether every quantizer of the network is one :class:`FastQuantizer` reproduces (what may
    change after it is built, hooks and switches, is :func:`unhooked`'s)."""
    for layer in [input_quant, *activations]:
        if layer.act_quant.fused_activation_quant_proxy is None or not supports(activation_tensor_quant(layer)):
            return False
        if layer.input_quant.fused_activation_quant_proxy is not None:
            return False  # an input quantizer on the activation layer itself
    for linear in linears:
        if linear.input_quant.fused_activation_quant_proxy is not None or linear.output_quant.fused_activation_quant_proxy is not None:
            return False
        if linear.bias_quant.is_quant_enabled or not supports(linear.weight_quant.tensor_quant):
            return False
    return True


def _hooked(module: nn.Module) -> bool:
    """Whether ``module`` has a forward or backward hook of its own."""
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks or module._backward_pre_hooks)


def _global_hooks() -> bool:
    """Whether torch has module hooks registered for every module (``register_module_forward_hook`` ...)."""
    return bool(
        torch_module._global_forward_hooks
        or torch_module._global_forward_pre_hooks
        or torch_module._global_backward_hooks
        or torch_module._global_backward_pre_hooks
    )


def _quantizer_internals(tensor_quant: nn.Module | None) -> list:
    """The modules a quantizer's call goes through below its proxy (where a hook could be)."""
    return [] if tensor_quant is None else [tensor_quant, tensor_quant.scaling_impl, tensor_quant.int_quant]


def unhooked(input_quant: nn.Module, linears, activations, weight_hook: Callable) -> bool:
    """What may change after a network is built, checked on every call: no hook this path would
    skip (on a layer, its quantizer proxy, the quantizer and its scaling, or torch's global module
    hooks), the linears' pre-forward hooks all torch's pruning (:func:`run_pre_hooks` runs them),
    the weight quantizers' forward hooks only ``weight_hook`` (which the caller reproduces), and no
    quantizer exporting or disabled."""
    if _global_hooks():
        return False
    for layer in (input_quant, *activations):
        proxy = layer.act_quant
        fused = proxy.fused_activation_quant_proxy
        modules = [layer, proxy, *_quantizer_internals(None if fused is None else fused.tensor_quant)]
        if any(_hooked(module) for module in modules) or proxy.export_mode or not proxy.is_quant_enabled:
            return False
    for linear in linears:
        proxy = linear.weight_quant
        if linear._forward_hooks or linear._backward_hooks or linear._backward_pre_hooks or proxy.export_mode:
            return False
        if not all(isinstance(hook, BasePruningMethod) for hook in linear._forward_pre_hooks.values()):
            return False
        if list(proxy._forward_hooks.values()) != [weight_hook] or proxy._forward_pre_hooks or proxy._backward_hooks:
            return False
        if any(_hooked(module) for module in _quantizer_internals(proxy.tensor_quant)) or not proxy.is_quant_enabled:
            return False
    return True
