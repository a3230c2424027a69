"""The one internal split and the tie rule every choice made on it follows (fhe_estimators.holdout)."""

import numpy as np
import pytest

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor, holdout, search


def test_the_split_is_stratified_fixed_and_survives_a_rare_class():
    y = np.array([0] * 80 + [1] * 20)
    train, held = holdout.internal_split(y, classifier=True)
    assert len(held) == int(np.ceil(holdout.HOLDOUT_FRACTION * len(y)))
    assert np.mean(y[held]) == pytest.approx(0.2)  # stratified
    again = holdout.internal_split(y, classifier=True)
    np.testing.assert_array_equal(held, again[1])  # the same rows every time
    rare = np.array([0] * 99 + [1])  # one sample of class 1: not stratifiable, still split
    train, held = holdout.internal_split(rare, classifier=True)
    assert len(train) + len(held) == len(rare) and len(set(train) & set(held)) == 0


def test_ties_go_to_the_simpler_choice():
    best = np.ones(28)
    one_miss = np.r_[0.0, np.ones(27)]
    three_misses = np.r_[np.zeros(3), np.ones(25)]
    # Simplest first: one miss in 28 rows is within one standard error of the best, three are not.
    assert holdout.simplest_within([three_misses, one_miss, best], standard_errors=1.0) == 1
    assert holdout.simplest_within([three_misses, one_miss, best], standard_errors=0.0) == 2
    # An exact tie goes to the simpler one even without allowance.
    assert holdout.simplest_within([best.copy(), best], standard_errors=0.0) == 0


def test_weight_decay_choice_prefers_the_stronger_of_exact_ties():
    rows = {1e-4: np.ones(28), 1e-2: np.ones(28), 1e-1: np.r_[0.0, np.ones(27)]}
    decay, scores = holdout.choose_weight_decay(rows)
    assert decay == 1e-2 and scores[1e-4] == 1.0 and scores[1e-1] == pytest.approx(27 / 28)
    rows[1e-2] = np.r_[0.0, np.ones(27)]  # one row worse is not a tie
    assert holdout.choose_weight_decay(rows)[0] == 1e-4


def test_the_search_picks_the_weight_decay_on_its_own_split(diabetes, monkeypatch):
    # One split, one mechanism: with the search on, "auto" is chosen among the search's own base
    # fits (no second split, no nested search, no refit).
    calls = {"select": 0, "tighten": 0}
    select, tighten = NeuralNetRegressor._select_weight_decay, search.tighten

    def counting_select(self, *args):
        calls["select"] += 1
        return select(self, *args)

    def counting_tighten(*args, **kwargs):
        calls["tighten"] += 1
        return tighten(*args, **kwargs)

    monkeypatch.setattr(NeuralNetRegressor, "_select_weight_decay", counting_select)
    monkeypatch.setattr(search, "tighten", counting_tighten)
    X_train, X_test, y_train, y_test = diabetes
    model = NeuralNetRegressor(hidden_layer_sizes=(8,), max_epochs=10, random_state=0).fit(X_train, y_train)
    assert calls == {"select": 0, "tighten": 1}
    assert set(model.weight_decay_scores_) == set(holdout.AUTO_WEIGHT_DECAYS)
    assert model.weight_decay_ in holdout.AUTO_WEIGHT_DECAYS
    assert model.optimizer_.param_groups[0]["weight_decay"] == model.weight_decay_
    assert "optimizer__weight_decay" not in model.get_params()  # the default "auto", untouched
    # Without the search, "auto" fits one plain model per penalty on the same kind of split.
    plain = NeuralNetRegressor(hidden_layer_sizes=(8,), max_epochs=10, random_state=0, tighten=False)
    plain.fit(X_train, y_train)
    assert calls == {"select": 1, "tighten": 1}
    assert set(plain.weight_decay_scores_) == set(holdout.AUTO_WEIGHT_DECAYS)


def test_a_fixed_weight_decay_is_not_searched(breast_cancer):
    X_train, _, y_train, _ = breast_cancer
    model = NeuralNetClassifier(hidden_layer_sizes=(8,), max_epochs=10, random_state=0).fit(X_train, y_train)
    assert model.weight_decay_ == 1e-4 and not hasattr(model, "weight_decay_scores_")
