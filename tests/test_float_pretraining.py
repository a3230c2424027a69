"""float_pretraining: the first part of a fit trains the same network with its quantizers off."""

import pickle

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback, EarlyStopping

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor
from fhe_estimators.module import QuantMLP
from fhe_estimators.pruning import freeze_masks

QUICK = dict(hidden_layer_sizes=(8,), max_epochs=10, tighten=False, random_state=0)


class RecordQuantized(Callback):
    """Whether the network ran quantized, at the start of each epoch."""

    def on_train_begin(self, net, **kwargs):
        self.seen_ = []

    def on_epoch_begin(self, net, **kwargs):
        self.seen_.append(bool(net.module_.quantized))


def test_first_epochs_train_unquantized_then_quantized(iris):
    X_train, X_test, y_train, y_test = iris
    recorder = RecordQuantized()
    model = NeuralNetClassifier(callbacks=[("quantized", recorder)], **QUICK)  # the default: 30%
    model.fit(X_train, y_train)
    assert recorder.seen_ == [False] * 3 + [True] * 7
    assert model.module_.quantized
    # What compiles is the quantized network: the circuit agrees with the clear predictions.
    model.compile(X_train)
    np.testing.assert_array_equal(model.predict(X_test, fhe="simulate"), model.predict(X_test))


def test_continued_training_stays_quantized(iris):
    X_train, _, y_train, _ = iris
    recorder = RecordQuantized()
    model = NeuralNetClassifier(float_pretraining=0.5, callbacks=[("quantized", recorder)], **QUICK)
    model.fit(X_train, y_train)
    model.partial_fit(X_train, y_train)
    assert recorder.seen_ == [True] * 10


def test_zero_turns_it_off(diabetes):
    X_train, _, y_train, _ = diabetes
    recorder = RecordQuantized()
    model = NeuralNetRegressor(float_pretraining=0, callbacks=[("quantized", recorder)], **QUICK)
    model.fit(X_train, y_train)
    assert recorder.seen_ == [True] * 10


def test_early_stopping_counts_only_quantized_epochs(iris):
    X_train, _, y_train, _ = iris
    # A threshold no epoch can beat: skorch's EarlyStopping stops at the second epoch it counts.
    impatient = EarlyStopping(monitor="train_loss", patience=1, threshold=10.0)
    recorder = RecordQuantized()
    params = {**QUICK, "max_epochs": 20}
    model = NeuralNetClassifier(float_pretraining=0.25, callbacks=[impatient, ("quantized", recorder)], **params)
    model.fit(X_train, y_train)
    assert recorder.seen_ == [False] * 5 + [True] * 2  # five float epochs, then two quantized ones
    assert model.module_.quantized
    assert model.score(X_train, y_train) > 0.6  # a trained, calibrated quantized network


class Interrupt(Callback):
    """Stops a fit after its first epoch, as a user's Ctrl-C would (skorch catches it)."""

    def on_epoch_end(self, net, **kwargs):
        raise KeyboardInterrupt


def test_a_fit_interrupted_in_float_pretraining_ends_a_usable_quantized_network(iris):
    X_train, X_test, y_train, _ = iris
    model = NeuralNetClassifier(hidden_layer_sizes=(8,), max_epochs=10, random_state=0, callbacks=[Interrupt()])
    model.fit(X_train, y_train)  # the search on: its base fit, copies and fine-tunes must all work
    assert model.module_.quantized
    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(copy.predict_proba(X_test), model.predict_proba(X_test))
    model.compile(X_train)
    np.testing.assert_array_equal(model.predict(X_test, fhe="simulate"), model.predict(X_test))


def test_float_path_is_the_masked_float_network(breast_cancer):
    X_train, _, y_train, _ = breast_cancer
    model = NeuralNetClassifier(n_accum_bits=8, **QUICK).fit(X_train, y_train)
    module: QuantMLP = model.module_.eval()
    freeze_masks(module)  # masks of the non-zero weights, as during training
    first = module.linears[0]
    assert (first.weight_mask == 0).any()
    with torch.no_grad():
        first.weight_orig[first.weight_mask == 0] = 100.0  # what a pruned weight holds must not count
    X = torch.as_tensor(X_train[:5], dtype=torch.float32)
    module.quantized = False
    weights = [layer.weight_orig * layer.weight_mask for layer in module.linears]
    hidden = torch.relu(X @ weights[0].T + module.linears[0].bias)
    expected = hidden @ weights[1].T + module.linears[1].bias
    torch.testing.assert_close(module(X), expected)
    module.quantized = True
    assert not torch.allclose(module(X), expected)  # quantized, the outputs differ


def test_pruning_holds_through_float_pretraining(breast_cancer):
    X_train, _, y_train, _ = breast_cancer
    model = NeuralNetClassifier(
        float_pretraining=0.9, n_accum_bits=8, pruning_start=0.0, pruning_end=0.2, **QUICK
    ).fit(X_train, y_train)
    for report in model.pruning_report_:
        assert report["max_nonzero_float"] <= report["k"]
        assert report["accumulator_bits"] <= 8


@pytest.mark.parametrize("value", [-0.1, 1.0, "half"])
def test_bad_fraction_is_refused(iris, value):
    X_train, _, y_train, _ = iris
    with pytest.raises(ValueError, match="float_pretraining must be a fraction of max_epochs"):
        NeuralNetClassifier(float_pretraining=value, **QUICK).fit(X_train, y_train)
