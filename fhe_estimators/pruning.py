"""Per-neuron magnitude pruning for linear layers, as a skorch callback.

Each neuron (row of a linear layer's weight) keeps only its ``k`` largest
weights by ``|w|``. The masks live in ``torch.nn.utils.prune`` buffers
(``weight_mask``), so any skorch net with ``nn.Linear`` layers can use the
callback. Masks are always recomputed from the *current* trained weights:
during the gradual schedule a weight pruned earlier may come back if it is
larger than the ones kept.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from skorch.callbacks import Callback
from torch import nn
from torch.nn.utils import prune

PRUNING_SCHEDULES = ("gradual", "oneshot")


def linear_layers(module: nn.Module) -> list[nn.Linear]:
    """All linear layers of ``module``, in definition order."""
    return [layer for layer in module.modules() if isinstance(layer, nn.Linear)]


def topk_row_mask(weight: torch.Tensor, k: int) -> torch.Tensor:
    """Mask keeping the ``k`` largest ``|w|`` of each row (ties: lowest index)."""
    fan_in = weight.shape[1]
    if k >= fan_in:
        return torch.ones_like(weight)
    # A stable sort makes the choice among equal magnitudes deterministic.
    order = torch.sort(weight.abs(), dim=1, descending=True, stable=True).indices
    mask = torch.zeros_like(weight)
    mask.scatter_(1, order[:, :k], 1.0)
    return mask


def cubic_keep_count(fan_in: int, final_keep: int, progress: float) -> int:
    """Weights kept per neuron on Zhu & Gupta's (2017) cubic sparsity schedule.

    Sparsity rises from 0 to ``s_f = 1 - final_keep / fan_in`` as
    ``s_t = s_f (1 - (1 - progress)^3)``; the count is rounded up so the
    budget is met exactly at ``progress == 1``.
    """
    progress = min(max(progress, 0.0), 1.0)
    pruned = (fan_in - final_keep) * (1.0 - (1.0 - progress) ** 3)
    return int(max(final_keep, fan_in - math.floor(pruned + 1e-9)))


def _weight_to_rank(layer: nn.Linear) -> torch.Tensor:
    """Current trained weight, before any mask (pruned weights can come back)."""
    return layer.weight_orig if prune.is_pruned(layer) else layer.weight


def set_row_masks(layer: nn.Linear, k: int, source: torch.Tensor | None = None) -> None:
    """(Re)compute the per-neuron top-``k`` mask of ``layer`` from ``source`` weights."""
    with torch.no_grad():
        weight = _weight_to_rank(layer) if source is None else source
        mask = topk_row_mask(weight.detach(), k)
        if prune.is_pruned(layer):
            layer.weight_mask.copy_(mask)
            # Refresh the masked weight now, not only at the next forward pass.
            layer.weight = layer.weight_orig * layer.weight_mask
        else:
            prune.custom_from_mask(layer, "weight", mask)


def make_masks_permanent(module: nn.Module) -> None:
    """Fold every pruning mask into its weight and drop the pruning hooks."""
    for layer in linear_layers(module):
        if prune.is_pruned(layer):
            prune.remove(layer, "weight")


def nonzero_per_neuron(weight: np.ndarray | torch.Tensor) -> np.ndarray:
    """Number of non-zero weights of each neuron (row)."""
    if isinstance(weight, torch.Tensor):
        weight = weight.detach().cpu().numpy()
    return np.count_nonzero(weight, axis=1)


class PerNeuronPruning(Callback):
    """Prune each neuron of every linear layer to at most ``max_nonzero`` weights.

    Parameters
    ----------
    max_nonzero : int
        Non-zero weights a neuron may keep at the end (capped by its fan-in).
    schedule : "gradual" or "oneshot"
        ``"gradual"``: the kept count falls from fan-in to ``max_nonzero`` on the
        cubic schedule between ``start`` and ``end``, masks recomputed from the
        trained weights every ``frequency`` epochs. ``"oneshot"``: the final masks
        are taken once, at ``end``, from the weights trained so far.
    start, end : float
        Fractions of ``max_epochs`` where pruning starts and reaches its budget;
        the epochs after ``end`` fine-tune with the masks fixed.
    frequency : int
        Epochs between two mask updates of the gradual schedule.
    """

    def __init__(
        self,
        max_nonzero: int,
        schedule: str = "gradual",
        start: float = 0.1,
        end: float = 0.6,
        frequency: int = 1,
    ):
        self.max_nonzero = max_nonzero
        self.schedule = schedule
        self.start = start
        self.end = end
        self.frequency = frequency

    def initialize(self):
        if self.schedule not in PRUNING_SCHEDULES:
            raise ValueError(f"schedule must be one of {PRUNING_SCHEDULES}, got {self.schedule!r}.")
        if not 0.0 <= self.start <= self.end <= 1.0:
            raise ValueError(f"Need 0 <= start <= end <= 1, got start={self.start}, end={self.end}.")
        if int(self.frequency) < 1:
            raise ValueError(f"frequency must be a positive number of epochs, got {self.frequency}.")
        return self

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        epochs_done = len(net.history)
        self._first_epoch = epochs_done + 1
        self._start_epoch = epochs_done + max(1, round(self.start * net.max_epochs))
        self._end_epoch = max(self._start_epoch, epochs_done + round(self.end * net.max_epochs))

    def progress(self, epoch: int) -> float | None:
        """Schedule progress (0..1) at ``epoch`` if masks update then, else None."""
        if epoch < self._start_epoch or epoch > self._end_epoch:
            return None
        if epoch == self._end_epoch:
            return 1.0
        if self.schedule == "oneshot" or (epoch - self._start_epoch) % int(self.frequency):
            return None
        span = self._end_epoch - self._start_epoch
        return (epoch - self._start_epoch) / span if span else 1.0

    def on_epoch_end(self, net, **kwargs):
        epoch = len(net.history)
        progress = self.progress(epoch)
        if progress is not None:
            for layer in linear_layers(net.module_):
                fan_in = layer.weight.shape[1]
                final_keep = min(fan_in, self.max_nonzero)
                set_row_masks(layer, cubic_keep_count(fan_in, final_keep, progress))
        layers = linear_layers(net.module_)
        kept = sum(int(np.count_nonzero(layer.weight.detach().cpu().numpy())) for layer in layers)
        total = sum(layer.weight.numel() for layer in layers)
        net.history.record("sparsity", 1.0 - kept / total)
