"""The skorch callbacks every estimator trains with: per-neuron pruning and training scores
(and, with ``pruning_budget="l1"``, the accumulator-aware projection).

:class:`~fhe_estimators.pruning.PerNeuronPruning` (in ``pruning.py``, usable by any skorch
net) is configured here from the estimator's parameters; :class:`TrainingScore` records
what each pruning step cost in ``history``.
"""

from __future__ import annotations

import math

import numpy as np
import skorch
import torch
from sklearn.metrics import r2_score
from skorch.utils import data_from_dataset

from .accumulator_aware import AccumulatorAwareProjection
from .pruning import PerNeuronPruning


class TrainingScore(skorch.callbacks.Callback):
    """Records the training accuracy (classifier) or R² (regressor) after each epoch.

    Computed on the torch network in eval mode, next to the pruning callback's
    ``sparsity``, so ``history`` shows what each pruning step cost.
    """

    def on_epoch_end(self, net, dataset_train=None, **kwargs):
        if dataset_train is None:
            return
        X, y = (np.asarray(data) for data in data_from_dataset(dataset_train))  # also a Subset
        net.module_.eval()
        with torch.no_grad():
            outputs = net.module_(torch.as_tensor(X, dtype=torch.float32, device=net.device)).cpu().numpy()
        net.module_.train()
        if net._estimator_type == "classifier":
            net.history.record("train_acc", float(np.mean(outputs.argmax(axis=1) == y)))
        else:
            net.history.record("train_r2", float(r2_score(y, outputs)))


class CosineLearningRate(skorch.callbacks.Callback):
    """Anneals the learning rate from ``lr`` to 0 over each training call, on a half cosine.

    Each call (a fit, a search candidate's fine-tune, a ``partial_fit``) anneals over its own
    ``max_epochs``. A quantized network trained at a constant rate ends wherever the last
    noisy steps left it; annealing lets it settle (measured on the generalization benchmark:
    see docs/pruning.md).
    """

    def on_train_begin(self, net, **kwargs):
        self.epochs_, self.epoch_ = max(1, int(net.max_epochs)), 0

    def on_epoch_begin(self, net, **kwargs):
        rate = 0.5 * net.lr * (1.0 + math.cos(math.pi * self.epoch_ / self.epochs_))
        for group in net.optimizer_.param_groups:
            group["lr"] = rate
        net.history.record("lr", rate)

    def on_epoch_end(self, net, **kwargs):
        self.epoch_ += 1


def pruning_callback(estimator) -> PerNeuronPruning:
    """The pruning schedule of ``estimator``'s parameters, towards its ``_keep_counts`` budget.

    The budget is read at each pruning step, so it follows the accumulator budget
    in force (``_set_accumulator_budget``) when the step runs.
    """
    return PerNeuronPruning(
        schedule=estimator.pruning,
        start=estimator.pruning_start,
        end=estimator.pruning_end,
        frequency=estimator.pruning_frequency,
        budget=estimator._keep_counts,
        neuron_fraction=estimator.neuron_removal,
    )


def fhe_callbacks(estimator) -> list[tuple[str, skorch.callbacks.Callback]]:
    """The callbacks added to skorch's defaults, by name: ``pruning``, ``lr_schedule`` (with
    ``lr_schedule="cosine"``) and ``train_score``.

    With ``pruning_budget="l1"``, ``accumulator_aware`` too: after every optimizer step it
    scales each neuron's weights down until its exact worst case fits the accumulator
    budget in force (``accumulator_budget_``, read at each step).
    """
    callbacks = [("pruning", pruning_callback(estimator))]
    if estimator.lr_schedule == "cosine":
        callbacks.append(("lr_schedule", CosineLearningRate()))
    if estimator.pruning_budget == "l1":
        callbacks.append(("accumulator_aware", AccumulatorAwareProjection()))
    return [*callbacks, ("train_score", TrainingScore())]
