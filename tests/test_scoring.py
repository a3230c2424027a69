"""Cost-aware grid search: the latency scorer and the fastest-within-tolerance refit rule."""

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from fhe_estimators import NeuralNetClassifier
from fhe_estimators.cost import estimate_cost
from fhe_estimators.scoring import fastest_within, latency_scorer


def test_fastest_within_picks_the_cheapest_candidate_near_the_best():
    results = {
        "mean_test_accuracy": np.array([0.97, 0.965, 0.95, 0.972]),
        "mean_test_latency": np.array([-2.0, -0.5, -0.1, -3.0]),  # minus seconds: higher is faster
    }
    assert fastest_within(0.01, score="accuracy", cost="latency")(results) == 1
    assert fastest_within(0.0, score="accuracy", cost="latency")(results) == 3
    assert fastest_within(0.05, score="accuracy", cost="latency")(results) == 2
    with pytest.raises(ValueError, match="scorer named 'speed'"):
        fastest_within(0.01, score="accuracy", cost="speed")(results)
    with pytest.raises(ValueError, match="tolerance"):
        fastest_within(-1)


def test_grid_search_refits_the_fastest_model_within_tolerance(breast_cancer):
    X_train, _, y_train, _ = breast_cancer
    model = NeuralNetClassifier(max_epochs=8, tighten=False, random_state=0)
    grid = {"hidden_layer_sizes": [(4,), (24,)], "n_accum_bits": [8, 10]}
    search = GridSearchCV(
        model,
        grid,
        cv=2,
        scoring={"accuracy": "accuracy", "latency": latency_scorer},
        refit=fastest_within(0.02, score="accuracy", cost="latency"),
    ).fit(X_train, y_train)
    results = search.cv_results_
    accuracy, latency = results["mean_test_accuracy"], -results["mean_test_latency"]
    feasible = accuracy >= accuracy.max() - 0.02
    assert latency[search.best_index_] == latency[feasible].min()
    # The scorer is the cost model's prediction for the refitted model.
    assert latency_scorer(search.best_estimator_) == -estimate_cost(search.best_estimator_).latency_s
    assert latency.max() > latency.min()  # 4 vs 24 neurons, 8 vs 10 bits: different circuits


def test_latency_scorer_needs_a_fitted_model():
    with pytest.raises(TypeError, match="fitted fhe_estimators models"):
        latency_scorer(NeuralNetClassifier())
