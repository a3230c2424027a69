"""The estimators inside scikit-learn's machinery: clone, search, pipelines, CV, skorch callbacks."""

import numpy as np
import pytest
from scipy.stats import randint
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import (
    GridSearchCV,
    RandomizedSearchCV,
    cross_val_score,
    cross_validate,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from skorch.callbacks import EarlyStopping
from skorch.dataset import ValidSplit

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor
from fhe_estimators.pruning import nonzero_per_neuron

SMALL = {"hidden_layer_sizes": (6,), "max_epochs": 6, "random_state": 0}


def zero_patterns(model):
    return [layer.weight.detach().numpy() == 0 for layer in model.module_.linears]


def assert_within_budget(model):
    """Recomputed here from brevitas' integer weights, trusting none of the model's own figures.

    Worst case of neuron j over every input its quantizer can produce:
    Σ_i max(w_ji·x_min, w_ji·x_max); it must fit a signed n_accum_bits integer.
    Each neuron keeps at most floor(multiplier × Ω) weights, Ω from its layer's input bits.
    """
    input_bits = [model.n_input_bits_] + [model.n_a_bits] * (len(model.module_.linears) - 1)
    ranges = [(-(2 ** (input_bits[0] - 1)), 2 ** (input_bits[0] - 1) - 1)]
    ranges += [(0, 2**model.n_a_bits - 1)] * (len(model.module_.linears) - 1)
    limit = 2 ** (model.n_accum_bits - 1)
    for linear, bits, (x_min, x_max) in zip(model.module_.linears, input_bits, ranges):
        weights = linear.quant_weight().int().detach().numpy().astype(np.int64)
        assert np.all(np.abs(weights) <= 2 ** (model.n_w_bits - 1))
        highest = np.maximum(weights * x_min, weights * x_max).sum(axis=1)
        lowest = np.minimum(weights * x_min, weights * x_max).sum(axis=1)
        assert highest.max() <= limit - 1 and lowest.min() >= -limit
        omega = (2**model.n_accum_bits - 1) // ((2**model.n_w_bits - 1) * (2**bits - 1))
        cap = max(1, min(weights.shape[1], int(np.floor(model.n_hidden_neurons_multiplier * omega))))
        assert np.count_nonzero(weights, axis=1).max() <= cap
        assert nonzero_per_neuron(linear.weight).max() <= cap


# ---------------------------------------------------------------- parameters
def test_clone_keeps_every_parameter():
    model = NeuralNetRegressor(
        hidden_layer_sizes=(7, 3),
        n_w_bits=2,
        n_a_bits=4,
        n_accum_bits=11,
        n_input_bits=5,
        input_scale=0.5,
        n_hidden_neurons_multiplier=2.5,
        pruning="oneshot",
        pruning_budget="count",
        neuron_removal=0.25,
        pruning_start=0.2,
        pruning_end=0.5,
        pruning_frequency=2,
        rounding_threshold_bits=6,
        p_error=0.01,
        fhe="simulate",
        random_state=7,
        lr=0.003,
        max_epochs=11,
        batch_size=16,
        optimizer__weight_decay=0.02,
        callbacks=[("stop", EarlyStopping(monitor="train_loss", patience=3))],
    )
    original, copied = model.get_params(deep=False), clone(model).get_params(deep=False)
    assert set(original) == set(copied)
    for name, value in original.items():
        if name == "callbacks":
            assert [(key, type(cb), cb.patience) for key, cb in copied[name]] == [("stop", EarlyStopping, 3)]
        else:
            assert copied[name] == value, name


def test_parameters_are_keyword_only():
    # As in scikit-learn: adding a parameter can never shift what a positional argument means.
    with pytest.raises(TypeError, match="positional"):
        NeuralNetClassifier((16,))
    assert NeuralNetClassifier(hidden_layer_sizes=(16,)).hidden_layer_sizes == (16,)


def test_set_params_changes_what_the_next_fit_does(breast_cancer):
    X_train, _, y_train, _ = breast_cancer
    model = NeuralNetClassifier(**SMALL, tighten=False).fit(X_train, y_train)  # the layers as given
    assert [layer.out_features for layer in model.module_.linears] == [6, 2]
    model.set_params(
        hidden_layer_sizes=(8, 8),
        n_accum_bits=8,
        n_w_bits=2,
        pruning_budget="count",
        n_hidden_neurons_multiplier=0.5,
        pruning="oneshot",
    ).fit(X_train, y_train)
    assert [layer.out_features for layer in model.module_.linears] == [8, 8, 2]
    assert max(model.accumulator_bits_) <= 8
    assert model.module_.n_w_bits == 2
    # count budget: k = 0.5 × Ω, Ω = floor(255 / (3 · 7)) = 12 after the first layer
    assert [report["k"] for report in model.pruning_report_][1:] == [6, 6]
    assert_within_budget(model)


# ---------------------------------------------------------------- searches
def test_grid_and_randomized_search_over_the_fhe_budget_with_two_jobs(breast_cancer):
    X_train, _, y_train, _ = breast_cancer
    model = NeuralNetClassifier(**SMALL, fhe="simulate")
    grid = {
        "n_accum_bits": [8, 10],
        "n_hidden_neurons_multiplier": [0.5, 1.0],
        "hidden_layer_sizes": [(4,), (6,)],
    }
    search = GridSearchCV(model, grid, cv=2, n_jobs=2).fit(X_train, y_train)
    assert len(search.cv_results_["params"]) == 8
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert search.best_score_ > 0.85
    assert_within_budget(search.best_estimator_)

    randomized = RandomizedSearchCV(
        model,
        {"n_accum_bits": randint(8, 11), "n_hidden_neurons_multiplier": [0.5, 1.0, 2.0]},
        n_iter=3,
        cv=2,
        n_jobs=2,
        random_state=0,
    ).fit(X_train, y_train)
    best = randomized.best_estimator_
    assert 8 <= best.n_accum_bits <= 10
    assert_within_budget(best)


def test_with_fhe_simulate_cross_validation_scores_the_compiled_circuit(breast_cancer):
    X_train, _, y_train, _ = breast_cancer
    model = NeuralNetClassifier(**SMALL, fhe="simulate", n_accum_bits=9)
    results = cross_validate(model, X_train, y_train, cv=2, n_jobs=2, return_estimator=True, return_indices=True)
    for estimator, test_rows, score in zip(results["estimator"], results["indices"]["test"], results["test_score"]):
        # Scoring compiled it: the score is that of the FHE circuit, in simulation.
        assert estimator.circuit_report_.max_bit_width <= 16
        simulated = estimator.score(X_train[test_rows], y_train[test_rows], fhe="simulate")
        assert score == pytest.approx(simulated)


# ---------------------------------------------------------------- pipelines
@pytest.fixture(scope="module")
def raw_breast_cancer():
    return load_breast_cancer(return_X_y=True)


@pytest.fixture(scope="module")
def pipeline(raw_breast_cancer):
    X, y = raw_breast_cancer
    # A 7-bit budget keeps the circuit narrow, so encrypted execution takes seconds.
    network = NeuralNetClassifier(hidden_layer_sizes=(6,), max_epochs=30, random_state=0, n_w_bits=2, n_a_bits=2, n_accum_bits=7)
    pipe = Pipeline([("scale", StandardScaler()), ("nn", network)])
    return pipe.fit(X, y)


def test_pipeline_compiles_on_its_transformed_calibration_sample(pipeline, raw_breast_cancer):
    X, y = raw_breast_cancer
    network = pipeline[-1]
    # The calibration sample kept at fit is what the network saw: scaled, not raw.
    assert np.abs(network.calibration_X_.mean(axis=0)).max() < 0.5
    assert np.abs(X.mean(axis=0)).max() > 100
    network.compile()
    simulated = pipeline.predict(X, fhe="simulate")
    np.testing.assert_array_equal(simulated, pipeline.predict(X))
    assert np.mean(simulated == y) > 0.9


@pytest.mark.fhe_execute
def test_pipeline_predicts_encrypted(pipeline, raw_breast_cancer):
    X, _ = raw_breast_cancer
    pipeline[-1].compile()
    np.testing.assert_array_equal(pipeline.predict(X[:2], fhe="execute"), pipeline.predict(X[:2], fhe="simulate"))


def test_cross_val_score_on_a_pipeline(raw_breast_cancer):
    X, y = raw_breast_cancer
    # Twelve epochs: with six, one fold's 6-neuron network, narrowed further by the search, scored 0.847.
    pipe = Pipeline([("scale", StandardScaler()), ("nn", NeuralNetClassifier(**{**SMALL, "max_epochs": 12}))])
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.85


# ---------------------------------------------------------------- skorch keeps working
def test_early_stopping_combines_with_pruning(breast_cancer):
    X_train, _, y_train, _ = breast_cancer
    labels = np.array(["malignant", "benign"])[y_train]  # skorch's valid_acc still sees encoded labels
    model = NeuralNetClassifier(
        hidden_layer_sizes=(6,),
        max_epochs=60,
        random_state=0,
        train_split=ValidSplit(0.2, stratified=True, random_state=0),
        callbacks=[EarlyStopping(monitor="valid_loss", patience=2, threshold=1e-2)],
    ).fit(X_train, labels)
    history = model.history
    assert len(history) < 60  # stopped early
    assert {"valid_loss", "valid_acc", "train_loss", "sparsity", "train_acc"} <= set(history[-1])
    assert history[-1, "valid_acc"] > 0.85
    assert set(model.predict(X_train)) <= {"malignant", "benign"}
    # Stopped before the schedule's end: the final budget was still applied when fit finished.
    assert_within_budget(model)
    assert model.pruning_report_[0]["sparsity"] > 0


@pytest.mark.parametrize("continue_with", ["partial_fit", "warm_start"])
def test_continued_training_keeps_masks_and_guarantee(breast_cancer, continue_with):
    X_train, X_test, y_train, _ = breast_cancer
    model = NeuralNetClassifier(**SMALL).fit(X_train, y_train)
    zeros_before = zero_patterns(model)
    outputs_before = model.predict_proba(X_test)
    epochs_before = len(model.history)  # training, plus the search's fine-tunes of the winner
    if continue_with == "partial_fit":
        model.partial_fit(X_train, y_train)
    else:
        model.set_params(warm_start=True).fit(X_train, y_train)
    assert len(model.history) == epochs_before + SMALL["max_epochs"]
    assert not np.allclose(model.predict_proba(X_test), outputs_before)  # it did train
    for before, after in zip(zeros_before, zero_patterns(model)):
        assert np.all(after[before])  # no pruned weight came back
    assert_within_budget(model)


def test_partial_fit_from_scratch_takes_every_class_up_front(iris):
    X_train, _, y_train, _ = iris
    first = y_train != 2
    model = NeuralNetClassifier(**SMALL).partial_fit(X_train[first], y_train[first], classes=[0, 1, 2])
    assert list(model.classes_) == [0, 1, 2]
    model.partial_fit(X_train, y_train)  # class 2 arrives later
    assert set(model.predict(X_train)) <= {0, 1, 2}
    with pytest.raises(ValueError, match=r"labels \[7\] that are not among the classes"):
        model.partial_fit(X_train[:3], [0, 1, 7])


def test_regressor_partial_fit_keeps_the_target_scaling(diabetes):
    X_train, _, y_train, _ = diabetes
    model = NeuralNetRegressor(**SMALL, optimizer__weight_decay=0.1).fit(X_train, y_train)
    mean, scale = model.target_mean_.copy(), model.target_scale_.copy()
    model.partial_fit(X_train[:50], y_train[:50] + 1000.0)
    np.testing.assert_array_equal(model.target_mean_, mean)
    np.testing.assert_array_equal(model.target_scale_, scale)
    with pytest.raises(ValueError, match="2 target columns but the model was fitted with 1"):
        model.partial_fit(X_train[:5], np.ones((5, 2)))
    assert_within_budget(model)
