"""Automatic tightening: the cheapest circuit within tolerance, never beyond n_accum_bits."""

import numpy as np
import pytest
import torch

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor, holdout, search
from fhe_estimators.compilation import compiled_accumulator_bits

QUICK = dict(hidden_layer_sizes=(12,), max_epochs=20, random_state=0)


def worst_case_bits(model):
    """Signed bits of each layer's exact worst case, recomputed from brevitas' integer weights."""
    n_in, n_layers = model.n_input_bits_, len(model.module_.linears)
    ranges = [(-(2 ** (n_in - 1)), 2 ** (n_in - 1) - 1)] + [(0, 2**model.n_a_bits - 1)] * (n_layers - 1)
    bits = []
    for linear, (x_min, x_max) in zip(model.module_.linears, ranges):
        weights = linear.quant_weight().int().detach().numpy().astype(np.int64)
        high = np.maximum(weights * x_min, weights * x_max).sum(axis=1).max()
        low = np.minimum(weights * x_min, weights * x_max).sum(axis=1).min()
        bits.append(int(max(np.ceil(np.log2(high + 1)), np.ceil(np.log2(max(-low, 1))))) + 1)
    return bits


@pytest.fixture(scope="module")
def tightened(breast_cancer):
    X_train, _, y_train, _ = breast_cancer
    return NeuralNetClassifier(tighten=True, **QUICK).fit(X_train, y_train)


def test_search_never_exceeds_the_budget_and_the_exact_bound_holds(tightened):
    model = tightened
    assert model.accumulator_budget_ <= model.n_accum_bits
    assert all(candidate["accumulator_bits"] <= model.n_accum_bits for candidate in model.tightening_candidates_)
    assert max(worst_case_bits(model)) <= model.accumulator_budget_
    assert max(model.accumulator_bits_) <= model.accumulator_budget_


def test_the_chosen_candidate_is_the_cheapest_within_tolerance(tightened):
    candidates = tightened.tightening_candidates_
    assert len(candidates) >= 4
    [chosen] = [candidate for candidate in candidates if candidate["chosen"]]
    tolerance = tightened.tighten_tolerance
    feasible = [
        c
        for c in candidates
        if c["score_gap"] <= tolerance + c["score_gap_se"] + 1e-9
        and c["confidence_gap"] <= search.CONFIDENCE_TOLERANCE_FACTOR * tolerance + c["confidence_gap_se"] + 1e-9
    ]
    assert chosen in feasible

    # Cheapest: latency plus key generation shared by PREDICTIONS_PER_KEY_SET predictions.
    def objective(c):
        return c["predicted_latency_s"] + c["predicted_keygen_s"] / search.PREDICTIONS_PER_KEY_SET

    assert objective(chosen) == min(objective(c) for c in feasible)
    assert all(c["predicted_keygen_s"] > 0 and c["predicted_evaluation_key_mb"] > 0 for c in candidates)
    # The gaps are measured from the best hold-out score.
    best = max(c["holdout_score"] for c in candidates)
    for c in candidates:
        assert c["score_gap"] == pytest.approx(best - c["holdout_score"], abs=1e-9)
    # What was chosen is what the model is: its budget and its compile-time rounding.
    assert tightened.accumulator_budget_ == chosen["accumulator_bits"]
    assert tightened.rounding_threshold_bits_ == chosen["rounding_threshold_bits"]


def test_the_final_fine_tune_is_kept_only_if_it_keeps_the_price(tightened, breast_cancer, monkeypatch):
    X_train, _, y_train, _ = breast_cancer
    [chosen] = [c for c in tightened.tightening_candidates_ if c["chosen"]]
    assert all(c["fine_tuned_on_all_data"] is None for c in tightened.tightening_candidates_ if not c["chosen"])
    if chosen["fine_tuned_on_all_data"]:
        assert tightened.n_train_samples_ == len(X_train)
        assert search.objective_s(search.Candidate(**chosen)) * search.FINAL_COST_SLACK >= tightened.fhe_cost_.latency_s
    # No slack at all: any price is too dear, so the model scored on the hold-out is kept.
    monkeypatch.setattr(search, "FINAL_COST_SLACK", 0.0)
    model = NeuralNetClassifier(**QUICK).fit(X_train, y_train)
    [chosen] = [c for c in model.tightening_candidates_ if c["chosen"]]
    assert chosen["fine_tuned_on_all_data"] is False
    assert model.n_train_samples_ == len(X_train) - int(np.ceil(holdout.HOLDOUT_FRACTION * len(X_train)))  # as split
    assert model.accumulator_budget_ == chosen["accumulator_bits"]
    assert model.fhe_cost_.pbs_count == chosen["pbs_count"]  # exactly the circuit that was scored


@pytest.mark.parametrize("diverges", [False, True])
def test_a_final_fine_tune_that_scores_lower_on_its_own_data_is_not_kept(breast_cancer, monkeypatch, diverges):
    X_train, _, y_train, _ = breast_cancer
    scored_model = NeuralNetClassifier(tighten=False, **QUICK).fit(X_train, y_train)
    rows = holdout.holdout_rows(scored_model, X_train, y_train)
    price = search.estimate_cost(scored_model)
    candidate = search.Candidate(10, 0.0, None, rows.score.mean(), rows.confidence.mean(), price.latency_s, 1, price.keygen_s)

    def fine_tune(model, X, y, epochs):  # a "fine-tune" that keeps the network, or flips its output
        if diverges:
            with torch.no_grad():
                model.module_.linears[-1].weight.neg_()
                model.module_.linears[-1].bias.neg_()
        return True

    monkeypatch.setattr(search, "_fine_tune", fine_tune)
    winner = search.Scored(candidate, scored_model, rows)
    model = search._final_fit(winner, scored_model, X_train, y_train, np.arange(10), epochs=1)
    assert candidate.fine_tuned_on_all_data is (not diverges)
    assert (model is scored_model) is diverges


@pytest.mark.parametrize("trim", [True, False])
def test_a_final_fine_tune_that_widens_an_accumulator_is_trimmed_to_the_widths_as_scored(
    breast_cancer, monkeypatch, trim
):
    """The fine-tune moves integer weights, and a layer whose worst case crosses a power of two
    doubles its lookups' keys. Its smallest weights are dropped until every accumulator is as wide
    as the search priced it; without that the fine-tune is refused and its rows are lost."""
    X_train, _, y_train, _ = breast_cancer
    scored_model = NeuralNetClassifier(tighten=False, **{**QUICK, "n_accum_bits": 12}).fit(X_train, y_train)
    wide_weights = [layer.weight.detach().clone() for layer in scored_model.module_.linears]
    scored_model._set_accumulator_budget(8)  # the search's narrower candidate
    scored_model._finalize_pruning()
    scored_widths = search.estimate_cost(scored_model).accumulator_bits
    rows = holdout.holdout_rows(scored_model, X_train, y_train)
    candidate = search._price(scored_model, None, rows, 8, 0.0)

    def widening_fine_tune(model, X, y, epochs):  # back to the 12-bit network's weights and budget
        with torch.no_grad():
            for layer, weights in zip(model.module_.linears, wide_weights):
                layer.weight.copy_(weights)
        model._set_accumulator_budget(12)
        model._finalize_pruning()
        assert search.estimate_cost(model).accumulator_bits > scored_widths  # wider, dearer
        return True

    monkeypatch.setattr(search, "_fine_tune", widening_fine_tune)
    monkeypatch.setattr(search, "TRIM_TO_SCORED_WIDTHS", trim)
    model = search._final_fit(search.Scored(candidate, scored_model, rows), scored_model, X_train, y_train, np.arange(10), epochs=1)
    assert candidate.final_widths_trimmed is trim
    assert candidate.fine_tuned_on_all_data is trim
    assert (model is scored_model) is (not trim)
    widths = search.estimate_cost(model).accumulator_bits
    assert all(width <= scored for width, scored in zip(widths, scored_widths))
    assert max(model.accumulator_bits_) <= 8  # the exact check, at the scored widths
    if trim:  # the fine-tuned weights, minus the smallest: not the scored network
        assert not torch.equal(model.module_.linears[0].weight, scored_model.module_.linears[0].weight)


def final_fit_losing_rows(monkeypatch, estimator_class, data, held_out, lost, loss):
    """``search._final_fit`` of a plain fit whose stubbed fine-tune scores ``loss`` lower on the
    rows ``lost`` (and the same elsewhere): (the winner's candidate, the model kept, the winner)."""
    X_train, _, y_train, _ = data
    scored_model = estimator_class(tighten=False, **QUICK).fit(X_train, y_train)
    rows = holdout.holdout_rows(scored_model, X_train, y_train)
    candidate = search._price(scored_model, None, rows, 10, 0.0)

    def scores(model, X, y, rounding):
        per_row = np.ones(len(y))
        if model is not scored_model:
            per_row[lost] = 1.0 - loss
        return holdout.HoldoutRows(per_row, per_row)

    monkeypatch.setattr(search, "_fine_tune", lambda model, X, y, epochs: True)
    monkeypatch.setattr(search, "_holdout_rows", scores)
    winner = search.Scored(candidate, scored_model, rows)
    return candidate, search._final_fit(winner, scored_model, X_train, y_train, held_out, epochs=1), scored_model


@pytest.mark.parametrize("estimator_class", [NeuralNetRegressor, NeuralNetClassifier])
@pytest.mark.parametrize("lost_rows_are_held_out", [True, False])
def test_a_regressor_final_fine_tune_that_loses_on_the_hold_out_rows_is_not_kept(
    breast_cancer, diabetes, monkeypatch, estimator_class, lost_rows_are_held_out
):
    """A small loss stays far inside the training-score slack, but the hold-out rows are rows the
    winner never saw and the fine-tune has now trained on: a regressor losing any score there was
    harmed. A classifier's accuracy moves by whole rows, so it keeps the slack alone."""
    data = diabetes if estimator_class is NeuralNetRegressor else breast_cancer
    held_out = np.arange(100, 200)
    lost = held_out[:3] if lost_rows_are_held_out else np.arange(3)
    candidate, model, scored_model = final_fit_losing_rows(monkeypatch, estimator_class, data, held_out, lost, 0.5)
    refused = lost_rows_are_held_out and estimator_class is NeuralNetRegressor
    assert candidate.fine_tuned_on_all_data is (not refused)
    assert (model is scored_model) is refused


@pytest.mark.parametrize("estimator_class", [NeuralNetClassifier, NeuralNetRegressor])
def test_a_classifier_final_fine_tune_that_loses_training_rows_beyond_a_standard_error_is_not_kept(
    breast_cancer, diabetes, monkeypatch, estimator_class
):
    """3% of the training rows lost: inside the 0.05 slack, but several standard errors on a few
    hundred rows. A classifier refuses it; a regressor keeps the slack (and its hold-out guard)."""
    data = breast_cancer if estimator_class is NeuralNetClassifier else diabetes
    n_rows = len(data[2])
    held_out = np.arange(n_rows - 50, n_rows)
    lost = np.arange(int(0.03 * n_rows))  # none of them held out
    candidate, model, scored_model = final_fit_losing_rows(monkeypatch, estimator_class, data, held_out, lost, 1.0)
    refused = estimator_class is NeuralNetClassifier
    assert candidate.fine_tuned_on_all_data is (not refused)
    assert (model is scored_model) is refused


def test_the_final_fine_tune_of_a_rounded_winner_is_judged_as_the_circuit_computes(breast_cancer, monkeypatch):
    X_train, _, y_train, _ = breast_cancer
    scored_model = NeuralNetClassifier(tighten=False, **QUICK).fit(X_train, y_train)
    rounding = {"n_bits": 6, "method": "exact"}
    rows = holdout.holdout_rows(scored_model, X_train, y_train)
    # Priced as the search prices it (this machine's cost table): the stubbed fine-tune changes
    # nothing, so the price holds and the score is what decides. A fixed price of 1 s failed on
    # machines whose table priced this circuit above 1.1 x that.
    candidate = search._price(scored_model, rounding, rows, 10, 0.0)
    judged = []
    real_rows = search._holdout_rows

    def spy(model, X, y, rounding_bits):
        judged.append(rounding_bits)
        return real_rows(model, X, y, rounding_bits)

    monkeypatch.setattr(search, "_fine_tune", lambda model, X, y, epochs: True)
    monkeypatch.setattr(search, "_holdout_rows", spy)
    search._final_fit(search.Scored(candidate, scored_model, rows), scored_model, X_train, y_train, np.arange(10), epochs=1)
    assert judged == [rounding, rounding]  # both networks scored FHE-simulated with the rounding


def _scored(correct: list[int], confidence: list[float], latency: float):
    rows = holdout.HoldoutRows(np.asarray(correct, dtype=float), np.asarray(confidence, dtype=float))
    candidate = search.Candidate(10, 0.0, None, rows.score.mean(), rows.confidence.mean(), latency, 1, 1.0, 1.0)
    return search.Scored(candidate, None, rows)


def test_one_standard_error_rule_on_paired_hold_out_rows():
    # 28 rows, as iris' hold-out: one sample is 0.036 of accuracy, far above a 0.01 tolerance.
    best = _scored([1] * 28, [0.9] * 28, latency=2.0)
    one_worse = _scored([0] + [1] * 27, [0.5] + [0.9] * 27, latency=1.0)
    three_worse = _scored([0] * 3 + [1] * 25, [0.5] * 3 + [0.9] * 25, latency=0.5)
    feasible = search._feasible([best, one_worse, three_worse], 0.01, standard_errors=1.0)
    # One miss is within one standard error (0.036 ± 0.036); three misses (0.107 ± 0.060) are not.
    assert one_worse in feasible and three_worse not in feasible
    assert one_worse.candidate.score_gap == pytest.approx(1 / 28)
    assert one_worse.candidate.score_gap_se == pytest.approx(1 / 28)
    assert search._cheapest([best, one_worse, three_worse], 0.01, standard_errors=1.0) is one_worse
    # With no standard error allowed the rule is the plain tolerance: only the best is left.
    assert search._feasible([best, one_worse, three_worse], 0.01, standard_errors=0.0) == [best]
    # A candidate as accurate but much less confident fails on confidence.
    unsure = _scored([1] * 28, [0.6] * 28, latency=0.1)
    assert unsure not in search._feasible([best, unsure], 0.01, standard_errors=1.0)


def test_the_confidence_allowance_is_a_multiple_of_the_tolerance(monkeypatch):
    # Slightly flatter probabilities (a smaller network) on every row, with no spread: a gap of two
    # tolerances passes the default rule (3x) and fails at 1x; four tolerances fail both.
    best = _scored([1] * 28, [0.90] * 28, latency=2.0)
    flatter = _scored([1] * 28, [0.88] * 28, latency=1.0)
    flat = _scored([1] * 28, [0.86] * 28, latency=0.5)
    assert search.CONFIDENCE_TOLERANCE_FACTOR == 3.0
    assert search._feasible([best, flatter, flat], 0.01, standard_errors=1.0) == [best, flatter]
    assert flatter.candidate.confidence_gap == pytest.approx(0.02)
    # The allowance scales with the tolerance: none at tolerance 0.
    assert search._feasible([best, flatter, flat], 0.0, standard_errors=1.0) == [best]
    monkeypatch.setattr(search, "CONFIDENCE_TOLERANCE_FACTOR", 1.0)
    assert search._feasible([best, flatter, flat], 0.01, standard_errors=1.0) == [best]


def _at_width(bits: int, correct: list[int], latency: float):
    pair = _scored(correct, [0.9] * len(correct), latency)
    pair.candidate.accumulator_bits = bits
    return pair


def test_neuron_removal_and_rounding_start_from_more_than_one_candidate():
    # Widths 10..7 hold, 6 does not: neuron removal starts from the two narrowest that held (7, 8),
    # so one unlucky width cannot send the whole search down a single path.
    rows = [1] * 28
    scored = [_at_width(bits, rows, latency=bits / 10) for bits in (10, 9, 8, 7)]
    scored.append(_at_width(6, [0] * 10 + [1] * 18, latency=0.1))
    assert search.NEURON_REMOVAL_WIDTHS == 2 and search.ROUNDING_BASES == 2
    assert search._neuron_removal_widths(scored, 0.01, 1.0) == [7, 8]
    # Rounding is tried on the two cheapest feasible candidates (never on the infeasible 6-bit one).
    assert search._rounding_bases(scored, 0.01, 1.0) == [scored[3], scored[2]]


def test_the_chosen_circuit_is_cheaper_and_keeps_the_guarantee(tightened, breast_cancer):
    _, X_test, _, y_test = breast_cancer
    model = tightened.compile()
    assert model.compile_arguments_["rounding_threshold_bits"] == model.rounding_threshold_bits_
    compiled = compiled_accumulator_bits(model.quantized_module_)
    assert all(have >= need for have, need in zip(compiled, model.accumulator_bits_))
    assert model.score(X_test, y_test, fhe="simulate") > 0.9
    full = [c for c in model.tightening_candidates_ if c["accumulator_bits"] == model.n_accum_bits][0]
    chosen = [c for c in model.tightening_candidates_ if c["chosen"]][0]
    assert search.objective_s(search.Candidate(**chosen)) <= search.objective_s(search.Candidate(**full))
    # The cost model priced the circuit that was compiled: same PBS count. (The candidate's own
    # count was priced before the final fine-tune, which may move a rounded layer's width.)
    assert model.fhe_cost_.pbs_count == model.circuit_report_.pbs_count


def test_the_search_is_on_by_default(breast_cancer):
    X_train, _, y_train, _ = breast_cancer
    model = NeuralNetClassifier(**QUICK).fit(X_train, y_train)
    assert model.get_params()["tighten"] is True
    assert sum(candidate["chosen"] for candidate in model.tightening_candidates_) == 1
    assert model.p_error == 1e-6  # the default documented in docs/cost_model.md


def test_with_rounding_the_clear_mode_computes_what_the_circuit_does(breast_cancer):
    # Concrete's rounding changes the network's function: fhe="disable" must not skip it.
    X_train, X_test, y_train, _ = breast_cancer
    rounding = {"n_bits": 4, "method": "exact"}
    model = NeuralNetClassifier(tighten=False, rounding_threshold_bits=rounding, **QUICK).fit(X_train, y_train)
    clear = model.predict_proba(X_test, fhe="disable")
    assert model.compile_arguments_["rounding_threshold_bits"] == rounding  # compiled to answer
    np.testing.assert_allclose(clear, model.predict_proba(X_test, fhe="simulate"), atol=1e-6)
    model.module_.eval()
    torch_outputs = model.module_(torch.from_numpy(X_test.astype(np.float32))).detach().numpy()
    assert not np.allclose(clear, torch.softmax(torch.from_numpy(torch_outputs), dim=1).numpy(), atol=1e-3)


def test_search_off_is_the_plain_fit(breast_cancer):
    X_train, _, y_train, _ = breast_cancer
    model = NeuralNetClassifier(tighten=False, **QUICK).fit(X_train, y_train)
    assert model.accumulator_budget_ == model.n_accum_bits
    assert model.tightening_candidates_ == [] and model.rounding_threshold_bits_ is None
    # The plain fit trains on all the data at the user's budget: exactly what _fit_prepared does.
    plain = NeuralNetClassifier(tighten=False, **QUICK)
    plain._validate_hyperparameters()
    X = plain._validate_X(X_train, reset=True)
    plain._fit_prepared(X, plain._fit_targets(np.asarray(y_train), len(X)))
    for ours, theirs in zip(model.module_.linears, plain.module_.linears):
        np.testing.assert_array_equal(ours.weight.detach().numpy(), theirs.weight.detach().numpy())


def test_zero_tolerance_and_no_standard_error_keeps_the_best_score(breast_cancer, monkeypatch):
    X_train, _, y_train, _ = breast_cancer
    monkeypatch.setattr(search, "STANDARD_ERRORS", 0.0)
    model = NeuralNetClassifier(tighten=True, tighten_tolerance=0.0, **QUICK).fit(X_train, y_train)
    best = max(c["holdout_score"] for c in model.tightening_candidates_)
    [chosen] = [c for c in model.tightening_candidates_ if c["chosen"]]
    assert chosen["holdout_score"] == best


def test_regressor_search_and_small_data_skip(diabetes, iris):
    X_train, X_test, y_train, y_test = diabetes
    model = NeuralNetRegressor(tighten=True, optimizer__weight_decay=0.1, **QUICK).fit(X_train, y_train)
    assert model.accumulator_budget_ <= 10 and len(model.tightening_candidates_) >= 4
    assert model.score(X_test, y_test) > 0.2
    # A regressor's R² gets the plain tolerance, no standard-error allowance.
    [chosen] = [c for c in model.tightening_candidates_ if c["chosen"]]
    assert chosen["score_gap"] <= model.tighten_tolerance + 1e-9
    X_small, _, y_small, _ = iris
    small = NeuralNetClassifier(tighten=True, **QUICK).fit(X_small[:60], y_small[:60])
    assert small.tightening_candidates_ == [] and small.accumulator_budget_ == small.n_accum_bits


@pytest.mark.parametrize("bad", [-0.1, 1.0, "0.01", None])
def test_bad_tolerance_is_refused(iris, bad):
    X_train, _, y_train, _ = iris
    with pytest.raises(ValueError, match="tighten_tolerance"):
        NeuralNetClassifier(tighten_tolerance=bad, **QUICK).fit(X_train, y_train)


def test_a_refit_does_not_score_candidates_with_an_earlier_choice(breast_cancer):
    # The earlier fit's rounding must not leak into how the new fit's candidates are scored.
    from sklearn.base import clone

    X_train, _, y_train, _ = breast_cancer
    model = NeuralNetClassifier(**QUICK).fit(X_train, y_train)
    fresh = clone(model).fit(X_train, y_train)
    model.rounding_threshold_bits_ = {"n_bits": 2, "method": "exact"}  # as if a search had chosen it
    model.fit(X_train, y_train)
    assert model.tightening_candidates_ == fresh.tightening_candidates_
