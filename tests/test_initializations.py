"""n_init: several random initializations of the chosen setting, the internal hold-out keeps one."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_regression

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor, estimators, holdout, regularization
from fhe_estimators.holdout import HoldoutRows

SMALL = dict(hidden_layer_sizes=(8,), max_epochs=8, random_state=0)


def _classification_rows(correct, true_probability):
    correct = np.asarray(correct, dtype=float)
    probability = np.asarray(true_probability, dtype=float)
    return HoldoutRows(correct, probability, np.log(probability))


def test_the_likeliest_of_the_tied_initializations_wins():
    # 40 rows; the second network is one row less accurate (a tie within a standard error) but
    # gives the true class more probability: the likelihood decides among ties.
    first = _classification_rows([1] * 30 + [0] * 10, [0.6] * 40)
    second = _classification_rows([1] * 29 + [0] * 11, [0.8] * 40)
    assert holdout.choose_initialization([first, second]) == 1


def test_a_clearly_more_accurate_initialization_wins_over_a_likelier_one():
    first = _classification_rows([1] * 38 + [0] * 2, [0.55] * 40)
    second = _classification_rows([1] * 20 + [0] * 20, [0.9] * 40)
    assert holdout.choose_initialization([first, second]) == 0


def test_equal_initializations_keep_the_first():
    rows = _classification_rows([1, 0, 1, 1], [0.7, 0.4, 0.9, 0.8])
    assert holdout.choose_initialization([rows, rows, rows]) == 0


def test_the_first_initialization_keeps_the_seed_and_the_others_draw_their_own():
    seeds = [regularization.initialization_seed(7, i) for i in range(4)]
    assert seeds[0] == 7
    assert len(set(seeds)) == 4 and all(0 <= s < 2**31 for s in seeds)
    assert seeds == [regularization.initialization_seed(7, i) for i in range(4)]  # reproducible
    assert regularization.initialization_seed(8, 1) != seeds[1]


def _first_layer(model) -> np.ndarray:
    return model.module_.linears[0].weight.detach().numpy().copy()


def test_n_init_compares_that_many_networks_and_keeps_the_one_the_hold_out_prefers(breast_cancer, monkeypatch):
    X_train, _, y_train, _ = breast_cancer
    seen = []
    choose = holdout.choose_initialization

    def spy(rows):
        seen.append(rows)
        return choose(rows)

    monkeypatch.setattr(regularization, "choose_initialization", spy)
    model = NeuralNetClassifier(**SMALL, n_init=3, tighten=False, optimizer__weight_decay="auto").fit(X_train, y_train)
    assert len(seen) == 1 and len(seen[0]) == 3
    assert model.initialization_ == choose(seen[0])
    assert model.initialization_scores_ == pytest.approx([float(r.score.mean()) for r in seen[0]])
    # The three networks really are different ones (different initial weights, different hold-out rows).
    assert len({tuple(r.confidence) for r in seen[0]}) == 3


def test_the_plain_fit_trains_from_the_chosen_initialization(breast_cancer, monkeypatch):
    # Without the search, the fit on all the rows seeds torch as the chosen initialization did.
    X_train, _, y_train, _ = breast_cancer
    monkeypatch.setattr(regularization, "choose_initialization", lambda rows: len(rows) - 1)
    seeds = []
    manual_seed = torch.manual_seed
    monkeypatch.setattr(estimators.torch, "manual_seed", lambda seed: (seeds.append(seed), manual_seed(seed))[1])
    model = NeuralNetClassifier(**SMALL, n_init=2, tighten=False, optimizer__weight_decay="auto").fit(X_train, y_train)
    assert model.initialization_ == 1
    assert seeds[-1] == regularization.initialization_seed(0, 1) != 0


def test_one_initialization_trains_what_a_fit_always_trained(diabetes):
    X_train, _, y_train, _ = diabetes
    once = NeuralNetRegressor(**SMALL, n_init=1, tighten=False, optimizer__weight_decay=1e-3).fit(X_train, y_train)
    again = NeuralNetRegressor(**SMALL, n_init=1, tighten=False, optimizer__weight_decay=1e-3).fit(X_train, y_train)
    assert once.initialization_ == 0 and not hasattr(once, "initialization_scores_")
    np.testing.assert_array_equal(_first_layer(once), _first_layer(again))
    # A given penalty and no search: no hold-out, so n_init has nothing to choose by.
    more = NeuralNetRegressor(**SMALL, n_init=3, tighten=False, optimizer__weight_decay=1e-3).fit(X_train, y_train)
    assert more.initialization_ == 0
    np.testing.assert_array_equal(_first_layer(once), _first_layer(more))


def test_the_search_compares_initializations_with_a_given_penalty_too(monkeypatch):
    X, y = make_regression(n_samples=560, n_features=6, noise=5.0, random_state=0)  # 105 hold-out rows
    X = X / X.std(0)
    params = dict(SMALL, optimizer__weight_decay=1e-3, tighten_tolerance=0.0)
    monkeypatch.setattr(regularization, "choose_initialization", lambda rows: 1)  # the second, whatever it scores
    model = NeuralNetRegressor(**params, n_init=2).fit(X, y)
    assert model.initialization_ == 1 and len(model.initialization_scores_) == 2
    once = NeuralNetRegressor(**params, n_init=1).fit(X, y)
    assert once.initialization_ == 0 and not hasattr(once, "initialization_scores_")
    assert not np.array_equal(_first_layer(model), _first_layer(once))  # the kept network is the other one


def test_the_regressor_keeps_the_initialization_of_best_r2():
    rows = [HoldoutRows.of_regression(np.arange(6.0), np.arange(6.0) + noise) for noise in (0.5, 0.1, 0.3)]
    assert holdout.choose_initialization(rows) == 1


def test_a_hold_out_too_small_to_tell_keeps_the_first_initialization(diabetes):
    X_train, _, y_train, _ = diabetes  # 331 rows: 83 held out
    assert len(regularization.internal_split(y_train, False)[1]) < holdout.AUTO_INIT_MIN_HOLDOUT
    model = NeuralNetRegressor(**SMALL, n_init=3, optimizer__weight_decay=1e-3).fit(X_train, y_train)
    assert model.initialization_ == 0 and not hasattr(model, "initialization_scores_")


def test_without_a_random_state_the_plain_fit_still_trains_the_chosen_initialization(breast_cancer, monkeypatch):
    # One seed is drawn for the whole fit, so initialization 1 of the hold-out is the one the fit on
    # all the rows starts from (unseeded, it would start anywhere).
    X_train, _, y_train, _ = breast_cancer
    monkeypatch.setattr(regularization, "choose_initialization", lambda rows: 1)
    # The seeds each fit starts torch from (parallel_fits also seeds each candidate from torch's
    # own generator first, which a fit with a seed then replaces).
    seeds = []
    initialization_seed = regularization.initialization_seed
    monkeypatch.setattr(
        estimators, "initialization_seed", lambda *args: (seeds.append(initialization_seed(*args)), seeds[-1])[1]
    )
    params = dict(SMALL, random_state=None, tighten=False, optimizer__weight_decay="auto")
    model = NeuralNetClassifier(**params, n_init=2).fit(X_train, y_train)
    base = model._unseeded_fit_seed
    assert base is not None and model.initialization_ == 1
    assert seeds[-1] == regularization.initialization_seed(base, 1) and seeds.count(base) == len(seeds) - 2
    # With one initialization nothing is drawn: torch goes on from its own state, as before.
    seeds.clear()
    single = NeuralNetClassifier(**params, n_init=1).fit(X_train, y_train)
    assert seeds == [] and single._unseeded_fit_seed is None


def test_n_init_is_a_parameter_like_any_other():
    from sklearn.base import clone

    model = NeuralNetClassifier(n_init=3)
    assert model.get_params()["n_init"] == 3 and clone(model).n_init == 3
    assert NeuralNetClassifier().n_init == NeuralNetRegressor().n_init == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", None])
def test_a_bad_n_init_is_named_in_the_error(breast_cancer, bad):
    X_train, _, y_train, _ = breast_cancer
    with pytest.raises((ValueError, TypeError), match="n_init must be an integer >= 1"):
        NeuralNetClassifier(n_init=bad, max_epochs=1).fit(X_train, y_train)
