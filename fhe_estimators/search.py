"""Automatic tightening within the budget: the cheapest circuit that keeps the accuracy.

``n_accum_bits`` is a ceiling. After training at that budget on most of the
training data, :func:`tighten` tries cheaper circuits, each derived from the
trained network by a short fine-tune rather than a full retrain:

1. narrower accumulators (``n_accum_bits - 1``, ``- 2``, ...): each neuron
   keeps its largest weights whose exact worst case fits the narrower budget;
2. fewer hidden neurons (the lowest-norm ones removed);
3. Concrete's exact ``rounding_threshold_bits`` on the cheapest so far, scored in
   FHE simulation since the clear network does not round (approximate rounding is
   left out: see :data:`ROUNDINGS`).

Every candidate is scored on a hold-out part of the *training* data and
priced by the cost model (:mod:`fhe_estimators.cost`); the cheapest whose
score is within ``tolerance`` of the best wins, the way ``RidgeCV`` picks its
alpha. A classifier's candidates must also keep the mean probability of the
true class within ``tolerance`` (of the best among those): on small hold-outs
accuracy moves by whole samples and cannot tell a weaker network apart. The
winner is fine-tuned on all the training data and checked exactly again, so
the accumulator guarantee holds at its (narrower) budget.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split

from .cost import estimate_cost
from .pruning import lowest_norm_rows

#: Fraction of the training data held out to score candidates (at 100+ held-out rows one
#: misclassified sample costs less than the default tolerance of 0.01).
HOLDOUT_FRACTION = 0.25
#: Below this many training samples a hold-out score says nothing: no search.
MIN_SAMPLES = 100
#: Narrower accumulators tried below the user's budget.
MAX_BITS_BELOW = 4
#: Fractions of every hidden layer's neurons removed, tried at the chosen accumulator width.
NEURON_FRACTIONS = (0.5, 0.75)
#: Concrete rounding tried on the cheapest candidate (FHE-simulated: needs a compile each).
#: Exact only: with approximate rounding the encrypted outputs differed from the simulated
#: ones in 4 of 5 compiles of the breast-cancer model (off-by-one lookups that simulation
#: does not reproduce), and ``predict(fhe="simulate")`` must tell the truth about
#: ``"execute"``. Users may still ask for approximate rounding in ``rounding_threshold_bits``.
ROUNDINGS = ({"n_bits": 6, "method": "exact"}, {"n_bits": 5, "method": "exact"})
#: Optimizer steps each candidate's fine-tune takes at least: on small data sets an epoch is
#: one or two batches, and a tenth of training would not let a network that lost half its
#: neurons recover (iris: hold-out accuracy 0.68 after 20 steps).
MIN_FINE_TUNE_STEPS = 100


def fine_tune_epochs(max_epochs: int, n_samples: int, batch_size: int) -> int:
    """Epochs of each candidate's fine-tune: a tenth of training (at least 5 epochs and
    :data:`MIN_FINE_TUNE_STEPS` steps), never more than ``max_epochs``."""
    batches_per_epoch = max(1, -(-int(n_samples) // max(1, int(batch_size))))
    by_steps = -(-MIN_FINE_TUNE_STEPS // batches_per_epoch)
    return min(int(max_epochs), max(5, int(max_epochs) // 10, by_steps))


@dataclass
class Candidate:
    """One circuit the search tried: its settings, hold-out score and predicted cost."""

    accumulator_bits: int
    neuron_fraction: float
    rounding_threshold_bits: dict | None
    holdout_score: float
    holdout_confidence: float
    predicted_latency_s: float
    pbs_count: int
    chosen: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def _holdout_split(estimator, X: np.ndarray, y: np.ndarray):
    stratify = y if estimator._estimator_type == "classifier" else None
    try:
        return train_test_split(np.arange(len(X)), test_size=HOLDOUT_FRACTION, random_state=0, stratify=stratify)
    except ValueError:  # a class too rare to stratify: an unstratified hold-out still works
        return train_test_split(np.arange(len(X)), test_size=HOLDOUT_FRACTION, random_state=0)


def _fine_tune(model, X: np.ndarray, y: np.ndarray, epochs: int) -> None:
    """``epochs`` more epochs with the masks fixed, then the exact check at the model's budget."""
    max_epochs = model.max_epochs
    model.max_epochs = epochs
    try:
        model._training_loop(X, y)
    finally:
        model.max_epochs = max_epochs
    model._finalize_pruning()


def _derive(base, X, y, bits: int, fraction: float, epochs: int):
    """A copy of the trained ``base`` pruned to ``bits`` and ``fraction`` fewer neurons, fine-tuned."""
    model = copy.deepcopy(base)
    model._set_accumulator_budget(bits)
    with torch.no_grad():
        for layer in model.module_.linears[:-1]:
            n_off = min(int(round(fraction * layer.out_features)), layer.out_features - 1)
            if n_off:
                layer.weight[lowest_norm_rows(layer.weight, n_off)] = 0.0
    model._finalize_pruning()  # prune to the new budget; dead neurons leave the network
    _fine_tune(model, X, y, epochs)
    return model


def _holdout_scores(model, X, y, rounding) -> tuple[float, float]:
    """(score, confidence) on the hold-out, as the circuit computes (FHE-simulated when Concrete
    rounds, since the clear network does not). ``y`` is encoded: class indices, or scaled targets.

    Score: accuracy (classifier) or R². Confidence: the mean probability given to the true
    class (classifier; R² again for a regressor), a smoother estimate of the same thing that
    tells apart candidates a small hold-out scores alike (28 rows on iris: one sample is 0.036).
    """
    mode = "disable"
    if rounding is not None:
        model.compile(rounding_threshold_bits=rounding)
        mode = "simulate"
    try:
        if model._estimator_type != "classifier":
            score = float(r2_score(y, model._network_outputs(X, mode).reshape(y.shape)))  # R² ignores the scaling
            return score, score
        probabilities = model.predict_proba(X, fhe=mode)  # columns in class-index order
    finally:
        model._forget_compilation()  # copies of a compiled model would recompile
    y = np.asarray(y, dtype=int)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == y))
    return accuracy, float(np.mean(probabilities[np.arange(len(y)), y]))


def _price(model, rounding, scores: tuple[float, float], bits: int, fraction: float) -> Candidate:
    cost = estimate_cost(model, rounding_threshold_bits=rounding)
    return Candidate(bits, fraction, rounding, *scores, float(cost.latency_s), int(cost.pbs_count))


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
    train, holdout = _holdout_split(estimator, X, y)
    base = copy.deepcopy(estimator)
    # A refit must not score candidates with the rounding an earlier search chose.
    base.rounding_threshold_bits_ = estimator.rounding_threshold_bits
    base._fit_prepared(X[train], y[train], **fit_params)
    epochs = fine_tune_epochs(base.max_epochs, len(train), base.batch_size)
    user_rounding = estimator.rounding_threshold_bits

    scored: list[tuple[Candidate, object]] = []

    def consider(model, bits, fraction, rounding):
        scores = _holdout_scores(model, X[holdout], y[holdout], rounding)
        scored.append((_price(model, rounding, scores, bits, fraction), model))

    consider(base, estimator.n_accum_bits, 0.0, user_rounding)
    # 1. Narrower accumulators (every width: one unlucky hold-out score must not end the search).
    for bits in range(estimator.n_accum_bits - 1, _lowest_bits(base) - 1, -1):
        consider(_derive(base, X[train], y[train], bits, 0.0, epochs), bits, 0.0, user_rounding)
    chosen_bits = min(c.accumulator_bits for c, _ in _feasible(scored, tolerance))
    # 2. Fewer neurons, at the narrowest width that held.
    for fraction in NEURON_FRACTIONS:
        consider(_derive(base, X[train], y[train], chosen_bits, fraction, epochs), chosen_bits, fraction, user_rounding)
    # 3. Concrete's rounding, on the cheapest candidate within tolerance so far.
    if user_rounding is None:
        cheapest, model = _cheapest(scored, tolerance)
        for rounding in ROUNDINGS:
            consider(model, cheapest.accumulator_bits, cheapest.neuron_fraction, rounding)

    winner, model = _cheapest(scored, tolerance)
    winner.chosen = True
    _fine_tune(model, X, y, epochs)  # all the training data now, masks fixed
    model.calibration_X_ = estimator._calibration_sample(X)
    model.n_train_samples_ = len(X)
    model.rounding_threshold_bits_ = winner.rounding_threshold_bits
    model.tightening_candidates_ = [candidate.as_dict() for candidate, _ in scored]
    return model


def _feasible(scored, tolerance: float):
    """The (candidate, model) pairs whose hold-out score is within ``tolerance`` of the best, and
    whose confidence is within ``tolerance`` of the best confidence among those (never empty)."""
    best_score = max(candidate.holdout_score for candidate, _ in scored)
    by_score = [pair for pair in scored if pair[0].holdout_score >= best_score - tolerance]
    best_confidence = max(candidate.holdout_confidence for candidate, _ in by_score)
    return [pair for pair in by_score if pair[0].holdout_confidence >= best_confidence - tolerance]


def _cheapest(scored, tolerance: float):
    """The feasible (candidate, model) of lowest predicted latency (then highest score)."""
    return min(_feasible(scored, tolerance), key=lambda pair: (pair[0].predicted_latency_s, -pair[0].holdout_score))
