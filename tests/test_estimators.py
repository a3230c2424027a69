"""Training, the pruning guarantee, labels and targets, without FHE."""

import numpy as np
import pytest

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor, omega
from fhe_estimators.budget import accumulator_bounds, fits_signed
from fhe_estimators.estimators import AUTO_WEIGHT_DECAYS

# Most tests here check training and pruning at the budget given: the tightening search
# (tests/test_search.py) is off unless a test says otherwise.
FAST = dict(max_epochs=15, random_state=0, tighten=False)
COUNT = dict(FAST, pruning_budget="count")


def assert_budget_holds(model):
    """Every neuron: ≤ k non-zeros, and exact worst case within n_accum_bits (recomputed here)."""
    layers = zip(model.module_.linears, model.module_.integer_layers(), model.pruning_report_, model.max_nonzero_per_neuron_)
    for layer, integer, report, k in layers:
        float_counts = np.count_nonzero(layer.weight.detach().numpy(), axis=1)
        assert (float_counts <= min(k, layer.weight.shape[1])).all()
        assert (np.count_nonzero(integer.weights, axis=1) <= k).all()
        low, high = accumulator_bounds(integer.weights, None, integer.input_min, integer.input_max)
        assert fits_signed(low, high, model.n_accum_bits).all()
        assert report["accumulator_bits"] <= model.n_accum_bits
    assert max(model.accumulator_bits_) <= model.n_accum_bits


@pytest.fixture(scope="module")
def cancer_model(breast_cancer):
    X_train, _, y_train, _ = breast_cancer
    return NeuralNetClassifier(hidden_layer_sizes=(24,), n_hidden_neurons_multiplier=1, **COUNT).fit(X_train, y_train)


def test_per_neuron_nonzero_counts_and_accumulator_fit_the_budget(cancer_model):
    assert cancer_model.omega_ == omega(10, 3, 3) == 20
    assert cancer_model.max_nonzero_per_neuron_ == [20, 20]
    assert_budget_holds(cancer_model)
    first = cancer_model.pruning_report_[0]
    assert first["fan_in"] == 30 and first["k"] == 20 and first["max_nonzero"] <= 20
    assert 0.3 < first["sparsity"] < 1.0


@pytest.mark.parametrize("n_accum_bits", [10, 7])
def test_multiplier_four_keeps_more_weights_and_exact_check_still_holds(breast_cancer, n_accum_bits):
    X_train, _, y_train, _ = breast_cancer
    model = NeuralNetClassifier(
        hidden_layer_sizes=(24,), n_accum_bits=n_accum_bits, n_hidden_neurons_multiplier=4, **COUNT
    ).fit(X_train, y_train)
    assert model.max_nonzero_per_neuron_ == [min(fan_in, 4 * omega(n_accum_bits, 3, 3)) for fan_in in (30, 24)]
    assert_budget_holds(model)
    if n_accum_bits == 7:
        # Ω = 2, so 8 weights per neuron may be kept: only the exact check keeps the bound.
        assert sum(layer["dropped_by_check"] for layer in model.pruning_report_) > 0


def test_pruning_history_is_recorded(cancer_model):
    sparsity = cancer_model.history[:, "sparsity"]
    assert len(sparsity) == 15 and sparsity[0] == 0.0 and sparsity[-1] > 0.3


def test_classifier_learns_breast_cancer(cancer_model, breast_cancer):
    _, X_test, _, y_test = breast_cancer
    assert cancer_model.score(X_test, y_test) > 0.9
    proba = cancer_model.predict_proba(X_test)
    assert proba.shape == (len(X_test), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)


def test_string_labels_multiclass(iris):
    X_train, X_test, y_train, y_test = iris
    names = np.array(["setosa", "versicolor", "virginica"])
    model = NeuralNetClassifier(hidden_layer_sizes=(16,), max_epochs=40, random_state=0).fit(X_train, names[y_train])
    assert list(model.classes_) == list(names)
    predictions = model.predict(X_test)
    assert predictions.dtype.kind == "U" and set(predictions) <= set(names)
    assert model.score(X_test, names[y_test]) > 0.8
    assert model.predict_proba(X_test).shape == (len(X_test), 3)


def test_regressor_1d_target(diabetes):
    X_train, X_test, y_train, y_test = diabetes
    model = NeuralNetRegressor(hidden_layer_sizes=(16,), max_epochs=30, random_state=0).fit(X_train, y_train)
    predictions = model.predict(X_test)
    assert predictions.shape == (len(X_test),)
    assert model.score(X_test, y_test) > 0.2
    assert_budget_holds(model)


def test_regressor_2d_target(diabetes):
    X_train, X_test, y_train, _ = diabetes
    targets = np.column_stack([y_train, -2.0 * y_train + 5.0])
    model = NeuralNetRegressor(hidden_layer_sizes=(16,), max_epochs=30, random_state=0).fit(X_train, targets)
    predictions = model.predict(X_test)
    assert predictions.shape == (len(X_test), 2)
    # The two outputs learned the (negative) relation between the targets.
    assert np.corrcoef(predictions[:, 0], predictions[:, 1])[0, 1] < -0.9
    column = NeuralNetRegressor(hidden_layer_sizes=(8,), max_epochs=2, random_state=0).fit(X_train, y_train[:, None])
    assert column.predict(X_test).shape == (len(X_test), 1)


def test_same_random_state_gives_same_model(breast_cancer):
    X_train, X_test, y_train, _ = breast_cancer
    first = NeuralNetClassifier(hidden_layer_sizes=(8,), max_epochs=5, random_state=3).fit(X_train, y_train)
    second = NeuralNetClassifier(hidden_layer_sizes=(8,), max_epochs=5, random_state=3).fit(X_train, y_train)
    for a, b in zip(first.module_.integer_layers(), second.module_.integer_layers()):
        np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_array_equal(first.predict_proba(X_test), second.predict_proba(X_test))


def test_clone_and_grid_search_over_the_bit_budget(breast_cancer):
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV

    X_train, _, y_train, _ = breast_cancer
    model = NeuralNetClassifier(
        hidden_layer_sizes=(4,), n_accum_bits=9, max_epochs=3, random_state=0, optimizer__weight_decay=1e-3
    )
    params = clone(model).get_params(deep=False)
    assert params["n_accum_bits"] == 9 and params["hidden_layer_sizes"] == (4,)
    assert params["optimizer__weight_decay"] == 1e-3 and "module" not in params
    search = GridSearchCV(model, {"n_accum_bits": [8, 10]}, cv=2).fit(X_train, y_train)
    assert search.best_estimator_.n_accum_bits in (8, 10)
    assert max(search.best_estimator_.accumulator_bits_) <= search.best_estimator_.n_accum_bits


def test_regressor_picks_its_weight_decay_on_a_hold_out(diabetes):
    X_train, _, y_train, _ = diabetes
    model = NeuralNetRegressor(hidden_layer_sizes=(8,), max_epochs=8, random_state=0).fit(X_train, y_train)
    assert "optimizer__weight_decay" not in model.get_params()  # "auto" is the regressor's default
    scores = model.regularization_scores_
    tried = sorted(decay for decay, density in scores if density == 1.0)
    assert tried == list(AUTO_WEIGHT_DECAYS[: len(tried)])  # weakest first, until past the best
    # The strongest setting whose hold-out R² ties the best (a regressor: no standard-error allowance).
    best = max(scores.values())
    strongest = max((s for s, r2 in scores.items() if r2 >= best - 1e-12), key=lambda s: (s[0], -s[1]))
    assert (model.weight_decay_, model.first_layer_density_) == strongest
    assert model.optimizer_.param_groups[0]["weight_decay"] == model.weight_decay_
    model.set_params(optimizer__weight_decay=0.05).fit(X_train, y_train)
    assert model.weight_decay_ == 0.05 and not hasattr(model, "regularization_scores_")
    assert model.optimizer_.param_groups[0]["weight_decay"] == 0.05
    model.set_params(optimizer__weight_decay="auto", predict_nonlinearity=None)
    assert model.predict_nonlinearity is None and model.get_params()["optimizer__weight_decay"] == "auto"
    model.set_params(predict_nonlinearity="auto")  # "auto" outside optimizer__* is an ordinary value
    assert model.predict_nonlinearity == "auto"


@pytest.mark.parametrize("bad", [-0.1, "fast", None])
def test_weight_decay_must_be_a_number_or_auto(diabetes, bad):
    X_train, _, y_train, _ = diabetes
    with pytest.raises(ValueError, match="optimizer__weight_decay"):
        NeuralNetRegressor(max_epochs=1, optimizer__weight_decay=bad).fit(X_train, y_train)


def test_cosine_learning_rate_anneals_each_training_call(iris):
    X_train, _, y_train, _ = iris
    model = NeuralNetClassifier(hidden_layer_sizes=(4,), max_epochs=6, tighten=False, random_state=0)
    model.fit(X_train, y_train)
    rates = model.history[:, "lr"]
    assert rates[0] == pytest.approx(model.lr) and all(a > b for a, b in zip(rates, rates[1:]))
    assert rates[-1] < 0.1 * model.lr
    model.partial_fit(X_train, y_train)  # a new call anneals again from lr
    assert model.history[-6, "lr"] == pytest.approx(model.lr)
    constant = NeuralNetClassifier(hidden_layer_sizes=(4,), max_epochs=6, tighten=False, lr_schedule=None)
    constant.fit(X_train, y_train)
    assert "lr" not in constant.history[-1] and constant.optimizer_.param_groups[0]["lr"] == constant.lr
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        NeuralNetClassifier(lr_schedule="linear").fit(X_train, y_train)


def test_pickle_keeps_the_optimizer_bound_to_the_network_and_its_state(iris):
    """skorch pickles the optimizer; after loading it must update the rebuilt network's
    parameters (not orphan copies) and keep Adam's moments, so training continues."""
    import pickle

    import torch

    X, _, y, _ = iris
    model = NeuralNetClassifier(hidden_layer_sizes=(8,), max_epochs=5, tighten=False, random_state=0).fit(X, y)
    loaded = pickle.loads(pickle.dumps(model))
    network = {id(p) for p in loaded.module_.parameters()}
    optimized = [p for group in loaded.optimizer_.param_groups for p in group["params"]]
    assert optimized and all(id(p) in network for p in optimized)
    before, after = model.optimizer_.state_dict()["state"], loaded.optimizer_.state_dict()["state"]
    assert before.keys() == after.keys() and before
    for key in before:
        assert torch.equal(before[key]["exp_avg"], after[key]["exp_avg"])
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    loaded.partial_fit(X, y)  # trains on
    assert len(loaded.history) == len(model.history) + 5
