"""After training: masks made permanent, the exact accumulator check and repair, neuron removal, reports.

The keep counts (how many weights each neuron may keep, from the ``pruning_budget``'s policy
in :mod:`.budget_policies`) drive the pruning callback during training and the final masks
here. Once the masks are permanent, the exact worst case of every neuron is computed on its
*integer* weights; a neuron that could overflow ``accumulator_budget`` bits loses its
smallest weights until it fits. FHE wraps around silently on overflow, so this check, not
the training, is the guarantee. The reports are :class:`PruningReport` dataclasses, one per
layer (``layer_reports_``; ``pruning_report_`` holds their dicts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
import torch

from .budget import accumulator_bounds, enforce_accumulator_budget, signed_bit_width
from .budget_policies import BudgetPolicy
from .circuit_plan import rounding_headroom
from .module import QuantMLP
from .pruning import make_masks_permanent, nonzero_per_neuron, set_row_masks

#: Dropping weights or neurons can shrink a per-tensor scale, so the check repeats; this often at most.
MAX_REPAIR_ROUNDS = 10


@dataclass
class PruningReport(Mapping):
    """One linear layer after finalizing (an entry of ``layer_reports_``; ``pruning_report_`` holds
    their :meth:`as_dict` views).

    Reads like the dict it replaces too: ``report["k"]``, ``list(report)``, ``dict(report)``.
    """

    layer: int  #: index of the linear layer (0 is the first)
    fan_in: int  #: inputs of each neuron (after any neuron removal in the layer before)
    neurons: int  #: neurons kept
    neurons_removed: int  #: hidden neurons taken out of the network (no incoming weight left)
    omega: int  #: Ω of the layer at the accumulator budget in force (from its input bits)
    budget: str  #: ``pruning_budget`` the keep counts came from ("exact", "count" or "l1")
    k: int  #: the cap ``min(fan_in, floor(multiplier × Ω))`` on every neuron's kept weights (first layer: and its density)
    max_nonzero: int  #: most non-zero integer weights of a neuron
    mean_nonzero: float  #: mean non-zero integer weights per neuron
    max_nonzero_float: int  #: most non-zero float weights of a neuron (≥ ``max_nonzero``: some round to 0)
    sparsity: float  #: fraction of the layer's integer weights that are 0
    dropped_by_check: int  #: weights the exact accumulator check dropped after training
    accumulator_bits: int  #: the layer's largest exact worst-case signed accumulator width
    neuron_accumulator_bits: list[int]  #: the exact worst-case signed accumulator width of each neuron

    def as_dict(self) -> dict[str, Any]:
        """A plain dict (JSON-ready), keys in field order."""
        return asdict(self)

    def to_frame(self):
        """A one-row ``pandas.DataFrame`` (see :func:`reports_frame` for a whole model)."""
        return reports_frame([self])

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    @classmethod
    def _keys(cls) -> tuple[str, ...]:
        return tuple(field.name for field in fields(cls))

    # Equal to any mapping with the same items (its dict view included), as the dict it replaces was.
    __eq__ = Mapping.__eq__
    __hash__ = None


def reports_frame(reports):
    """``pruning_report_`` (or ``layer_reports_``) as a ``pandas.DataFrame``, one row per layer."""
    import pandas as pd

    return pd.DataFrame([dict(report) for report in reports])


class PruningReports(NamedTuple):
    """What the estimator stores after finalizing, one entry per linear layer."""

    layers: list[PruningReport]  # -> ``layer_reports_`` (and their dicts, ``pruning_report_``)
    max_nonzero_per_neuron: list[int]  # -> ``max_nonzero_per_neuron_``
    accumulator_bits: list[int]  # -> ``accumulator_bits_``
    accumulator_ranges: list[tuple[int, int]]  # -> ``accumulator_ranges_``

    def fitted_attributes(self) -> dict[str, Any]:
        """The estimator's fitted attributes these reports set, by name."""
        return {
            "layer_reports_": self.layers,
            "pruning_report_": [layer.as_dict() for layer in self.layers],
            "max_nonzero_per_neuron_": self.max_nonzero_per_neuron,
            "accumulator_bits_": self.accumulator_bits,
            "accumulator_ranges_": self.accumulator_ranges,
        }

    @property
    def neurons_removed(self) -> bool:
        """Whether finalizing took hidden neurons out (an optimizer then holds stale parameters)."""
        return any(layer.neurons_removed for layer in self.layers)


def finalize_and_report(
    module: QuantMLP,
    policy: BudgetPolicy,
    accumulator_budget: int,
    layer_omegas: list[int],
    layer_bits: Sequence[int] | None = None,
) -> PruningReports:
    """After training: ``policy``'s keep counts made permanent, the exact check and repair
    (:func:`finalize_pruning`) under ``accumulator_budget``, then the reports (:func:`build_reports`).

    ``layer_bits`` caps each layer's accumulator below the budget too (the search keeps a
    circuit's widths as it priced them through its final fine-tune)."""
    keep = policy.keep_counts(module, accumulator_budget, layer_omegas)
    budgets = [accumulator_budget] * len(module.linears)
    if layer_bits is not None:
        budgets = [min(accumulator_budget, int(bits)) for bits in layer_bits]
    dropped, removed = finalize_pruning(module, keep, budgets)
    return build_reports(module, dropped, removed, layer_omegas=layer_omegas, policy=policy)


def finalize_pruning(
    module: QuantMLP, keep_counts: list[np.ndarray], layer_budgets: Sequence[int]
) -> tuple[list[int], list[int]]:
    """Make masks permanent, then check and repair until stable, each linear layer at its budget.

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
        changed = drop_overflowing_weights(module, layer_budgets, dropped)
        changed = remove_dead_neurons(module, removed) or changed
        if not changed:
            break
    return dropped, removed


def drop_overflowing_weights(module: QuantMLP, layer_budgets: Sequence[int], dropped: list[int]) -> bool:
    """The exact check: drop each neuron's smallest weights until its worst case, plus what the
    rounding before its lookup may add, fits its layer's budget (counts into ``dropped``)."""
    changed = False
    layers = zip(module.linears, module.integer_layers(), layer_budgets)
    for index, (layer, integer, budget) in enumerate(layers):
        keep = enforce_accumulator_budget(
            integer.weights,
            None,
            integer.input_min,
            integer.input_max,
            budget,
            headroom=rounding_headroom(module, index, budget),
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
    policy: BudgetPolicy,
) -> PruningReports:
    """Per layer: fan-in, Ω, kept non-zeros, sparsity and the exact accumulator bits and range."""
    report, bits, ranges = [], [], []
    caps = policy.caps(module, layer_omegas)
    for index, (layer, integer) in enumerate(zip(module.linears, module.integer_layers())):
        low, high = accumulator_bounds(integer.weights, None, integer.input_min, integer.input_max)
        neuron_bits = signed_bit_width(low, high)
        nonzero = nonzero_per_neuron(integer.weights)
        float_nonzero = nonzero_per_neuron(layer.weight)
        bits.append(int(neuron_bits.max()))
        ranges.append((int(low.min()), int(high.max())))
        report.append(
            PruningReport(
                layer=index,
                fan_in=int(integer.weights.shape[1]),
                neurons=int(integer.weights.shape[0]),
                neurons_removed=removed[index],
                omega=layer_omegas[index],
                budget=policy.name,
                k=caps[index],
                max_nonzero=int(nonzero.max()),
                mean_nonzero=float(nonzero.mean()),
                max_nonzero_float=int(float_nonzero.max()),
                sparsity=float(1.0 - nonzero.sum() / integer.weights.size),
                dropped_by_check=dropped[index],
                accumulator_bits=int(neuron_bits.max()),
                neuron_accumulator_bits=neuron_bits.tolist(),
            )
        )
    return PruningReports(report, caps, bits, ranges)
