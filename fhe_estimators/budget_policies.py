"""Pruning budgets (``pruning_budget``) as small policy objects: how many weights each neuron may keep.

A policy answers one question, ``keep_counts(module, accumulator_bits, layer_omegas)``: per
linear layer, each neuron's keep count under the accumulator budget in force. It holds only
the estimator's ``n_hidden_neurons_multiplier`` and its first layer's density (a regularizer,
:mod:`.regularization`); the budget itself (``accumulator_budget_``
and its ``layer_omegas_``) is passed at each call, so one policy follows the search's
narrower budgets (``_set_accumulator_budget``) without being rebuilt.

``floor(multiplier × Ω)`` (Ω from the layer's input bits) caps every neuron under every
policy, the rule of Concrete ML's pruning page (in the first layer also ``ceil(density × fan_in)``):

* :class:`CountBudget` ("count"): the cap, nothing else;
* :class:`ExactBudget` ("exact"): fewer where the exact worst case of that many would overflow;
* :class:`L1Budget` ("l1", accumulator-aware): the cap, after scaling each overflowing
  neuron's weights down until its exact worst case fits (:func:`accumulator_aware.project_module`,
  the projection its training callback applies after every step). Doing it here as well means
  a budget set since the last step is met by smaller weights at the next mask update or
  finalize, not by dropped ones.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .accumulator_aware import project_module
from .budget import first_layer_cap, kept_weights_per_neuron, largest_weights_that_fit
from .pruning import unmasked_weight


def weight_caps(module, layer_omegas: list[int], multiplier: float, first_layer_density: float = 1.0) -> list[int]:
    """``k = min(fan_in, floor(multiplier × Ω))`` per linear layer, at the layer's current fan-in;
    the first layer's also at most ``ceil(first_layer_density × fan_in)``."""
    caps = [
        kept_weights_per_neuron(linear.in_features, layer_omega, multiplier)
        for linear, layer_omega in zip(module.linears, layer_omegas)
    ]
    caps[0] = min(caps[0], first_layer_cap(module.linears[0].in_features, first_layer_density))
    return caps


def exact_keep_counts(module, accumulator_bits: int) -> list[np.ndarray]:
    """Per layer and neuron: how many of its largest weights have an exact worst case that fits."""
    counts = []
    for index, (linear, (low, high)) in enumerate(zip(module.linears, module.input_ranges())):
        weight = unmasked_weight(linear)
        integers = module.quantize_weights(index, weight)
        magnitudes = weight.detach().abs().cpu().numpy()
        counts.append(largest_weights_that_fit(integers, magnitudes, low, high, accumulator_bits))
    return counts


class BudgetPolicy:
    """Base of the pruning budgets: the ``multiplier × Ω`` cap, shared by all of them.

    ``module`` is a :class:`~fhe_estimators.module.QuantMLP` (``linears``, ``input_ranges``,
    ``quantize_weights``); ``layer_omegas`` has one Ω per linear layer.
    """

    #: The ``pruning_budget`` value that selects this policy.
    name: ClassVar[str] = ""

    def __init__(self, multiplier: float = 1.0, first_layer_density: float = 1.0):
        self.multiplier = multiplier
        self.first_layer_density = first_layer_density

    def caps(self, module, layer_omegas: list[int]) -> list[int]:
        """Per layer, ``min(fan_in, floor(multiplier × Ω))`` (and the first layer's density)."""
        return weight_caps(module, layer_omegas, self.multiplier, self.first_layer_density)

    def keep_counts(self, module, accumulator_bits: int, layer_omegas: list[int]) -> list[np.ndarray]:
        """Per layer, an array with the weights each neuron may keep now."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(multiplier={self.multiplier!r}, first_layer_density={self.first_layer_density!r})"

    def _key(self) -> tuple:
        return type(self), self.multiplier, self.first_layer_density

    def __eq__(self, other) -> bool:
        return isinstance(other, BudgetPolicy) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


class CountBudget(BudgetPolicy):
    """"count": every neuron keeps ``min(fan_in, floor(multiplier × Ω))`` weights."""

    name = "count"

    def keep_counts(self, module, accumulator_bits: int, layer_omegas: list[int]) -> list[np.ndarray]:
        caps = self.caps(module, layer_omegas)
        return [np.full(linear.out_features, cap) for linear, cap in zip(module.linears, caps)]


class ExactBudget(BudgetPolicy):
    """"exact": per neuron, its largest weights whose exact worst case fits, at most the cap."""

    name = "exact"

    def keep_counts(self, module, accumulator_bits: int, layer_omegas: list[int]) -> list[np.ndarray]:
        caps = self.caps(module, layer_omegas)
        return [np.minimum(counts, cap) for counts, cap in zip(exact_keep_counts(module, accumulator_bits), caps)]


class L1Budget(CountBudget):
    """"l1": the cap, after shrinking (not dropping) the weights of every neuron that would overflow.

    Side effect: the module's weights are projected onto ``accumulator_bits`` in place.
    """

    name = "l1"

    def keep_counts(self, module, accumulator_bits: int, layer_omegas: list[int]) -> list[np.ndarray]:
        project_module(module, accumulator_bits)
        return super().keep_counts(module, accumulator_bits, layer_omegas)


#: ``pruning_budget`` value -> policy class.
BUDGET_POLICIES: dict[str, type[BudgetPolicy]] = {
    policy.name: policy for policy in (ExactBudget, CountBudget, L1Budget)
}


def make_budget_policy(name: str, multiplier: float = 1.0, first_layer_density: float = 1.0) -> BudgetPolicy:
    """The policy of ``pruning_budget=name`` with ``n_hidden_neurons_multiplier=multiplier``."""
    try:
        return BUDGET_POLICIES[name](multiplier, first_layer_density)
    except (KeyError, TypeError):
        raise ValueError(f"pruning_budget must be one of {tuple(BUDGET_POLICIES)}, got {name!r}.") from None
