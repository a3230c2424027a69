"""The skorch callbacks every estimator trains with: per-neuron pruning and training scores
(and, with ``pruning_budget="l1"``, the accumulator-aware projection).

:class:`~fhe_estimators.pruning.PerNeuronPruning` (in ``pruning.py``, usable by any skorch
net) is configured here from the estimator's parameters; :func:`training_score` records
what each pruning step cost in ``history`` (``train_acc`` / ``train_r2``).

**Callbacks see encoded targets.** Inside skorch's training loop the targets are those the
network trains on: a classifier's labels encoded as ``0 .. n_classes - 1`` (in the order of
``classes_``), a regressor's targets standardized (minus ``target_mean_``, over
``target_scale_``, always 2-D). The estimator's ``predict`` is not usable there: it needs a
fitted model, and returns the original labels or values. A scoring callback must instead
compare the torch network's outputs (``net.forward(X)``, which accepts skorch's datasets and
uses skorch's cached predictions) with those encoded targets. :func:`encoded_scorer` builds
such a scorer from a metric ``metric(y_true, y_pred)``; the predictions it passes are class
indices (classifier) or standardized values (regressor)::

    from sklearn.metrics import f1_score
    from skorch.callbacks import EpochScoring
    from fhe_estimators.callbacks import encoded_scorer

    NeuralNetClassifier(train_split=ValidSplit(5), callbacks=[
        EpochScoring(encoded_scorer(f1_score), name="valid_f1", lower_is_better=False)])

skorch's ``valid_acc`` (recorded with a ``train_split``) is such a scorer (:func:`valid_accuracy`).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import skorch
from sklearn.metrics import accuracy_score, r2_score
from skorch.callbacks import EpochScoring
import torch
from skorch.utils import data_from_dataset, to_numpy

from .accumulator_aware import AccumulatorAwareProjection
from .pruning import PerNeuronPruning
from .weight_averaging import WeightAveraging

#: Metrics :func:`encoded_scorer` knows by name.
METRICS: dict[str, Callable] = {"accuracy": accuracy_score, "r2": r2_score}


class EncodedScorer:
    """A skorch scoring callable ``(net, X, y) -> float`` on encoded targets (see the module docstring).

    The predictions given to ``metric(y, predictions)`` come from the torch network, in eval
    mode: class indices (arg-max of the logits) for a classifier, standardized values for a
    regressor. A class rather than a closure, so a fitted estimator (which keeps its callbacks)
    still pickles.
    """

    def __init__(self, metric: str | Callable):
        if isinstance(metric, str) and metric not in METRICS:
            raise ValueError(f"Unknown metric {metric!r}: use one of {sorted(METRICS)} or pass a function.")
        if not isinstance(metric, str) and not callable(metric):
            raise TypeError(f"metric must be a name or a function metric(y_true, y_pred), got {metric!r}.")
        self.metric = metric

    def __call__(self, net, X, y=None) -> float:
        outputs = _outputs(net, X)
        predictions = outputs.argmax(axis=1) if net._estimator_type == "classifier" else outputs
        metric = METRICS[self.metric] if isinstance(self.metric, str) else self.metric
        return float(metric(np.asarray(y), predictions))

    def __repr__(self) -> str:
        return f"encoded_scorer({self.metric!r})"


def _outputs(net, X) -> np.ndarray:
    """The network's outputs on all of ``X`` (arrays or skorch's datasets) in one eval-mode call.

    skorch's ``net.forward`` goes batch by batch through a data loader: for the training score
    after every epoch that cost about 40% of a fit (4 of 10 s on breast cancer). Datasets whose
    arrays skorch cannot extract still go through ``net.forward``.
    """
    try:
        if isinstance(X, torch.utils.data.Dataset):
            X, _ = data_from_dataset(X)
        inputs = np.asarray(X, dtype=np.float32)
    except (AttributeError, TypeError, ValueError):
        return to_numpy(net.forward(X, training=False))
    return net.module_.outputs_on(inputs)


def encoded_scorer(metric: str | Callable) -> EncodedScorer:
    """A scorer for skorch's ``EpochScoring`` comparing the network's outputs with the encoded
    targets: ``metric`` is ``"accuracy"``, ``"r2"`` or any ``metric(y_true, y_pred)``."""
    return EncodedScorer(metric)


def valid_accuracy() -> EpochScoring:
    """skorch's default ``valid_acc`` (with a ``train_split``), scored on encoded labels."""
    return EpochScoring(encoded_scorer("accuracy"), name="valid_acc", lower_is_better=False)


def training_score(estimator) -> EpochScoring:
    """Training accuracy (``train_acc``, classifier) or R² (``train_r2``, regressor) after each epoch.

    Computed on the whole training set by the torch network in eval mode, after the pruning
    callback (it comes later in the list), so ``history`` shows what each pruning step cost.
    """
    classifier = estimator._estimator_type == "classifier"
    return EpochScoring(
        encoded_scorer("accuracy" if classifier else "r2"),
        name="train_acc" if classifier else "train_r2",
        on_train=True,
        use_caching=False,  # the predictions cached during the epoch predate its optimizer steps and pruning
        lower_is_better=None,  # no "train_acc_best" column
    )


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


class FloatPretraining(skorch.callbacks.Callback):
    """Trains the network unquantized for the first ``float_epochs(net)`` epochs of a fit, then quantized.

    Low-bit networks trained from scratch start from quantizers calibrated on random
    weights; pre-training in float lets the weights find their shape first, and the
    activation quantizers then measure the ranges of a trained network (their statistics
    are collected from the first quantized step). Pruning runs on its own schedule
    throughout: its masks apply to the float weights too. Only a fresh fit pre-trains
    (``history`` is empty when it starts); ``warm_start``, ``partial_fit`` and the search's
    fine-tunes continue quantized.

    The float epochs are a warm-up that skorch's ``EarlyStopping`` does not count: it is
    restarted before each of them and before the first quantized epoch, so it cannot stop
    a fit before the network trained quantized, nor compare quantized losses to float ones.
    """

    def on_train_begin(self, net, **kwargs):
        # Read at train time, after ``fit`` validated the parameters (``set_params`` builds
        # the callbacks with whatever values it was given).
        self.remaining_ = float_epochs(net) if len(net.history) == 0 else 0
        net.module_.quantized = self.remaining_ <= 0

    def on_epoch_begin(self, net, **kwargs):
        if self.remaining_ >= 0:  # a float epoch, or the first quantized one
            for _, callback in net.callbacks_:
                if isinstance(callback, skorch.callbacks.EarlyStopping):
                    callback.on_train_begin(net)

    def on_epoch_end(self, net, **kwargs):
        self.remaining_ -= 1
        if self.remaining_ <= 0:
            net.module_.quantized = True

    def on_train_end(self, net, X=None, **kwargs):
        net.module_.quantized = True  # a fit stopped early (or interrupted) still ends quantized
        if self.remaining_ > 0 and X is not None:
            _calibrate_activations(net, X)  # stopped before its first quantized step


@torch.no_grad()
def _calibrate_activations(net, X) -> None:
    """One training-mode forward pass over a batch of ``X``, without a gradient step: the
    activation quantizers measure their ranges on the trained float network (a network that
    never ran quantized has none, and could be neither used nor copied)."""
    batch, _ = next(iter(net.get_iterator(net.get_dataset(X), training=False)))
    was_training = net.module_.training
    net.module_.train()
    net.infer(batch)
    net.module_.train(was_training)


def float_epochs(estimator) -> int:
    """Epochs ``float_pretraining`` trains unquantized: that fraction of ``max_epochs``, rounded down."""
    return int(estimator.float_pretraining * estimator.max_epochs)


def pruning_callback(estimator) -> PerNeuronPruning:
    """The pruning schedule of ``estimator``'s parameters, towards its ``pruning_budget``'s policy.

    At each pruning step the callback asks the policy for the keep counts under the net's
    ``accumulator_budget_`` and ``layer_omegas_`` then, so it follows the budget in force
    (``_set_accumulator_budget``) when the step runs.
    """
    return PerNeuronPruning(
        schedule=estimator.pruning,
        start=estimator.pruning_start,
        end=estimator.pruning_end,
        frequency=estimator.pruning_frequency,
        budget=estimator._budget_policy(),
        neuron_fraction=estimator.neuron_removal,
    )


def fhe_callbacks(estimator) -> list[tuple[str, skorch.callbacks.Callback]]:
    """The callbacks added to skorch's defaults, by name: ``pruning``, ``lr_schedule`` (with
    ``lr_schedule="cosine"``), ``float_pretraining``, ``weight_averaging`` (it reads the
    parameter at each training call: a no-op at 0) and ``train_score``.

    With ``pruning_budget="l1"``, ``accumulator_aware`` too: after every optimizer step it
    scales each neuron's weights down until its exact worst case fits the accumulator
    budget in force (``accumulator_budget_``, read at each step).
    """
    callbacks = [("pruning", pruning_callback(estimator))]
    if estimator.lr_schedule == "cosine":
        callbacks.append(("lr_schedule", CosineLearningRate()))
    if estimator.pruning_budget == "l1":
        callbacks.append(("accumulator_aware", AccumulatorAwareProjection()))
    callbacks.append(("float_pretraining", FloatPretraining()))
    callbacks.append(("weight_averaging", WeightAveraging()))
    return [*callbacks, ("train_score", training_score(estimator))]
