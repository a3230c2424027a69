"""Weight averaging: each training call ends on the mean of its last epochs' weights.

A low-bit network trained to the end of a cosine schedule still stops wherever its last
noisy steps left it, and two fits that differ only in their seed can end a few points apart
on unseen rows. Averaging the weights of the last epochs (stochastic weight averaging,
Izmailov et al., 2018, without its cyclic learning rate) lands nearer the middle of the
basin those epochs explored: the fit-to-fit spread shrinks and the mean score rises
(measured on the generalization benchmark: docs/pruning.md).

Only trainable parameters are averaged (weights before their pruning masks, biases, the
learned quantizer scales); buffers such as the pruning masks and the quantizers' range
statistics keep their current values. An epoch counts only once the network trains
quantized and every activation quantizer has finished collecting its range statistics
(before that, a scale parameter holds a placeholder, not a scale). The exact accumulator
check runs after training as always, so an averaged network is guarded like any other.
"""

from __future__ import annotations

import skorch
import torch
from brevitas.core.scaling.standalone import ParameterFromRuntimeStatsScaling
from torch import nn

from .pruning import linear_layers, set_mask


def averaged_epochs(fraction: float, max_epochs: int) -> int:
    """Epochs at the end of a training call whose weights are averaged: ``fraction`` of
    ``max_epochs``, rounded, at least one when ``fraction`` > 0."""
    if fraction <= 0:
        return 0
    return min(int(max_epochs), max(1, round(fraction * max_epochs)))


def quantizers_calibrated(module: nn.Module) -> bool:
    """Whether every activation quantizer has turned its range statistics into its scale."""
    return all(
        scaling.counter > scaling.collect_stats_steps
        for scaling in module.modules()
        if isinstance(scaling, ParameterFromRuntimeStatsScaling)
    )


class WeightAveraging(skorch.callbacks.Callback):
    """Replaces the trained parameters by their mean over the last ``fraction`` of each
    training call's epochs (a fit, a search candidate's fine-tune, a ``partial_fit``).

    ``history`` records, on the last epoch, how many epochs were averaged
    (``averaged_epochs``; 0 when none qualified, and the weights are then left as trained).
    With skorch's ``EarlyStopping(load_best=True)`` among the user's callbacks, the best
    epoch it restores afterwards replaces the average.
    """

    def __init__(self, fraction: float = 0.25):
        self.fraction = fraction

    def on_train_begin(self, net, **kwargs):
        epochs = max(1, int(net.max_epochs))
        self.first_epoch_ = epochs - averaged_epochs(self.fraction, epochs)
        self.epoch_, self.count_, self.sums_ = 0, 0, None

    def on_epoch_end(self, net, **kwargs):
        self.epoch_ += 1
        if self.epoch_ <= self.first_epoch_:
            return
        module = net.module_
        if not (getattr(module, "quantized", True) and quantizers_calibrated(module)):
            self.count_, self.sums_ = 0, None  # start over from the first qualifying epoch
            return
        with torch.no_grad():
            parameters = {name: p.detach().double() for name, p in module.named_parameters()}
            if self.sums_ is None:
                self.sums_ = {name: value.clone() for name, value in parameters.items()}
            else:
                for name, value in parameters.items():
                    self.sums_[name] += value
        self.count_ += 1

    def on_train_end(self, net, **kwargs):
        if self.count_:
            load_average(net.module_, {name: total / self.count_ for name, total in self.sums_.items()})
        if len(net.history):
            net.history.record("averaged_epochs", self.count_)
        self.sums_ = None  # the sums are as large as the network: not kept in a fitted model


def load_average(module: nn.Module, averages: dict[str, torch.Tensor]) -> None:
    """Copy ``averages`` into ``module``'s parameters of the same names, then refresh each
    pruned layer's masked weight (torch's pruning hook recomputes it only at the next call)."""
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if name in averages:
                parameter.copy_(averages[name].to(parameter.dtype))
    for layer in linear_layers(module):
        if hasattr(layer, "weight_mask"):
            set_mask(layer, layer.weight_mask.detach().clone())

