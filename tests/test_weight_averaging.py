"""weight_averaging: each training call ends on the mean of its last epochs' linear weights and biases."""

import pickle

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor
from fhe_estimators.weight_averaging import WeightAveraging, averaged_epochs, quantizers_calibrated

QUICK = dict(hidden_layer_sizes=(8,), max_epochs=8, tighten=False, random_state=0)


def linear_values(module) -> dict:
    """Each linear layer's bias and weight as the forward pass uses it (masked when pruned)."""
    values = {}
    for index, layer in enumerate(module.linears):
        weight = layer.weight_orig * layer.weight_mask if hasattr(layer, "weight_mask") else layer.weight
        values[f"{index}.weight"] = weight.detach().clone().double()
        values[f"{index}.bias"] = layer.bias.detach().clone().double()
    return values


def quantizer_values(module) -> dict:
    """Every other parameter: the quantizers' learned scales."""
    linear = {id(p) for layer in module.linears for p in layer.parameters(recurse=False)}
    return {name: p.detach().clone() for name, p in module.named_parameters() if id(p) not in linear}


class RecordParameters(Callback):
    """The linear layers' values after each epoch, whether that epoch could be averaged, and
    the values once training ended (after the averaging, before the exact check)."""

    def on_train_begin(self, net, **kwargs):
        self.epochs_, self.scales_, self.qualified_, self.final_ = [], [], [], None

    def on_epoch_end(self, net, **kwargs):
        module = net.module_
        self.epochs_.append(linear_values(module))
        self.scales_.append(quantizer_values(module))
        self.qualified_.append(bool(module.quantized) and quantizers_calibrated(module))

    def on_train_end(self, net, **kwargs):
        self.final_ = linear_values(net.module_)
        self.final_scales_ = quantizer_values(net.module_)
        self.final_masks_ = [getattr(layer, "weight_mask", None) for layer in net.module_.linears]


def fit_recording(recorder: Callback, X, y, **params) -> NeuralNetClassifier:
    """A quick classifier fitted with ``recorder`` among its callbacks."""
    return NeuralNetClassifier(callbacks=[("record", recorder)], **params, **QUICK).fit(X, y)


def assert_mean_of(final: dict, epochs: list) -> None:
    """Each final parameter is the mean of its values at the end of ``epochs``."""
    for name, value in final.items():
        expected = sum(epoch[name] for epoch in epochs) / len(epochs)
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "fraction, epochs, expected", [(0.0, 100, 0), (0.25, 100, 25), (0.25, 8, 2), (0.01, 8, 1), (0.99, 8, 8)]
)
def test_averaged_epochs(fraction, epochs, expected):
    assert averaged_epochs(fraction, epochs) == expected


def test_the_default_is_off(iris):
    X_train, _, y_train, _ = iris
    recorder = RecordParameters()
    model = fit_recording(recorder, X_train, y_train)
    assert model.weight_averaging == 0.0
    assert "averaged_epochs" not in model.history[-1]
    assert_mean_of(recorder.final_, recorder.epochs_[-1:])  # the last epoch's weights, as trained


def test_set_params_then_warm_start_averages(iris):
    X_train, _, y_train, _ = iris
    model = NeuralNetClassifier(**QUICK).fit(X_train, y_train)
    model.set_params(weight_averaging=0.5, warm_start=True).fit(X_train, y_train)
    assert model.history[-1, "averaged_epochs"] == 4


def test_parameters_end_as_the_mean_of_the_last_epochs(iris):
    X_train, X_test, y_train, _ = iris
    recorder = RecordParameters()
    model = fit_recording(recorder, X_train, y_train, weight_averaging=0.5, float_pretraining=0)
    last = recorder.epochs_[-4:]  # half of 8 epochs, every one of them quantized and calibrated
    assert all(recorder.qualified_[-4:])
    assert model.history[-1, "averaged_epochs"] == 4
    assert_mean_of(recorder.final_, last)
    assert not torch.equal(recorder.final_["0.weight"], last[-1]["0.weight"])  # not simply the last epoch
    # The learned power-of-two scales are the last epoch's: a mean could round up to twice the step.
    assert recorder.final_scales_, "the network has learned scales"
    for name, value in recorder.final_scales_.items():
        torch.testing.assert_close(value, recorder.scales_[-1][name], rtol=0, atol=0)
    # The averaged network is what is checked, compiled and run.
    model.compile(X_train)
    np.testing.assert_array_equal(model.predict(X_test, fhe="simulate"), model.predict(X_test))


class RecordMaskedWeights(Callback):
    """Each pruned layer's weight once training ended, with what its mask makes of its parameter."""

    def on_train_end(self, net, **kwargs):
        self.layers_ = [
            (layer.weight.detach().clone(), (layer.weight_orig * layer.weight_mask).detach(), layer.weight_mask.clone())
            for layer in net.module_.linears
            if hasattr(layer, "weight_mask")
        ]


def test_pruned_weights_stay_pruned(iris):
    X_train, _, y_train, _ = iris
    recorder = RecordMaskedWeights()
    model = fit_recording(recorder, X_train, y_train, weight_averaging=0.5, n_hidden_neurons_multiplier=0.1)
    assert model.history[-1, "averaged_epochs"] == 4  # the weights checked below are averaged ones
    assert any((mask == 0).any() for _, _, mask in recorder.layers_)  # the test exercises pruning
    for weight, masked, _ in recorder.layers_:
        torch.testing.assert_close(weight, masked)  # the averaged weights, under the current masks
    assert max(model.accumulator_bits_) <= model.n_accum_bits


def test_weights_pruned_during_the_window_average_as_used(iris):
    X_train, _, y_train, _ = iris
    recorder = RecordParameters()
    # Pruning runs until 60% of the epochs: a window of the last 7 of 8 sees masks change.
    model = fit_recording(
        recorder, X_train, y_train, weight_averaging=0.875, float_pretraining=0, n_hidden_neurons_multiplier=0.1
    )
    counted = model.history[-1, "averaged_epochs"]
    last = recorder.epochs_[-counted:]
    pruned = [int((epoch["0.weight"] == 0).sum()) for epoch in last]
    assert pruned[0] != pruned[-1]  # the test exercises a mask change inside the window
    # The mean of the weights the network computed with, under the mask training ended with.
    mask = recorder.final_masks_[0].double()
    expected = sum(epoch["0.weight"] for epoch in last) / counted * mask
    torch.testing.assert_close(recorder.final_["0.weight"], expected, rtol=1e-5, atol=1e-6)


def test_only_quantized_calibrated_epochs_count(iris):
    X_train, _, y_train, _ = iris
    recorder = RecordParameters()
    # Half of the 8 epochs in float, then the activation quantizers collect their ranges: the
    # averaging window (the last 7 epochs) starts before the network's scales exist.
    model = fit_recording(recorder, X_train, y_train, weight_averaging=0.875, float_pretraining=0.5)
    window = recorder.qualified_[-7:]
    assert not all(window)  # the test exercises the rule
    counted = model.history[-1, "averaged_epochs"]
    assert counted == sum(window) > 0
    last = recorder.epochs_[-counted:]
    assert_mean_of(recorder.final_, last)


def test_each_training_call_averages_its_own_epochs(diabetes):
    X_train, X_test, y_train, _ = diabetes
    model = NeuralNetRegressor(weight_averaging=0.25, **QUICK).fit(X_train, y_train)
    model.partial_fit(X_train, y_train)
    averaged = [row.get("averaged_epochs") for row in model.history]
    assert averaged == [None] * 7 + [2] + [None] * 7 + [2]
    model.compile(X_train)
    np.testing.assert_allclose(model.predict(X_test, fhe="simulate"), model.predict(X_test), rtol=1e-5)


def test_a_fitted_model_keeps_no_sums_and_pickles(iris):
    X_train, X_test, y_train, _ = iris
    model = NeuralNetClassifier(weight_averaging=0.25, **QUICK).fit(X_train, y_train)
    callback = dict(model.callbacks_)["weight_averaging"]
    assert isinstance(callback, WeightAveraging) and callback.sums_ is None
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(X_test), model.predict(X_test))


def test_works_with_the_search(iris):
    X_train, X_test, y_train, y_test = iris
    # 8 epochs leave iris at 0.6-0.8 with or without averaging (seeds 0-4); 20 give 0.79-0.87.
    model = NeuralNetClassifier(weight_averaging=0.25, **{**QUICK, "max_epochs": 20, "tighten": True}).fit(X_train, y_train)
    assert model.history[-1, "averaged_epochs"] >= 1  # the search's last fine-tune was averaged
    assert model.score(X_test, y_test) > 0.75  # far above chance (1/3): the averaged weights work
