"""A sparse first layer as a regularizer: its cap, how "auto" chooses it (fhe_estimators.regularization)."""

import numpy as np
import pytest

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor, budget, holdout, regularization
from fhe_estimators.budget_policies import ExactBudget, make_budget_policy
from fhe_estimators.holdout import AUTO_WEIGHT_DECAYS
from fhe_estimators.regularization import Regularization as R


def test_the_first_layer_cap_is_a_rounded_up_fraction_of_the_inputs():
    assert [budget.first_layer_cap(10, d) for d in (1.0, 0.25, 0.125, 0.01)] == [10, 3, 2, 1]
    assert budget.first_layer_cap(8, 0.25) == 2  # exact products are not rounded up


@pytest.mark.parametrize(
    "n_inputs, densities",
    [(10, [0.25, 0.125]), (4, [0.25]), (1, [])],
)
def test_auto_tries_every_penalty_dense_then_distinct_sparse_first_layers(n_inputs, densities):
    # 4 inputs: a quarter and an eighth both keep one, tried once; 1 input: nothing sparser exists.
    model = NeuralNetClassifier(first_layer_density="auto")
    assert regularization.candidate_regularizations(model) == [R(decay, 1.0) for decay in AUTO_WEIGHT_DECAYS]
    # Sparse layers at the weakest penalty and at the dense settings' choice (once when they agree).
    both = [R(decay, d) for d in densities for decay in (1e-4, 1e-1)]
    assert regularization.sparse_candidates(model, n_inputs, 100, penalty=1e-1) == both
    assert regularization.sparse_candidates(model, n_inputs, 100, penalty=1e-4) == [R(1e-4, d) for d in densities]
    assert regularization.sparse_candidates(model, n_inputs, 99, penalty=1e-1) == []  # too few rows to tell
    model.set_params(first_layer_density=0.5)  # a given density: only the penalty is chosen
    assert regularization.candidate_regularizations(model) == [R(d, 0.5) for d in AUTO_WEIGHT_DECAYS]
    assert regularization.sparse_candidates(model, n_inputs, 100, penalty=1e-1) == []


def test_the_default_first_layer_density_is_chosen_on_the_hold_out():
    # With a given penalty it stays dense (tests/test_holdout.py): nothing compares densities then.
    assert NeuralNetClassifier().first_layer_density == NeuralNetRegressor().first_layer_density == "auto"


def test_the_density_caps_the_first_layer_only_and_is_part_of_the_policy():
    assert make_budget_policy("exact", 2, 0.25) == ExactBudget(2, 0.25) != ExactBudget(2)
    assert "first_layer_density=0.25" in repr(ExactBudget(2, 0.25))


def test_a_given_density_prunes_every_first_layer_neuron_to_it(diabetes):
    X_train, _, y_train, _ = diabetes  # 10 features
    params = dict(hidden_layer_sizes=(16,), max_epochs=10, random_state=0, tighten=False)
    model = NeuralNetRegressor(**params, first_layer_density=0.2).fit(X_train, y_train)
    first, hidden = (layer.weight.detach().numpy() for layer in model.module_.linears)
    assert model.first_layer_density_ == 0.2
    assert np.count_nonzero(first, axis=1).max() <= 2 and model.pruning_report_[0]["k"] == 2
    assert np.count_nonzero(hidden, axis=1).max() > 2  # the output layer is not capped by it
    dense = NeuralNetRegressor(**params, first_layer_density=1.0).fit(X_train, y_train)
    assert np.count_nonzero(dense.module_.linears[0].weight.detach().numpy(), axis=1).max() > 2


@pytest.mark.parametrize("bad", [0, 1.5, -0.1, "dense", None])
def test_a_bad_density_is_named_in_the_error(breast_cancer, bad):
    X_train, _, y_train, _ = breast_cancer
    with pytest.raises((ValueError, TypeError), match="first_layer_density must be a fraction in"):
        NeuralNetClassifier(first_layer_density=bad, max_epochs=1).fit(X_train, y_train)


def test_a_sparse_first_layer_earns_the_free_input_bit():
    # 40 features at (3,3,10): 40 · 4 · 8 overflows a dense first layer at 4 input bits, so inputs
    # get 3; a neuron that keeps a quarter of them (10 · 4 · 8 = 320 <= 511) gets the fourth for free.
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(60, 40)).astype(np.float32), rng.normal(size=60)
    params = dict(hidden_layer_sizes=(4,), max_epochs=1, tighten=False, optimizer__weight_decay=1e-4)
    assert NeuralNetRegressor(**params, first_layer_density=1.0).fit(X, y).n_input_bits_ == 3
    sparse = NeuralNetRegressor(**params, first_layer_density=0.25).fit(X, y)
    assert sparse.n_input_bits_ == 4 and max(sparse.accumulator_bits_) <= 10


# ---------------------------------------------------------------- a finer input chosen on the hold-out
@pytest.mark.parametrize("prefers", [True, False])
def test_the_hold_out_may_choose_the_widest_free_input(breast_cancer, monkeypatch, prefers):
    # 30 features: the width rule gives 3-bit inputs; the 5-bit challenger is kept only when the
    # hold-out prefers it (forced both ways here), and a plain fit then trains with that width.
    X_train, X_test, y_train, _ = breast_cancer
    monkeypatch.setattr(regularization, "prefers_finer_input", lambda finer, rule: prefers)
    params = dict(hidden_layer_sizes=(6,), max_epochs=6, random_state=0, tighten=False, first_layer_density=1.0)
    model = NeuralNetClassifier(**params, optimizer__weight_decay="auto").fit(X_train, y_train)
    rule = budget.default_input_bits(30, 3, 3, 10)
    assert set(model.input_bits_scores_) == {rule, budget.MAX_FREE_INPUT_BITS}
    expected = budget.MAX_FREE_INPUT_BITS if prefers else rule
    assert model.n_input_bits_ == model.module_.n_input_bits == expected
    assert max(model.accumulator_bits_) <= model.n_accum_bits  # the finer input is pruned for
    model.compile(X_train)
    np.testing.assert_array_equal(model.predict(X_test, fhe="simulate"), model.predict(X_test))


def test_a_given_input_width_or_a_small_hold_out_compares_none(breast_cancer, iris):
    params = dict(hidden_layer_sizes=(6,), max_epochs=4, random_state=0, tighten=False, optimizer__weight_decay="auto")
    X_train, _, y_train, _ = breast_cancer
    given = NeuralNetClassifier(**params, n_input_bits=4).fit(X_train, y_train)
    assert given.n_input_bits_ == 4 and not hasattr(given, "input_bits_scores_")
    X_train, _, y_train, _ = iris  # 28 hold-out rows: too few to tell widths apart
    small = NeuralNetClassifier(**params).fit(X_train, y_train)
    assert not hasattr(small, "input_bits_scores_")


def test_a_regressor_compares_the_finer_input_on_a_few_dozen_hold_out_rows():
    # R² is continuous: 38 hold-out rows (150 training rows) tell a coarse input's loss, where a
    # classifier's accuracy would move by whole rows (it waits for 100).
    from sklearn.datasets import make_classification, make_regression

    params = dict(hidden_layer_sizes=(6,), max_epochs=4, random_state=0, tighten=False, optimizer__weight_decay="auto")
    X, y = make_regression(n_samples=150, n_features=30, n_informative=5, noise=10, random_state=0)
    regressor = NeuralNetRegressor(**params).fit(X.astype(np.float32), y)
    assert set(regressor.input_bits_scores_) == {budget.default_input_bits(30, 3, 3, 10), budget.MAX_FREE_INPUT_BITS}
    X, y = make_classification(n_samples=150, n_features=30, random_state=0)
    classifier = NeuralNetClassifier(**params).fit(X.astype(np.float32), y)
    assert not hasattr(classifier, "input_bits_scores_")
    assert holdout.FINER_INPUT_MIN_HOLDOUT["regressor"] <= 38 < holdout.FINER_INPUT_MIN_HOLDOUT["classifier"]


def test_no_finer_input_where_the_budget_cannot_hold_it(breast_cancer):
    # At n_accum_bits=7 a 5-bit input times a 3-bit weight (31 · 7 = 217 > 127) leaves Ω = 0:
    # the challenger is not even tried (a grid search over n_accum_bits reaches such widths).
    assert budget.terms_that_fit(7, 3, budget.MAX_FREE_INPUT_BITS) == 0
    X_train, _, y_train, _ = breast_cancer
    params = dict(hidden_layer_sizes=(6,), max_epochs=4, random_state=0, tighten=False, optimizer__weight_decay="auto")
    model = NeuralNetClassifier(**params, n_accum_bits=7).fit(X_train, y_train)
    assert model.n_input_bits_ == 3 and not hasattr(model, "input_bits_scores_")
    assert max(model.accumulator_bits_) <= 7


# ---------------------------------------------------------------- a wider network chosen on the hold-out
SMALL_WIDTHS = ((4,), (8,))  # stand-ins for holdout.AUTO_HIDDEN_LAYER_SIZES, to keep the fits small


@pytest.mark.parametrize("prefers", [True, False])
def test_auto_width_keeps_the_wider_network_only_when_the_hold_out_prefers_it(breast_cancer, monkeypatch, prefers):
    # 107 hold-out rows: the wider network is trained at the chosen setting and kept only when the
    # hold-out prefers it (forced both ways here); a plain fit then trains that width on all the rows.
    X_train, X_test, y_train, _ = breast_cancer
    monkeypatch.setattr(regularization, "AUTO_HIDDEN_LAYER_SIZES", SMALL_WIDTHS)
    monkeypatch.setattr(regularization, "prefers_wider", lambda wider, default: prefers)
    params = dict(max_epochs=4, random_state=0, tighten=False, first_layer_density=1.0, n_input_bits=3)
    model = NeuralNetClassifier(**params, optimizer__weight_decay="auto").fit(X_train, y_train)
    expected = SMALL_WIDTHS[1] if prefers else SMALL_WIDTHS[0]
    assert model.get_params()["hidden_layer_sizes"] == "auto"  # the parameter is left as given
    assert model.hidden_layer_sizes_ == expected
    assert model.module_.linears[0].out_features == expected[0]
    assert set(model.hidden_layer_sizes_scores_) == set(SMALL_WIDTHS)
    assert max(model.accumulator_bits_) <= model.n_accum_bits  # the wider network is pruned for
    assert model.predict(X_test).shape == (len(X_test),)
    if not prefers:  # a refit at a given width forgets the widths compared before
        model.set_params(hidden_layer_sizes=(6,)).fit(X_train, y_train)
        assert model.hidden_layer_sizes_ == (6,) and not hasattr(model, "hidden_layer_sizes_scores_")


def test_the_search_derives_its_circuits_from_the_wider_network(breast_cancer, monkeypatch):
    X_train, _, y_train, _ = breast_cancer
    monkeypatch.setattr(regularization, "AUTO_HIDDEN_LAYER_SIZES", SMALL_WIDTHS)
    monkeypatch.setattr(regularization, "prefers_wider", lambda wider, default: True)
    params = dict(max_epochs=4, random_state=0, first_layer_density=1.0, n_input_bits=3)
    model = NeuralNetClassifier(**params, optimizer__weight_decay="auto").fit(X_train, y_train)
    assert model.tightening_candidates_  # the search ran ...
    assert model.hidden_layer_sizes_ == SMALL_WIDTHS[1] and set(model.hidden_layer_sizes_scores_) == set(SMALL_WIDTHS)


def test_given_widths_a_given_penalty_or_a_small_hold_out_compare_no_width(breast_cancer, iris):
    params = dict(max_epochs=2, random_state=0, tighten=False, first_layer_density=1.0, n_input_bits=3)
    X_train, _, y_train, _ = breast_cancer
    given = NeuralNetClassifier(**params, hidden_layer_sizes=[6], optimizer__weight_decay="auto").fit(X_train, y_train)
    assert given.hidden_layer_sizes_ == (6,) and not hasattr(given, "hidden_layer_sizes_scores_")
    # No hold-out without "auto": the default width, as a fit always trained.
    fixed = NeuralNetClassifier(**params, optimizer__weight_decay=1e-4).fit(X_train, y_train)
    assert fixed.hidden_layer_sizes_ == holdout.AUTO_HIDDEN_LAYER_SIZES[0]
    assert not hasattr(fixed, "hidden_layer_sizes_scores_")
    X_train, _, y_train, _ = iris  # 28 hold-out rows: too few to tell widths apart
    small = NeuralNetClassifier(**params, optimizer__weight_decay="auto").fit(X_train, y_train)
    assert small.hidden_layer_sizes_ == (32,) and not hasattr(small, "hidden_layer_sizes_scores_")


def test_the_wider_network_must_win_by_more_than_its_standard_errors():
    rng = np.random.RandomState(0)
    default = rng.binomial(1, 0.8, size=400).astype(float)
    one_row_better = default.copy()
    one_row_better[np.flatnonzero(default == 0)[0]] = 1.0  # a win by one row of 400: noise
    assert not holdout.prefers_wider(holdout.HoldoutRows(one_row_better, one_row_better), holdout.HoldoutRows(default, default))
    much_better = np.where(rng.uniform(size=400) < 0.5, 1.0, default)  # half the mistakes fixed
    assert holdout.prefers_wider(holdout.HoldoutRows(much_better, much_better), holdout.HoldoutRows(default, default))
    assert not holdout.prefers_wider(holdout.HoldoutRows(default, default), holdout.HoldoutRows(default, default))
