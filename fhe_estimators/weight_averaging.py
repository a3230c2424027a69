"""Weight averaging: each training call ends on the mean of its last epochs' weights.

A low-bit network trained to the end of a cosine schedule still stops wherever its last
noisy steps left it, and two fits that differ only in their seed can end a few points apart
on unseen rows. Averaging the weights of the last epochs (stochastic weight averaging,
Izmailov et al., 2018, without its cyclic learning rate) should land nearer the middle of
the basin those epochs explored. It is an option, not a default: on the generalization
benchmark it did not narrow the spread over seeds (docs/pruning.md).

Only the linear layers' weights and biases are averaged, each weight as the network used it
(``weight_orig × weight_mask`` when the layer is pruned, so a weight pruned for part of the
window contributes the zeros it computed with). The quantizers' learned scales keep their last
values: a power-of-two scale is the ceiling of its log2 parameter, so a mean just above an
integer would double a step the weights were never trained with. Buffers (masks, range
statistics) are not touched. An epoch counts only once the network trains quantized and every
activation quantizer has finished collecting its range statistics. The exact accumulator check
runs after training as always, so an averaged network is guarded like any other.
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
    """Replaces the linear layers' trained weights and biases by their mean over the last
    ``fraction`` of each training call's epochs (a fit, a search candidate's fine-tune, a
    ``partial_fit``). ``fraction=None`` reads the estimator's ``weight_averaging`` when each
    call begins, so ``set_params`` then ``fit`` with ``warm_start`` uses the new value.

    ``history`` records, on the last epoch, how many epochs were averaged
    (``averaged_epochs``; 0 when none qualified, and the weights are then left as trained;
    nothing when the fraction is 0). With skorch's ``EarlyStopping(load_best=True)`` among the
    user's callbacks, the best epoch it restores afterwards replaces the average.
    """

    def __init__(self, fraction: float | None = None):
        self.fraction = fraction

    def on_train_begin(self, net, **kwargs):
        fraction = net.weight_averaging if self.fraction is None else self.fraction
        epochs = max(1, int(net.max_epochs))
        self.window_ = averaged_epochs(fraction, epochs)
        self.first_epoch_ = epochs - self.window_  # the last epoch not averaged
        self.epoch_, self.count_, self.sums_ = 0, 0, None

    def on_epoch_end(self, net, **kwargs):
        self.epoch_ += 1
        if self.epoch_ <= self.first_epoch_:
            return
        module = net.module_
        if not (getattr(module, "quantized", True) and quantizers_calibrated(module)):
            self.count_, self.sums_ = 0, None  # start over from the first qualifying epoch
            return
        values = averaged_values(module)
        if self.sums_ is None:
            self.sums_ = values
        else:
            for key, value in values.items():
                self.sums_[key] += value
        self.count_ += 1

    def on_train_end(self, net, **kwargs):
        if self.count_:
            load_average(net.module_, {key: total / self.count_ for key, total in self.sums_.items()})
        if self.window_ and len(net.history):
            net.history.record("averaged_epochs", self.count_)
        self.sums_ = None  # the sums are as large as the network: not kept in a fitted model


def averaged_values(module: nn.Module) -> dict[tuple[int, str], torch.Tensor]:
    """What is averaged, by (linear layer index, parameter name), in double precision: each
    bias, and each weight as the forward pass uses it (masked when the layer is pruned)."""
    values = {}
    with torch.no_grad():
        for index, layer in enumerate(linear_layers(module)):
            for name, parameter in layer.named_parameters(recurse=False):
                value = parameter.detach().double()
                if name == "weight_orig":
                    value = value * layer.weight_mask.double()
                values[index, name] = value.clone()
    return values


def load_average(module: nn.Module, averages: dict[tuple[int, str], torch.Tensor]) -> None:
    """Copy ``averages`` (keyed as :func:`averaged_values`) into the linear layers, then
    refresh each pruned layer's masked weight (torch's pruning hook recomputes it only at the
    next call)."""
    layers = linear_layers(module)
    with torch.no_grad():
        for (index, name), average in averages.items():
            parameter = getattr(layers[index], name)
            parameter.copy_(average.to(parameter.dtype))
    for layer in layers:
        if hasattr(layer, "weight_mask"):
            set_mask(layer, layer.weight_mask.detach().clone())
