"""The one internal split and the tie rule every choice made on it follows (fhe_estimators.holdout)."""

import numpy as np
import pytest

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor, estimators, holdout, regularization, search
from fhe_estimators.regularization import Regularization as R


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


def test_paired_gap_and_the_one_standard_error_rule():
    best = np.ones(28)
    one_miss, three_misses = np.r_[0.0, np.ones(27)], np.r_[np.zeros(3), np.ones(25)]
    assert holdout.paired_gap(best, one_miss) == pytest.approx((1 / 28, 1 / 28))
    # One miss in 28 rows is within one standard error; three are not; none without allowance.
    assert holdout.within(holdout.paired_gap(best, one_miss), 0.0, standard_errors=1.0)
    assert not holdout.within(holdout.paired_gap(best, three_misses), 0.0, standard_errors=1.0)
    assert not holdout.within(holdout.paired_gap(best, one_miss), 0.0, standard_errors=0.0)


@pytest.mark.parametrize("n_rows", [38, 100])
def test_a_finer_input_must_win_by_a_standard_error_on_a_small_hold_out(n_rows):
    """Any higher score on 100+ rows; on fewer (a regressor's) a win within one paired standard
    error is noise (diabetes' 83 rows: 0.04 of one)."""
    rule = np.full(n_rows, 0.9)
    slightly = rule + 0.002 + np.resize([0.05, -0.05], n_rows)  # higher on average, by under 1 SE
    clearly = rule + 0.05
    gap, standard_error = holdout.paired_gap(slightly, rule)
    assert 0 < gap < standard_error

    def rows(score):
        return holdout.HoldoutRows(score, score)

    assert holdout.prefers_finer_input(rows(clearly), rows(rule))
    assert holdout.prefers_finer_input(rows(slightly), rows(rule)) is (n_rows >= holdout.AUTO_SPARSE_MIN_HOLDOUT)
    assert not holdout.prefers_finer_input(rows(rule), rows(rule))  # a tie keeps the width rule's


def test_weight_decay_choice_breaks_accuracy_ties_by_likelihood_then_strength():
    def rows(correct, confidence):
        correct, probability = np.asarray(correct, dtype=float), np.full(len(correct), confidence)
        return holdout.HoldoutRows(correct, probability, np.log(probability))

    perfect = [1.0] * 28
    choices = {R(1e-4): rows(perfect, 0.90), R(1e-2): rows(perfect, 0.95), R(1e-1): rows(perfect, 0.60)}
    decay, scores = holdout.choose_regularization(choices)
    assert decay == R(1e-2) and scores == {R(1e-4): 1.0, R(1e-2): 1.0, R(1e-1): 1.0}
    choices[R(1e-1)] = rows(perfect, 0.95)  # a full tie goes to the stronger penalty
    assert holdout.choose_regularization(choices)[0] == R(1e-1)
    # A sparser first layer must beat every dense setting by more than a paired standard error: a
    # tie, even with a better likelihood, keeps the dense choice (digits lost 0.016 to one that
    # tied), and so does a win by one row (breast cancer lost 0.028 to one); a clear win takes it.
    tied = {**choices, R(1e-4, 0.25): rows(perfect, 0.99)}
    assert holdout.choose_regularization(tied)[0] == R(1e-1)
    one_miss, three_misses = [0.0] + [1.0] * 27, [0.0] * 3 + [1.0] * 25
    dense = {R(1e-4): rows(one_miss, 0.9), R(1e-1): rows(one_miss, 0.95)}
    assert holdout.choose_regularization({**dense, R(1e-4, 0.125): rows(perfect, 0.6)})[0] == R(1e-1)
    dense = {R(1e-4): rows(three_misses, 0.9), R(1e-1): rows(three_misses, 0.95)}
    assert holdout.choose_regularization({**dense, R(1e-4, 0.125): rows(perfect, 0.6)})[0] == R(1e-4, 0.125)
    # One row of 28 is within one standard error: a tie, which likelihood decides (the iris case:
    # a penalty that won by one row with flat probabilities must not be chosen).
    choices[R(1e-4)] = rows(perfect, 0.5)
    choices[R(1e-2)] = choices[R(1e-1)] = rows([0.0] + [1.0] * 27, 0.99)
    assert holdout.choose_regularization(choices)[0] == R(1e-1)
    # Three rows are not: accuracy comes first.
    choices[R(1e-2)] = choices[R(1e-1)] = rows([0.0] * 3 + [1.0] * 25, 0.99)
    assert holdout.choose_regularization(choices)[0] == R(1e-4)
    # A proper scoring rule: one row given almost no probability outweighs a little more
    # confidence on the others (the mean true-class probability would prefer the overconfident one).
    overconfident = holdout.HoldoutRows(np.ones(28), np.r_[np.full(27, 0.99), 1e-4], np.log(np.r_[np.full(27, 0.99), 1e-4]))
    assert overconfident.confidence.mean() > 0.9
    assert holdout.choose_regularization({R(1e-4): overconfident, R(1e-2): rows(perfect, 0.9)})[0] == R(1e-2)


def test_weight_decay_choice_for_a_regressor_is_the_best_r2():
    def rows(values):
        values = np.asarray(values, dtype=float)
        return holdout.HoldoutRows(values, values, values)

    choices = {R(1e-4): rows([0.5, 0.6, 0.7]), R(1e-1): rows([0.5, 0.6, 0.6]), R(3e-1): rows([0.5, 0.6, 0.7])}
    assert holdout.choose_regularization(choices)[0] == R(3e-1)  # the best, ties to the stronger


def test_the_search_picks_the_weight_decay_on_its_own_split(diabetes, monkeypatch):
    # One split, one mechanism: with the search on, "auto" is chosen among the search's own base
    # fits (no second split, no nested search, no refit).
    calls = {"select": 0, "tighten": 0}
    select, tighten = regularization.resolve_regularization, search.tighten

    def counting_select(*args):
        calls["select"] += 1
        return select(*args)

    def counting_tighten(*args, **kwargs):
        calls["tighten"] += 1
        return tighten(*args, **kwargs)

    monkeypatch.setattr(estimators, "resolve_regularization", counting_select)
    monkeypatch.setattr(search, "tighten", counting_tighten)
    X_train, X_test, y_train, y_test = diabetes
    model = NeuralNetRegressor(hidden_layer_sizes=(8,), max_epochs=10, random_state=0).fit(X_train, y_train)
    assert calls == {"select": 0, "tighten": 1}
    # The penalties, dense (83 hold-out rows are too few to try sparse first layers), weakest first
    # until past the best: a prefix of the list, all of it unless the last one tried fell.
    settings = set(_penalties_tried(model.regularization_scores_))
    assert settings and all(density == 1.0 for _, density in settings)
    assert len(settings) == len(holdout.AUTO_WEIGHT_DECAYS)  # a regressor's penalties never stop
    assert (model.weight_decay_, model.first_layer_density_) in settings
    assert model.optimizer_.param_groups[0]["weight_decay"] == model.weight_decay_
    assert "optimizer__weight_decay" not in model.get_params()  # the default "auto", untouched
    # Without the search, "auto" fits one plain model per penalty on the same kind of split.
    plain = NeuralNetRegressor(hidden_layer_sizes=(8,), max_epochs=10, random_state=0, tighten=False)
    plain.fit(X_train, y_train)
    assert calls == {"select": 1, "tighten": 1}
    assert set(plain.regularization_scores_) == settings  # the same fits on the same split


def test_a_fixed_weight_decay_is_not_searched_and_auto_is_the_default(breast_cancer):
    from fhe_estimators.estimators import _FHEMixin

    assert _FHEMixin._default_weight_decay == "auto"  # both estimators (conftest fixes it for speed)
    X_train, _, y_train, _ = breast_cancer
    model = NeuralNetClassifier(
        hidden_layer_sizes=(8,), max_epochs=10, random_state=0, optimizer__weight_decay=1e-3, first_layer_density="auto"
    )
    model.fit(X_train, y_train)
    assert model.weight_decay_ == 1e-3 and not hasattr(model, "regularization_scores_")
    assert model.first_layer_density_ == 1.0  # "auto" density is chosen with an "auto" penalty only


def test_the_classifier_chooses_its_weight_decay_in_the_search(breast_cancer, monkeypatch):
    X_train, _, y_train, _ = breast_cancer
    seen = []

    def recording_choice(rows):
        seen.append(rows)
        return holdout.choose_regularization(rows)

    monkeypatch.setattr(regularization, "choose_regularization", recording_choice)
    params = dict(hidden_layer_sizes=(8,), max_epochs=10, random_state=0, optimizer__weight_decay="auto")
    model = NeuralNetClassifier(**params, first_layer_density="auto").fit(X_train, y_train)
    scores = model.regularization_scores_
    n_holdout = len(next(iter(seen[0].values())).score)
    dense_choice = holdout.choose_penalty({s: r for s, r in seen[0].items() if s.first_layer_density == 1.0})
    penalties = _penalties_tried(scores)  # weakest first, until past the best
    tried = penalties + regularization.sparse_candidates(model, X_train.shape[1], n_holdout, dense_choice.weight_decay)
    assert set(scores) == set(tried)
    assert len(seen) == 1 and any(density < 1 for _, density in scores)  # 107 rows: sparse layers tried
    rows = seen[0]  # each penalty's hold-out rows, of its own network
    assert all(r.log_likelihood is not None and np.all(r.log_likelihood <= 0) for r in rows.values())
    best = R(*max(scores, key=scores.get))
    chosen = R(model.weight_decay_, model.first_layer_density_)
    if not holdout.within(holdout.paired_gap(rows[best].score, rows[chosen].score), 0.0, 1.0):
        # Only a sparse first layer may score clearly above the choice, and only one that did not
        # beat every dense setting by a standard error (the bet on irrelevant inputs needs that).
        dense = [r for s, r in rows.items() if s.first_layer_density == 1.0]
        assert best.first_layer_density < 1.0
        assert not all(holdout._beats(rows[best].score, r.score, holdout.SPARSE_STANDARD_ERRORS) for r in dense)
    assert chosen == holdout.choose_regularization(rows)[0]
    assert model.optimizer_.param_groups[0]["weight_decay"] == model.weight_decay_


def test_a_strong_penalty_on_a_tiny_network_does_not_crash(iris):
    """Weight decay "auto" tries 0.3: on a tiny network it can decay a whole layer to zero. The forward
    pass's accumulator rounding (0 / 0 scales) and the cost model must survive a dead layer."""
    import torch

    from fhe_estimators.circuit_plan import _pot_lsbs
    from fhe_estimators.module import QuantMLP

    torch.manual_seed(0)
    module = QuantMLP(4, 3, (2,), n_w_bits=3, n_a_bits=3)
    with torch.no_grad():
        module.linears[0].weight.zero_()
        module.linears[0].bias.zero_()
    outputs = module(torch.randn(8, 4))
    assert torch.isfinite(outputs).all()
    assert _pot_lsbs(module, 0) == 0
    X_train, _, y_train, _ = iris
    model = NeuralNetClassifier(hidden_layer_sizes=(2,), max_epochs=30, random_state=0, tighten=False)
    model.set_params(optimizer__weight_decay=0.3, n_accum_bits=8).fit(X_train, y_train)
    assert np.isfinite(model.fhe_cost_.latency_s)


def _penalties_tried(scores: dict) -> list:
    """The dense settings of ``regularization_scores_``, checked to be the penalties weakest first up
    to where the hold-out stopped them: all of them, or a prefix whose last one scored lower."""
    dense = sorted(key for key in scores if key[1] == 1.0)
    decays = [decay for decay, _ in dense]
    assert decays == list(holdout.AUTO_WEIGHT_DECAYS[: len(decays)])
    if len(decays) < len(holdout.AUTO_WEIGHT_DECAYS):
        assert scores[dense[-1]] < scores[dense[-2]]
    return dense


def _rows(values):
    values = np.asarray(values, dtype=float)
    return holdout.HoldoutRows(values, values, values)


def test_the_penalties_stop_once_one_falls_out_of_the_tie_band():
    high, one_row_less, collapsed = np.ones(40), np.r_[0.0, np.ones(39)], np.r_[np.zeros(20), np.ones(20)]
    assert not holdout.past_the_best_penalty([_rows(high)])  # nothing to compare yet
    assert not holdout.past_the_best_penalty([_rows(one_row_less), _rows(high)])  # rising
    assert not holdout.past_the_best_penalty([_rows(high), _rows(one_row_less)])  # a fall within the band
    assert holdout.past_the_best_penalty([_rows(high), _rows(collapsed)])  # a fall out of it
    # Out of the band of the best so far, not only of the one before: a slow slide stops too.
    two_rows_less = np.r_[0.0, 0.0, np.ones(38)]
    assert holdout.within(holdout.paired_gap(one_row_less, two_rows_less), 0.0, holdout.REGULARIZATION_STANDARD_ERRORS)
    assert holdout.past_the_best_penalty([_rows(high), _rows(one_row_less), _rows(two_rows_less)])
    # A penalty scoring higher than the one before never stops the path, even below the best.
    assert not holdout.past_the_best_penalty([_rows(high), _rows(collapsed), _rows(one_row_less)])


def test_fit_best_on_holdout_trains_the_penalties_until_past_the_best(breast_cancer, monkeypatch):
    """Only the penalties up to where the rule stops are trained and scored, weakest first, and the
    choice is made among those; the sparse first layers follow as before."""
    seen = []

    def stop_at_the_second(rows):
        seen.append(len(rows))
        return len(rows) == 2

    monkeypatch.setattr(regularization, "past_the_best_penalty", stop_at_the_second)
    X_train, _, y_train, _ = breast_cancer
    model = NeuralNetClassifier(hidden_layer_sizes=(8,), max_epochs=5, random_state=0, tighten=False, optimizer__weight_decay="auto")
    model.fit(X_train, y_train)
    assert seen == [1, 2]
    dense = sorted(key for key in model.regularization_scores_ if key[1] == 1.0)
    assert [decay for decay, _ in dense] == list(holdout.AUTO_WEIGHT_DECAYS[:2])
    assert model.weight_decay_ in holdout.AUTO_WEIGHT_DECAYS[:2]


def test_a_regressors_penalties_never_stop(diabetes, monkeypatch):
    """holdout.PENALTY_STOP: a regressor's hold-out path can fall and rise again (diabetes, seed 2),
    so every penalty is trained even when the rule would stop at the second."""
    monkeypatch.setattr(regularization, "past_the_best_penalty", lambda rows: True)
    X_train, _, y_train, _ = diabetes
    model = NeuralNetRegressor(hidden_layer_sizes=(8,), max_epochs=4, random_state=0, tighten=False).fit(X_train, y_train)
    dense = sorted(decay for decay, density in model.regularization_scores_ if density == 1.0)
    assert dense == sorted(holdout.AUTO_WEIGHT_DECAYS)
