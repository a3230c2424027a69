"""Every constructor parameter does what it says: the multiplier cap, classes, n_jobs, random_state."""

import os

import joblib
import numpy as np
import pytest

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor, omega
from fhe_estimators.budget import accumulator_bounds, fits_signed
from fhe_estimators.runtime import check_n_jobs

# These tests check what each parameter does at the budget given, so the tightening search is off.
FAST = dict(hidden_layer_sizes=(12,), max_epochs=12, random_state=0, tighten=False)


def nonzeros(model):
    return [np.count_nonzero(layer.weights, axis=1) for layer in model.module_.integer_layers()]


# ---------------------------------------------------------------- the seed's rule: multiplier × Ω
@pytest.mark.parametrize("budget", ["exact", "count"])
def test_multiplier_times_omega_caps_every_neuron_in_every_mode(breast_cancer, budget):
    X_train, _, y_train, _ = breast_cancer
    model = NeuralNetClassifier(n_hidden_neurons_multiplier=1, pruning_budget=budget, **FAST).fit(X_train, y_train)
    # Ω per layer, from that layer's input bits (30 features leave no free input bit at 10 bits).
    assert model.n_input_bits_ == 3
    assert model.layer_omegas_ == [omega(10, 3, 3)] * 2 == [20, 20]
    caps = [min(30, 20), min(12, 20)]
    assert model.max_nonzero_per_neuron_ == caps
    assert [layer["k"] for layer in model.pruning_report_] == caps
    for layer, counts, cap in zip(model.module_.linears, nonzeros(model), caps):
        assert counts.max() <= cap
        assert np.count_nonzero(layer.weight.detach().numpy(), axis=1).max() <= cap
    assert model.pruning_report_[0]["max_nonzero_float"] == 20  # the cap binds: 30 inputs, 20 kept


def test_first_layer_omega_uses_the_input_bits(iris):
    X_train, _, y_train, _ = iris
    model = NeuralNetClassifier(n_hidden_neurons_multiplier=0.5, **FAST).fit(X_train, y_train)
    assert model.n_input_bits_ == 5  # 4 features: two extra input bits are free
    assert model.layer_omegas_ == [omega(10, 3, 5), omega(10, 3, 3)] == [4, 20]
    assert model.max_nonzero_per_neuron_ == [2, 10]


def test_a_larger_multiplier_keeps_more_weights_and_the_exact_check_still_holds(breast_cancer):
    X_train, _, y_train, _ = breast_cancer
    narrow = NeuralNetClassifier(n_hidden_neurons_multiplier=1, **FAST).fit(X_train, y_train)
    wide = NeuralNetClassifier(n_hidden_neurons_multiplier=1.4, **FAST).fit(X_train, y_train)
    assert narrow.max_nonzero_per_neuron_ == [20, 12] and wide.max_nonzero_per_neuron_ == [28, 12]
    assert nonzeros(wide)[0].sum() > nonzeros(narrow)[0].sum()
    for layer in wide.module_.integer_layers():
        low, high = accumulator_bounds(layer.weights, None, layer.input_min, layer.input_max)
        assert fits_signed(low, high, 10).all()


def test_fractional_multiplier_floors(iris):
    X_train, _, y_train, _ = iris
    model = NeuralNetClassifier(n_hidden_neurons_multiplier=0.25, **FAST).fit(X_train, y_train)
    # Ω = 4 for the first layer (4 features, 5 input bits) and 20 for the output layer.
    assert model.max_nonzero_per_neuron_ == [max(1, int(np.floor(0.25 * 4))), int(np.floor(0.25 * 20))] == [1, 5]
    assert all(counts.max() <= cap for counts, cap in zip(nonzeros(model), [1, 5]))


# ---------------------------------------------------------------- classes, predict_nonlinearity
def test_classes_parameter_is_honoured(iris):
    X_train, X_test, y_train, _ = iris
    seen = y_train < 2
    model = NeuralNetClassifier(classes=[0, 1, 2], **FAST).fit(X_train[seen], y_train[seen])
    np.testing.assert_array_equal(model.classes_, [0, 1, 2])
    assert model.predict_proba(X_test).shape == (len(X_test), 3)
    with pytest.raises(ValueError, match=r"labels \[5\] that are not among the classes \[0, 1, 2\]"):
        NeuralNetClassifier(classes=[0, 1, 2], **FAST).fit(X_train, np.where(y_train == 2, 5, y_train))
    with pytest.raises(ValueError, match="classes must list at least 2 distinct labels"):
        NeuralNetClassifier(classes=[1], **FAST).fit(X_train, np.ones(len(X_train), dtype=int))


@pytest.mark.parametrize("estimator", [NeuralNetClassifier, NeuralNetRegressor])
@pytest.mark.parametrize("nonlinearity", [None, np.tanh, "softmax"])
def test_predict_nonlinearity_other_than_auto_is_refused(iris, estimator, nonlinearity):
    X_train, _, y_train, _ = iris
    model = estimator(predict_nonlinearity=nonlinearity, **FAST)
    with pytest.raises(ValueError, match="predict_nonlinearity must be 'auto'"):
        model.fit(X_train, y_train)


# ---------------------------------------------------------------- n_jobs, random_state
@pytest.mark.parametrize("n_jobs", [None, 1, 2, -1, -2, -3, -100])
def test_n_jobs_follows_joblib(n_jobs):
    expected = 1 if n_jobs is None else joblib.effective_n_jobs(n_jobs)
    assert check_n_jobs(n_jobs, 1000) == expected
    assert check_n_jobs(n_jobs, 1) == 1


@pytest.mark.parametrize("n_jobs", [0, 1.5, True, "2"])
def test_n_jobs_refuses_what_joblib_refuses(n_jobs):
    with pytest.raises(ValueError, match="n_jobs"):
        check_n_jobs(n_jobs, 10)


def test_negative_n_jobs_is_accepted_by_fit_and_execute_paths(iris):
    X_train, _, y_train, _ = iris
    model = NeuralNetClassifier(n_jobs=-2, **FAST).fit(X_train, y_train)
    assert model.n_jobs == -2
    assert check_n_jobs(-2, 4) == max(1, min(4, (os.cpu_count() or 1) - 1))


def test_random_state_may_be_a_random_state_instance(iris):
    X_train, X_test, y_train, _ = iris
    first = NeuralNetClassifier(**{**FAST, "random_state": np.random.RandomState(3)}).fit(X_train, y_train)
    second = NeuralNetClassifier(**{**FAST, "random_state": np.random.RandomState(3)}).fit(X_train, y_train)
    np.testing.assert_array_equal(first.predict_proba(X_test), second.predict_proba(X_test))
    regressor = NeuralNetRegressor(**{**FAST, "random_state": np.random.RandomState(0)})
    assert regressor.fit(X_train, y_train.astype(float)).predict(X_test).shape == (len(X_test),)
    with pytest.raises(ValueError, match="random_state"):
        NeuralNetClassifier(**{**FAST, "random_state": "seed"}).fit(X_train, y_train)
