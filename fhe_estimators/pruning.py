"""Per-neuron magnitude pruning for linear layers, as a skorch callback.

Each neuron (row of a linear layer's weight) keeps only its largest weights by
``|w|``. The masks live in ``torch.nn.utils.prune`` buffers (``weight_mask``),
so any skorch net with ``nn.Linear`` layers can use the callback. Masks are
recomputed from the *current* trained weights at every step: during the
gradual schedule a weight pruned earlier may come back if it is larger than the
ones kept. Continued training (``warm_start``, ``partial_fit``) keeps the masks
fixed. Optionally, whole hidden neurons (lowest L2 norm) are removed on the
same schedule, which cuts the number of table lookups in FHE.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from skorch.callbacks import Callback
from torch import nn
from torch.nn.utils import prune

#: "gradual": cubic schedule; "oneshot": one step at the end of the schedule;
#: "initial": masks from the initial (untrained) weights, frozen (Concrete ML's
#: recipe, kept only as a baseline to compare against).
PRUNING_SCHEDULES = ("gradual", "oneshot", "initial")

#: Returns, for each linear layer, the number of weights each neuron may keep at the end.
KeepBudget = Callable[[nn.Module], Sequence[np.ndarray]]


@runtime_checkable
class KeepCountPolicy(Protocol):
    """A budget that depends on the net's accumulator budget (``budget_policies.BudgetPolicy``).

    :class:`PerNeuronPruning` calls ``keep_counts(module, net.accumulator_budget_,
    net.layer_omegas_)`` at each mask update, with the net skorch passes it, so the counts
    follow a budget changed between training calls.
    """

    def keep_counts(
        self, module: nn.Module, accumulator_bits: int, layer_omegas: Sequence[int]
    ) -> Sequence[np.ndarray]:
        ...


def linear_layers(module: nn.Module) -> list[nn.Linear]:
    """All linear layers of ``module``, in definition order."""
    return [layer for layer in module.modules() if isinstance(layer, nn.Linear)]


def topk_row_mask(weight: torch.Tensor, k) -> torch.Tensor:
    """Mask keeping the ``k`` largest ``|w|`` of each row (``k``: int or one per row).

    Ties are broken by the lowest index, so the choice is deterministic.
    """
    n_rows, fan_in = weight.shape
    keep = torch.as_tensor(np.broadcast_to(np.asarray(k), (n_rows,)).copy(), dtype=torch.long)
    order = torch.sort(weight.abs(), dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(fan_in).expand(n_rows, fan_in))
    return (ranks < keep[:, None]).to(weight.dtype)


def cubic_progress(progress: float) -> float:
    """Zhu & Gupta's (2017) schedule: the fraction of the final pruning done at ``progress``."""
    progress = min(max(progress, 0.0), 1.0)
    return 1.0 - (1.0 - progress) ** 3


def cubic_keep_count(fan_in, final_keep, progress: float):
    """Weights kept per neuron at ``progress`` of the cubic sparsity schedule.

    Sparsity rises from 0 to ``s_f = 1 - final_keep / fan_in`` as
    ``s_t = s_f (1 - (1 - progress)^3)``; the count is rounded up so the
    budget is met exactly at ``progress == 1``. Works on arrays of neurons.
    """
    final_keep = np.asarray(final_keep)
    pruned = np.floor((fan_in - final_keep) * cubic_progress(progress) + 1e-9)
    kept = np.maximum(final_keep, fan_in - pruned).astype(int)
    return int(kept) if kept.ndim == 0 else kept


def unmasked_weight(layer: nn.Linear) -> torch.Tensor:
    """Current trained weight, before any mask (pruned weights can come back)."""
    return layer.weight_orig if prune.is_pruned(layer) else layer.weight


def set_mask(layer: nn.Linear, mask: torch.Tensor) -> None:
    """Install ``mask`` as the layer's pruning mask (replacing any previous one)."""
    with torch.no_grad():
        if prune.is_pruned(layer):
            layer.weight_mask.copy_(mask)
            # Refresh the masked weight now, not only at the next forward pass.
            layer.weight = layer.weight_orig * layer.weight_mask
        else:
            prune.custom_from_mask(layer, "weight", mask)


def set_row_masks(layer: nn.Linear, k, source: torch.Tensor | None = None) -> None:
    """(Re)compute the per-neuron top-``k`` mask of ``layer`` from ``source`` weights.

    A zero in ``source`` is never kept: when ``source`` is the masked weight,
    a row with fewer than ``k`` survivors must not bring pruned weights back.
    """
    weight = (unmasked_weight(layer) if source is None else source).detach()
    set_mask(layer, topk_row_mask(weight, k) * (weight != 0))


def make_masks_permanent(module: nn.Module) -> None:
    """Fold every pruning mask into its weight and drop the pruning hooks."""
    for layer in linear_layers(module):
        if prune.is_pruned(layer):
            prune.remove(layer, "weight")


def freeze_masks(module: nn.Module) -> None:
    """Keep every zero weight at zero from now on: a layer's mask is its current non-zeros.

    A layer that still has a mask keeps it; one whose mask was made permanent
    gets a mask of its non-zero weights back.
    """
    for layer in linear_layers(module):
        if not prune.is_pruned(layer):
            set_mask(layer, (layer.weight.detach() != 0).to(layer.weight.dtype))


def nonzero_per_neuron(weight: np.ndarray | torch.Tensor) -> np.ndarray:
    """Number of non-zero weights of each neuron (row)."""
    if isinstance(weight, torch.Tensor):
        weight = weight.detach().cpu().numpy()
    return np.count_nonzero(weight, axis=1)


def lowest_norm_rows(weight: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Indices of the ``n_rows`` rows with the lowest L2 norm (ties: lowest index)."""
    norms = weight.detach().norm(dim=1)
    return torch.sort(norms, stable=True).indices[:n_rows]


def sparsity(module: nn.Module) -> float:
    """Fraction of zero weights over all linear layers."""
    layers = linear_layers(module)
    kept = sum(int(torch.count_nonzero(layer.weight.detach())) for layer in layers)
    return 1.0 - kept / sum(layer.weight.numel() for layer in layers)


class PerNeuronPruning(Callback):
    """Prune each neuron of every linear layer to a per-neuron weight budget.

    Parameters
    ----------
    max_nonzero : int or None
        Weights a neuron may keep at the end (capped by its fan-in). Ignored
        when ``budget`` is given.
    schedule : "gradual", "oneshot" or "initial"
        ``"gradual"``: the kept count falls from fan-in to the budget on the
        cubic schedule between ``start`` and ``end``, masks recomputed from the
        trained weights every ``frequency`` epochs. ``"oneshot"``: the final
        masks are taken once, at ``end``, from the weights trained so far.
        ``"initial"``: the final masks are taken from the initial weights
        before training and never change (a baseline, not a recommendation).
    start, end : float
        Fractions of ``max_epochs`` where pruning starts and reaches its budget;
        the epochs after ``end`` fine-tune with the masks fixed.
    frequency : int
        Epochs between two mask updates of the gradual schedule.
    budget : callable, budget policy or None
        ``budget(module)`` returns, per linear layer, an array with each
        neuron's final keep count; evaluated at every mask update, so it can
        depend on the current weights (the estimators' exact-budget mode).
        A policy (:class:`KeepCountPolicy`, e.g. ``budget_policies.ExactBudget``)
        is asked ``keep_counts(module, net.accumulator_budget_, net.layer_omegas_)``
        instead, so the net must carry those two attributes.
    neuron_fraction : float
        Fraction of the neurons of every hidden layer (all linear layers but
        the last) to switch off entirely, lowest L2 norm first, on the same
        schedule.
    """

    def __init__(
        self,
        max_nonzero: int | None = None,
        schedule: str = "gradual",
        start: float = 0.1,
        end: float = 0.6,
        frequency: int = 1,
        budget: KeepBudget | None = None,
        neuron_fraction: float = 0.0,
    ):
        self.max_nonzero = max_nonzero
        self.schedule = schedule
        self.start = start
        self.end = end
        self.frequency = frequency
        self.budget = budget
        self.neuron_fraction = neuron_fraction

    def initialize(self):
        if self.schedule not in PRUNING_SCHEDULES:
            raise ValueError(f"schedule must be one of {PRUNING_SCHEDULES}, got {self.schedule!r}.")
        if not 0.0 <= self.start <= self.end <= 1.0:
            raise ValueError(f"Need 0 <= start <= end <= 1, got start={self.start}, end={self.end}.")
        if int(self.frequency) < 1:
            raise ValueError(f"frequency must be a positive number of epochs, got {self.frequency}.")
        if self.budget is None and (self.max_nonzero is None or self.max_nonzero < 1):
            raise ValueError("Give max_nonzero (a positive count), a budget callable or a budget policy.")
        if not 0.0 <= self.neuron_fraction < 1.0:
            raise ValueError(f"neuron_fraction must be in [0, 1), got {self.neuron_fraction}.")
        return self

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        epochs_done = len(net.history)
        # Continued training (warm_start, partial_fit) fine-tunes the pruned net: masks fixed.
        self._continuing = epochs_done > 0
        if self._continuing:
            freeze_masks(net.module_)
            return
        self._start_epoch = max(1, round(self.start * net.max_epochs))
        self._end_epoch = max(self._start_epoch, round(self.end * net.max_epochs))
        if self.schedule == "initial":
            self.update_masks(net.module_, 1.0, net)

    def progress(self, epoch: int) -> float | None:
        """Schedule progress (0..1) at ``epoch`` if masks update then, else None."""
        if self._continuing or self.schedule == "initial" or epoch < self._start_epoch or epoch > self._end_epoch:
            return None
        if epoch == self._end_epoch:
            return 1.0
        if self.schedule == "oneshot" or (epoch - self._start_epoch) % int(self.frequency):
            return None
        span = self._end_epoch - self._start_epoch
        return (epoch - self._start_epoch) / span if span else 1.0

    def final_keep_counts(self, module: nn.Module, net=None) -> list[np.ndarray]:
        """Each neuron's keep count at the end of the schedule, per layer.

        A budget policy reads the accumulator budget in force from ``net`` (required then).
        """
        layers = linear_layers(module)
        if isinstance(self.budget, KeepCountPolicy):
            if net is None:
                raise ValueError("A budget policy reads net.accumulator_budget_ and net.layer_omegas_: pass the net.")
            counts = self.budget.keep_counts(module, net.accumulator_budget_, net.layer_omegas_)
            return [np.asarray(k, dtype=int) for k in counts]
        if self.budget is not None:
            return [np.asarray(k, dtype=int) for k in self.budget(module)]
        return [np.full(layer.weight.shape[0], min(layer.weight.shape[1], self.max_nonzero)) for layer in layers]

    def update_masks(self, module: nn.Module, progress: float, net=None) -> None:
        """Recompute every layer's mask for ``progress`` of the schedule (``net``: see :meth:`final_keep_counts`)."""
        layers = linear_layers(module)
        for index, (layer, final_keep) in enumerate(zip(layers, self.final_keep_counts(module, net))):
            weight = unmasked_weight(layer).detach()
            mask = topk_row_mask(weight, cubic_keep_count(weight.shape[1], final_keep, progress))
            n_off = int(round(self.neuron_fraction * weight.shape[0] * cubic_progress(progress)))
            if index < len(layers) - 1 and n_off:
                n_off = min(n_off, weight.shape[0] - 1)  # a layer keeps at least one neuron
                mask[lowest_norm_rows(weight * mask, n_off)] = 0.0
            set_mask(layer, mask)

    def on_epoch_end(self, net, **kwargs):
        progress = self.progress(len(net.history))
        if progress is not None:
            self.update_masks(net.module_, progress, net)
        net.history.record("sparsity", sparsity(net.module_))
