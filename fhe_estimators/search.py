"""Automatic tightening within the budget: the cheapest circuit that keeps the accuracy.

``n_accum_bits`` is a ceiling. After training at that budget on most of the
training data, :func:`tighten` tries cheaper circuits, each derived from the
trained network by a short fine-tune rather than a full retrain:

1. narrower accumulators (``n_accum_bits - 1``, ``- 2``, ...): each neuron
   keeps its largest weights whose exact worst case fits the narrower budget;
2. fewer hidden neurons (the lowest-norm ones removed), at the two narrowest widths
   that held (:data:`NEURON_REMOVAL_WIDTHS`);
3. Concrete's exact ``rounding_threshold_bits`` on the two cheapest so far
   (:data:`ROUNDING_BASES`), scored in FHE simulation since the clear network does
   not round (approximate rounding is left out: see :data:`ROUNDINGS`).

Every candidate is scored on the internal hold-out of the *training* data
(:mod:`.holdout`: one split, shared with the weight decay "auto" picks, which the
base fit makes on it too) and priced by the cost model (:mod:`fhe_estimators.cost`);
the cheapest whose score ties the best within ``tolerance`` wins, the way ``RidgeCV``
picks its alpha. For a classifier a tie also allows for the hold-out's noise: one
paired standard error (:func:`holdout.within`). A classifier's candidates must also keep
the mean probability of the true class (a smoother measure of the same thing)
within :data:`CONFIDENCE_TOLERANCE_FACTOR` times the tolerance (plus one standard
error), against the most confident of those that passed on accuracy.
A regressor's R² is continuous: plain tolerance (see :data:`STANDARD_ERRORS`). The
winner is fine-tuned on all the training data and checked exactly again, so
the accumulator guarantee holds at its (narrower) budget (unless that fine-tune
would make its circuit dearer: then the scored model is kept).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
import torch
from .cost import estimate_cost
from .holdout import AUTO_MIN_SAMPLES, HoldoutRows, holdout_rows, internal_split, paired_gap, within
from .parallel_fits import fit_all
from .pruning import lowest_norm_rows
from .regularization import best_initialization, fit_best_on_holdout, fit_on_rows, is_auto, weight_decay_parameter

#: Below this many training samples a hold-out score says nothing: no search.
MIN_SAMPLES = 100
#: Narrower accumulators tried below the user's budget.
MAX_BITS_BELOW = 4
#: Fractions of every hidden layer's neurons removed, tried at the narrowest feasible widths.
NEURON_FRACTIONS = (0.5, 0.75)
#: How many of the narrowest feasible accumulator widths the neuron removal starts from, and on
#: how many of the cheapest feasible candidates Concrete's rounding is tried. With one each the
#: search followed a single greedy path, which a looser confidence rule sent astray: breast cancer
#: went to a 7-bit width whose neuron removal was dearer than the rounded 8-bit circuit it no
#: longer tried (0.958 test accuracy instead of 0.972). Two each: a few more fine-tunes per fit.
NEURON_REMOVAL_WIDTHS = 2
ROUNDING_BASES = 2
#: Concrete rounding tried on the cheapest candidates (FHE-simulated: needs a compile each), each
#: only if the cost model prices it cheaper there (it must remove bits and shrink a lookup).
#: 7 bits first: this machine's 8-bit lookups take 32768-coefficient keys and its 7-bit ones
#: 8192, so a wide network gains most from one bit (digits at (4,4,12) lost 0.02-0.03 hold-out
#: accuracy rounded straight to 6 or 5 bits).
#: Exact only: with approximate rounding the encrypted outputs differed from the simulated
#: ones in 4 of 5 compiles of the breast-cancer model (off-by-one lookups that simulation
#: does not reproduce), and ``predict(fhe="simulate")`` must tell the truth about
#: ``"execute"``. Users may still ask for approximate rounding in ``rounding_threshold_bits``.
ROUNDINGS = tuple({"n_bits": n_bits, "method": "exact"} for n_bits in (7, 6, 5))
#: Optimizer steps each candidate's fine-tune takes at least: on small data sets an epoch is
#: one or two batches, and a tenth of training would not let a network that lost half its
#: neurons recover (iris: hold-out accuracy 0.68 after 20 steps).
MIN_FINE_TUNE_STEPS = 100
#: Predictions one key set serves, to weigh key generation against latency when ranking
#: candidates: a circuit with 16,384-coefficient keys (15 s of key generation, 260 MB)
#: must not win over one a third slower per prediction whose keys take 3 s.
PREDICTIONS_PER_KEY_SET = 10
#: How much dearer (by :func:`objective_s`) than as scored the winner may come out of its final
#: fine-tune on all the training data; beyond it the scored model is kept.
FINAL_COST_SLACK = 1.1
#: When the final fine-tune comes out dearer than that, drop its smallest weights until each
#: accumulator is no wider than as scored, then price it again: a fine-tune that moves one layer's
#: worst case across a power of two doubles its lookups' keys (3-class: 8 -> 9 bits, 2.1x the
#: price), and keeping the scored model instead throws away the quarter of the rows it never saw.
TRIM_TO_SCORED_WIDTHS = True
#: How much lower the winner may score on the training data after its final fine-tune than before
#: it (those rows are what it was fine-tuned on): a penalty may cost some training fit (diabetes:
#: R² 0.567 -> 0.551 with weight decay 0.1, and a better test score), a diverged fine-tune costs
#: far more (iris: accuracy 0.973 -> 0.679, test 0.974 -> 0.842). Beyond it the scored model is kept.
FINAL_SCORE_SLACK = 0.05
#: Per estimator type: paired standard errors by which the final fine-tune may score lower than the
#: winner on the training rows it was just trained on (None: the slack alone). Accuracy on a
#: thousand rows resolves a loss the 0.05 slack lets through (hastie: 0.883 -> 0.853 on them, 2.8
#: standard errors, as the fine-tune's scales made Concrete's rounding drop one more bit; 0.852 ->
#: 0.776 on the test split). Two, not one: a fine-tune that flips a few rows of hundreds and no
#: others is within the noise of training (3 rows of 426 at half a row each: 1.7).
FINAL_TRAINING_STANDARD_ERRORS = {"classifier": 2.0, "regressor": None}
#: Per estimator type: must the final fine-tune score no lower than the winner on the hold-out rows?
#: It has trained on them and the winner has not, so a regressor that still loses R² there was
#: harmed by it (Friedman #2: 0.969 -> 0.944 on them, 0.977 -> 0.944 on the test split; the guard
#: changed 2 of 20 regression fits, both for the better). Accuracy moves by whole rows: a fine-tune
#: may flip one hold-out row and still gain on the test split (circles: 0.970 -> 0.990), so
#: classifiers keep the slack alone. benchmarks/final_fit_study.py, docs/pruning.md.
FINAL_HOLDOUT_GUARD = {"regressor": True, "classifier": False}
#: Standard errors of the paired hold-out difference a classifier's candidate may lose on top of
#: the tolerance (the one-standard-error rule; 0 gives the plain tolerance). Regressors get the
#: plain tolerance: R² is continuous and resolves 0.01 by itself, and one standard error of
#: squared errors is wide (0.04-0.06 on diabetes' 83 rows): on a synthetic regression the rule
#: picked a circuit 7x cheaper at 0.064 less test R².
STANDARD_ERRORS = 1.0
#: The confidence (mean true-class probability) may fall this many times ``tighten_tolerance``
#: (plus the same standard errors) below the most confident feasible candidate. It guards against
#: candidates that keep the hold-out accuracy by luck with flat probabilities (circles lost 0.07 test
#: accuracy without it). At 1x it also rejected smaller networks whose probabilities were only
#: slightly flatter (iris: 0.964 -> 0.936 with 8 neurons instead of 16, same test accuracy, half
#: the cost). benchmarks/search_rule_study.py, applied offline to the candidates of 28 fits: 2x-4x
#: choose circuits 13-19% cheaper at the same mean test accuracy (-0.001). With one greedy path
#: 3x lost breast cancer 0.972 -> 0.958, hence :data:`NEURON_REMOVAL_WIDTHS` and
#: :data:`ROUNDING_BASES` (docs/user_guide.md, "How the search decides").
CONFIDENCE_TOLERANCE_FACTOR = 3.0


def fine_tune_epochs(max_epochs: int, n_samples: int, batch_size: int) -> int:
    """Epochs of each candidate's fine-tune: a tenth of training (at least 5 epochs and
    :data:`MIN_FINE_TUNE_STEPS` steps), never more than ``max_epochs``."""
    batches_per_epoch = max(1, -(-int(n_samples) // max(1, int(batch_size))))
    by_steps = -(-MIN_FINE_TUNE_STEPS // batches_per_epoch)
    return min(int(max_epochs), max(5, int(max_epochs) // 10, by_steps))


@dataclass
class Candidate:
    """One circuit the search tried: its settings, hold-out score and predicted cost.

    Priced as scored; the winner's final fine-tune on all the data may move a layer's
    width (within :data:`FINAL_COST_SLACK`), so the fitted model's own price is ``fhe_cost_``.
    """

    accumulator_bits: int
    neuron_fraction: float
    rounding_threshold_bits: dict | None
    holdout_score: float
    holdout_confidence: float
    predicted_latency_s: float
    pbs_count: int
    predicted_keygen_s: float = 0.0
    predicted_evaluation_key_mb: float = 0.0
    #: The best score minus this one's, and the standard error of that paired difference
    #: (feasible when ``score_gap <= tolerance + score_gap_se``); the same for the confidence.
    score_gap: float = 0.0
    score_gap_se: float = 0.0
    confidence_gap: float = 0.0
    confidence_gap_se: float = 0.0
    chosen: bool = False
    #: The winner only: False when the final fine-tune on all the data would have made the
    #: circuit dearer (see :data:`FINAL_COST_SLACK`), so the model trained on the rest is kept.
    fine_tuned_on_all_data: bool | None = None
    #: The winner only: True when its final fine-tune priced above :data:`FINAL_COST_SLACK` and
    #: was trimmed back to the accumulator widths as scored (:data:`TRIM_TO_SCORED_WIDTHS`).
    final_widths_trimmed: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def _fine_tune(model, X: np.ndarray, y: np.ndarray, epochs: int) -> bool:
    """``epochs`` more epochs with the masks fixed, then the exact check at the model's budget.

    False (and no check) if a layer ended with no weight left: such a network computes a
    constant, and its quantizer has no scale to check.
    """
    model.initialize_optimizer()  # afresh: the moments of the network it derives from do not apply
    max_epochs = model.max_epochs
    model.max_epochs = epochs
    try:
        model._training_loop(X, y)
    finally:
        model.max_epochs = max_epochs
    if _has_dead_layer(model):
        return False
    model._finalize_pruning()
    return True


def _has_dead_layer(model) -> bool:
    return any(not torch.count_nonzero(layer.weight) for layer in model.module_.linears)


def _derive(base, X, y, bits: int, fraction: float, epochs: int):
    """A copy of the trained ``base`` pruned to ``bits`` and ``fraction`` fewer neurons, fine-tuned;
    None when a layer loses every weight (a narrow budget on a small layer, or the penalty)."""
    model = copy.deepcopy(base)
    model._set_accumulator_budget(bits)
    with torch.no_grad():
        for layer in model.module_.linears[:-1]:
            n_off = min(int(round(fraction * layer.out_features)), layer.out_features - 1)
            if n_off:
                layer.weight[lowest_norm_rows(layer.weight, n_off)] = 0.0
    model._finalize_pruning()  # prune to the new budget; dead neurons leave the network
    if _has_dead_layer(model) or not _fine_tune(model, X, y, epochs):
        return None
    return model


@dataclass
class Scored:
    """A candidate with the model it describes and its hold-out rows."""

    candidate: Candidate
    model: object
    rows: HoldoutRows


def _holdout_rows(model, X, y, rounding) -> HoldoutRows:
    """Score ``model`` on the hold-out row by row, as the circuit computes (FHE-simulated when
    Concrete rounds, since the clear network does not)."""
    if rounding is None:
        return holdout_rows(model, X, y)
    model.compile(rounding_threshold_bits=rounding)
    try:
        return holdout_rows(model, X, y, fhe="simulate")
    finally:
        model._forget_compilation()  # copies of a compiled model would recompile


def _price(model, rounding, rows: HoldoutRows, bits: int, fraction: float) -> Candidate:
    cost = estimate_cost(model, rounding_threshold_bits=rounding)
    return Candidate(
        bits,
        fraction,
        rounding,
        float(rows.score.mean()),
        float(rows.confidence.mean()),
        float(cost.latency_s),
        int(cost.pbs_count),
        float(cost.keygen_s),
        float(cost.evaluation_key_mb),
    )


def _objective(latency_s: float, keygen_s: float) -> float:
    return latency_s + keygen_s / PREDICTIONS_PER_KEY_SET


def objective_s(candidate: Candidate) -> float:
    """What the search minimizes: seconds per prediction, key generation shared by
    :data:`PREDICTIONS_PER_KEY_SET` predictions."""
    return _objective(candidate.predicted_latency_s, candidate.predicted_keygen_s)


def _lowest_bits(estimator) -> int:
    """Narrowest budget to try: Ω ≥ 1 in every layer, and at most ``MAX_BITS_BELOW`` under the user's."""
    input_bits = max(estimator.n_a_bits, estimator.n_input_bits_)
    largest_term = (2**estimator.n_w_bits - 1) * (2**input_bits - 1)
    omega_at_least_one = int(np.ceil(np.log2(largest_term + 1)))  # 2^b - 1 >= largest term
    return max(omega_at_least_one, estimator.n_accum_bits - MAX_BITS_BELOW)


def tighten(estimator, X: np.ndarray, y: np.ndarray, **fit_params):
    """Fit ``estimator`` (already validated, ``y`` encoded) to the cheapest circuit within tolerance.

    Returns the fitted winner, whose ``tightening_candidates_`` lists what was tried.
    The caller copies its fitted state.
    """
    tolerance = estimator.tighten_tolerance
    # Standard errors allowed: accuracy moves by whole rows; R² resolves the tolerance itself.
    allowance = STANDARD_ERRORS if estimator._estimator_type == "classifier" else 0.0
    train, holdout = internal_split(y, estimator._estimator_type == "classifier")
    base = _fit_base(estimator, X, y, train, holdout, fit_params)
    epochs = fine_tune_epochs(base.max_epochs, len(train), base.batch_size)
    user_rounding = estimator.rounding_threshold_bits

    scored: list[Scored] = []

    def consider(model, bits, fraction, rounding):
        if model is None:
            return  # a derived network with a dead layer: not a candidate
        rows = _holdout_rows(model, X[holdout], y[holdout], rounding)
        scored.append(Scored(_price(model, rounding, rows, bits, fraction), model, rows))

    def consider_derived(budgets: list[tuple[int, float]]):
        """Derive a network from ``base`` per (bits, fraction) (``n_jobs`` processes at a time) and consider each."""
        arguments = [{"bits": bits, "fraction": fraction} for bits, fraction in budgets]
        derive = partial(_derive, base, X[train], y[train], epochs=epochs)
        for (bits, fraction), model in zip(budgets, fit_all(derive, arguments, estimator.n_jobs)):
            consider(model, bits, fraction, user_rounding)

    consider(base, estimator.n_accum_bits, 0.0, user_rounding)
    # 1. Narrower accumulators (every width: one unlucky hold-out score must not end the search).
    consider_derived([(bits, 0.0) for bits in range(estimator.n_accum_bits - 1, _lowest_bits(base) - 1, -1)])
    # 2. Fewer neurons, at the narrowest widths that held.
    widths = _neuron_removal_widths(scored, tolerance, allowance)
    consider_derived([(bits, fraction) for bits in widths for fraction in NEURON_FRACTIONS])
    # 3. Concrete's rounding, on the cheapest candidates within tolerance so far.
    if user_rounding is None:
        for cheap in _rounding_bases(scored, tolerance, allowance):
            for rounding in ROUNDINGS:
                price = estimate_cost(cheap.model, rounding_threshold_bits=rounding)
                cheaper = _objective(price.latency_s, price.keygen_s) < objective_s(cheap.candidate)
                if max(price.lsbs_removed) == 0 or not cheaper:
                    continue  # nothing to round, or no cheaper even if it kept the score: no compile
                consider(cheap.model, cheap.candidate.accumulator_bits, cheap.candidate.neuron_fraction, rounding)

    winner = _cheapest(scored, tolerance, allowance)
    winner.candidate.chosen = True
    model = _final_fit(winner, estimator, X, y, holdout, epochs)
    model.tightening_candidates_ = [pair.candidate.as_dict() for pair in scored]
    return model


def _neuron_removal_widths(scored: list[Scored], tolerance: float, standard_errors: float) -> list[int]:
    """The :data:`NEURON_REMOVAL_WIDTHS` narrowest accumulator widths whose candidate is feasible."""
    widths = {pair.candidate.accumulator_bits for pair in _feasible(scored, tolerance, standard_errors)}
    return sorted(widths)[:NEURON_REMOVAL_WIDTHS]


def _rounding_bases(scored: list[Scored], tolerance: float, standard_errors: float) -> list[Scored]:
    """The :data:`ROUNDING_BASES` cheapest feasible candidates, which Concrete's rounding is tried on."""
    feasible = _feasible(scored, tolerance, standard_errors)
    return sorted(feasible, key=lambda pair: objective_s(pair.candidate))[:ROUNDING_BASES]


def _fit_base(estimator, X, y, train, holdout, fit_params: dict):
    """The network trained at the user's budget on the ``train`` part, which candidates derive from.

    With ``optimizer__weight_decay="auto"`` one network per candidate regularization (penalty and
    first-layer density), on the same split, and the one the hold-out prefers is kept
    (:func:`regularization.fit_best_on_holdout`, the rule ``fit`` uses without the search too);
    no refit is needed. Either way the hold-out also keeps the best of ``n_init`` initializations
    (:func:`regularization.best_initialization`).
    """
    if not is_auto(weight_decay_parameter(estimator)) or len(train) < AUTO_MIN_SAMPLES:
        first = fit_on_rows(estimator, X, y, train, **fit_params)
        return best_initialization(estimator, X, y, train, holdout, first, **fit_params)
    return fit_best_on_holdout(estimator, X, y, train, holdout, **fit_params)


def _final_fit(winner: Scored, estimator, X: np.ndarray, y: np.ndarray, holdout: np.ndarray, epochs: int):
    """The winner fine-tuned on all the training data (masks fixed), unless that makes it more
    than :data:`FINAL_COST_SLACK` dearer than it was scored: a fine-tune moves the quantizer
    scales, and with them the bits a lookup reads (digits at (4,4,12): 6.8 s and 1.1 GB of keys
    as scored, 14.7 s and 2.2 GB after), or if it scores more than :data:`FINAL_SCORE_SLACK` lower
    on the training data it was just trained on, or (a regressor) lower at all on the ``holdout``
    rows (:data:`FINAL_HOLDOUT_GUARD`). Then the scored model is kept, as it was validated.
    A fine-tune priced too dear with an accumulator wider than as scored is first trimmed back
    to the scored widths and priced again (:data:`TRIM_TO_SCORED_WIDTHS`)."""
    rounding = winner.candidate.rounding_threshold_bits
    finished = copy.deepcopy(winner.model)
    alive = _fine_tune(finished, X, y, epochs)
    finished.calibration_X_ = estimator._calibration_sample(X)
    finished.n_train_samples_ = len(X)
    keeps_price = keeps_score = False
    if alive:
        price = estimate_cost(finished, rounding_threshold_bits=rounding)
        keeps_price = _keeps_price(price, winner)
        if not keeps_price and TRIM_TO_SCORED_WIDTHS:
            scored_widths = estimate_cost(winner.model, rounding_threshold_bits=rounding).accumulator_bits
            if any(mine > theirs for mine, theirs in zip(price.accumulator_bits, scored_widths)):
                finished._finalize_pruning(layer_bits=scored_widths)  # drops the smallest weights
                winner.candidate.final_widths_trimmed = True
                alive = not _has_dead_layer(finished)
                keeps_price = alive and _keeps_price(estimate_cost(finished, rounding_threshold_bits=rounding), winner)
    if keeps_price:  # only then is the score worth its two compiles and simulations
        # On the rows it was just trained on, a fine-tune that worked cannot score much lower; as
        # the circuit computes (a fine-tune moves the sums a rounding cuts: digits at (4,4,12),
        # rounded to 5 bits, fell from 0.99 to 0.85 on its training rows, clear network unharmed).
        kept, tuned = (_holdout_rows(m, X, y, rounding).score for m in (winner.model, finished))
        keeps_score = tuned.mean() >= kept.mean() - FINAL_SCORE_SLACK
        allowance = FINAL_TRAINING_STANDARD_ERRORS[estimator._estimator_type]
        if allowance is not None:
            keeps_score = keeps_score and within(paired_gap(kept, tuned), 0.0, allowance)
        if FINAL_HOLDOUT_GUARD[estimator._estimator_type]:
            keeps_score = keeps_score and tuned[holdout].mean() >= kept[holdout].mean()
    winner.candidate.fine_tuned_on_all_data = bool(keeps_price and keeps_score)
    model = finished if winner.candidate.fine_tuned_on_all_data else winner.model
    model.rounding_threshold_bits_ = rounding
    return model


def _keeps_price(price, winner: Scored) -> bool:
    """Whether ``price`` (a fine-tuned winner's) is at most :data:`FINAL_COST_SLACK` times the winner's as scored."""
    return _objective(price.latency_s, price.keygen_s) <= FINAL_COST_SLACK * objective_s(winner.candidate)


def _feasible(
    scored: list[Scored],
    tolerance: float,
    standard_errors: float,
    measure: str | None = "confidence",
    measure_tolerance: float | None = None,
    measure_standard_errors: float | None = None,
) -> list[Scored]:
    """The candidates within ``tolerance`` (plus, for a classifier, one paired standard error) of
    the best score, and within :data:`CONFIDENCE_TOLERANCE_FACTOR` × ``tolerance`` (plus the same
    standard errors) of the best confidence among those (never empty: the best is within itself).
    Records each candidate's gaps.

    ``measure`` (a :class:`~.holdout.HoldoutRows` field, or None for the score alone) and its
    tolerance and standard errors are what ``benchmarks/search_rule_study.py`` varies; the search
    uses the defaults."""
    best = max(scored, key=lambda pair: (pair.candidate.holdout_score, pair.candidate.holdout_confidence))
    score_gaps = {id(pair): paired_gap(best.rows.score, pair.rows.score) for pair in scored}
    for pair in scored:
        pair.candidate.score_gap, pair.candidate.score_gap_se = score_gaps[id(pair)]
    by_score = [pair for pair in scored if within(score_gaps[id(pair)], tolerance, standard_errors)]
    if measure is None:
        return by_score
    if measure_tolerance is None:
        measure_tolerance = CONFIDENCE_TOLERANCE_FACTOR * tolerance
    if measure_standard_errors is None:
        measure_standard_errors = standard_errors
    reference = max(by_score, key=lambda pair: float(getattr(pair.rows, measure).mean()))
    measure_gaps = {id(pair): paired_gap(getattr(reference.rows, measure), getattr(pair.rows, measure)) for pair in scored}
    for pair in scored:
        pair.candidate.confidence_gap, pair.candidate.confidence_gap_se = measure_gaps[id(pair)]
    return [pair for pair in by_score if within(measure_gaps[id(pair)], measure_tolerance, measure_standard_errors)]


def _cheapest(scored: list[Scored], tolerance: float, standard_errors: float) -> Scored:
    """The feasible candidate of lowest :func:`objective_s` (then highest score)."""
    feasible = _feasible(scored, tolerance, standard_errors)
    return min(feasible, key=lambda pair: (objective_s(pair.candidate), -pair.candidate.holdout_score))
