"""The one internal split of the training data, and how models are compared on it.

Everything ``fit`` chooses by itself is judged on the same hold-out: the regularization
``optimizer__weight_decay="auto"`` picks, with the input and hidden widths (:mod:`.regularization`),
and the circuit the tightening search keeps (:mod:`.search`). It is :data:`HOLDOUT_FRACTION` of the training rows, stratified for a
classifier, drawn with a fixed seed so that a choice does not move with ``random_state``.

Two models are compared row by row on it (paired), not by their mean scores alone: the
standard error of the paired difference says how much of a gap the hold-out can resolve.
On 28 iris rows one sample is 0.036 of accuracy; on 100+ rows a gap of 0.01 means
something. :func:`within` is the one-standard-error rule of CART (Breiman et al., 1984;
Hastie et al., ESL §7.10): a gap up to ``tolerance`` plus ``k`` standard errors is a tie,
and the search keeps the cheapest circuit among the ties. The regularization is chosen by
:func:`choose_regularization`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from .outputs import OutputDecoder

#: Fraction of the training data held out (at 100+ held-out rows one misclassified sample
#: costs less than the search's default tolerance of 0.01).
HOLDOUT_FRACTION = 0.25
#: Seed of the split (fixed: the same data gives the same hold-out whatever ``random_state``).
SPLIT_SEED = 0

#: ``optimizer__weight_decay="auto"`` (both estimators' default) tries these penalties on the
#: hold-out and keeps the one :func:`choose_regularization` picks, as ``RidgeCV`` picks its alpha.
#: Noisy targets (diabetes) want 0.1–0.3, clean ones 1e-4.
AUTO_WEIGHT_DECAYS = (1e-4, 1e-2, 1e-1, 3e-1)
#: With ``first_layer_density="auto"`` (the default) too, sparse first layers (each neuron keeps
#: this fraction of the inputs) are tried as well, at the weakest penalty and at the one the dense
#: settings chose (:mod:`.regularization`): a quarter and an eighth (moons with 8 noise features:
#: 3 and 2 of 10 inputs).
AUTO_FIRST_LAYER_DENSITIES = (0.25, 0.125)
#: ... when the hold-out has at least this many rows. A sparse first layer bets that most inputs
#: are irrelevant, and six to eight settings compared on a few dozen rows let one win by chance: on wine's
#: 34 hold-out rows a first layer keeping 2 of 13 inputs tied the best and won on log-likelihood
#: (the first rule), and lost 1-2 test rows of 45 on each of three seeds (1.000 with a dense one).
AUTO_SPARSE_MIN_HOLDOUT = 100
#: ``n_init`` compares initializations only on a hold-out of at least this many rows, for the reason
#: above: networks that differ by chance, compared on a few dozen rows, win by chance (over four
#: seeds, with every hold-out: iris' 28 rows and diabetes' 83 lost 0.027 accuracy and 0.028 R² at
#: seed 0; docs/pruning.md, "Several initializations").
AUTO_INIT_MIN_HOLDOUT = AUTO_SPARSE_MIN_HOLDOUT
#: The finer model input (:func:`~.regularization.finer_input`) is compared on a hold-out of at
#: least this many rows, per estimator type. A classifier's accuracy moves by whole rows, as for
#: the sparse layers above; a regressor's R² is continuous and resolves a coarse input's loss on
#: a few dozen rows (8 columns, a linear target, 38 hold-out rows: 4-bit inputs held the test R²
#: to 0.931-0.950, 5-bit ones 0.968-0.974, where a float MLP reads 0.984).
FINER_INPUT_MIN_HOLDOUT = {"classifier": AUTO_SPARSE_MIN_HOLDOUT, "regressor": 30}
#: ... but under :data:`AUTO_SPARSE_MIN_HOLDOUT` rows the finer input must win by this many paired
#: standard errors: there the 8-column set's 5-bit inputs won by 2.9-3.0, diabetes' (83 rows) by
#: 0.04 at one seed, and that network lost 0.017 test R² at 3.4x the latency.
SMALL_HOLDOUT_FINER_INPUT_STANDARD_ERRORS = 1.0
#: Below this many training rows a hold-out says nothing; "auto" then means the default penalty.
AUTO_MIN_SAMPLES = 20
#: Floor of a probability before its log (one confident mistake must not decide alone).
MIN_PROBABILITY = 1e-6
#: Paired standard errors within which two settings' hold-out scores tie (the likelihood decides).
REGULARIZATION_STANDARD_ERRORS = 1.0
#: Paired standard errors by which a sparse first layer must beat every dense setting. A win by
#: one hold-out row of 107 (0.009, a third of a standard error) once took breast cancer from
#: 0.972 to 0.944 test accuracy; at one standard error, over 36 fits (9 data sets x 4 seeds,
#: benchmarks/results/sparse_rule_study.md) 15 choices changed, none lost test score, mean +0.011.
SPARSE_STANDARD_ERRORS = 1.0
#: Paired standard errors by which a finer model input (:data:`~.budget.MAX_FREE_INPUT_BITS`)
#: must beat the width rule's: none, a better hold-out score is enough. Unlike a sparse first
#: layer it is the same network reading its inputs finer (house prices, 41 mostly one-hot columns:
#: 3-bit inputs held a float MLP to R² 0.89, 5-bit ones gained 0.03 on the hold-out and 0.01-0.05
#: on the test split). benchmarks/results/input_width_rule_study.md, 21 fits that compared the two
#: (plain fits, before the search): at one standard error (the rule before) 2 took 5 bits; at 0,
#: 6 did, the 4 changes moved test scores by +0.020, +0.018, +0.014 and -0.004 (digits twice,
#: 3-class, label noise), mean +0.002; ties stay with the width rule (breast cancer, where
#: 5 bits lost 0.007-0.021 on the test split on 3 seeds of 4, never won its hold-out).
FINER_INPUT_STANDARD_ERRORS = 0.0
#: ``hidden_layer_sizes="auto"`` (the default) trains the first of these widths; on a hold-out of at
#: least :data:`WIDER_MIN_HOLDOUT` rows the second too, at the setting and input chosen, and keeps it
#: when it wins by more than :data:`WIDER_STANDARD_ERRORS` paired standard errors
#: (:func:`prefers_wider`). 64 neurons cost about twice the lookups of 32 and buy accuracy only where
#: 32 are too few: on the 10-class benchmark set (a float (100,) MLP 0.04 above a (32,)) they won the
#: 469 hold-out rows by 0.036-0.072 over four seeds and the test split by 0.038-0.087; on the other
#: eight classification sets by at most 0.016 (benchmarks/results/generalization_auto_width.md).
AUTO_HIDDEN_LAYER_SIZES = ((32,), (64,))
#: ... for the reason of :data:`AUTO_SPARSE_MIN_HOLDOUT`: two networks compared on a few dozen rows.
WIDER_MIN_HOLDOUT = AUTO_SPARSE_MIN_HOLDOUT
#: Paired standard errors by which the wider network must win: more than the one a sparse first
#: layer needs, since the wider network doubles the price of every encrypted prediction. The
#: 10-class set clears it on every seed, no other classification set on any; the noisy regression
#: on two seeds of four (+0.010 and +0.013 hold-out R²; test R² +0.014 and -0.005).
WIDER_STANDARD_ERRORS = 1.5


def internal_split(y: np.ndarray, classifier: bool) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(train, holdout)`` of the training data ``y`` (encoded labels or targets)."""
    rows = np.arange(len(y))
    if classifier:
        try:
            return train_test_split(rows, test_size=HOLDOUT_FRACTION, random_state=SPLIT_SEED, stratify=y)
        except ValueError:  # a class too rare to stratify: an unstratified hold-out still works
            pass
    return train_test_split(rows, test_size=HOLDOUT_FRACTION, random_state=SPLIT_SEED)


@dataclass
class HoldoutRows:
    """Per-row scores on the hold-out, whose means are a model's score and confidence.

    ``score``: 1/0 for a right/wrong class, or each row's share of R² (``1 - n e_i² / SST``,
    whose mean is R²). ``confidence``: the probability given to the true class (a regressor's
    R² rows again). ``log_likelihood``: log of the true class' probability (floored at
    :data:`MIN_PROBABILITY`), or the R² rows, an affine map of a Gaussian log-likelihood: a
    proper scoring rule, which an overconfident model cannot win the way it wins ``confidence``.
    Rows, not just means, so that two models are compared pairwise.
    """

    score: np.ndarray
    confidence: np.ndarray
    log_likelihood: np.ndarray | None = None

    @classmethod
    def of_regression(cls, y: np.ndarray, predicted: np.ndarray) -> "HoldoutRows":
        y = np.asarray(y, dtype=np.float64).ravel()
        errors = y - np.asarray(predicted, dtype=np.float64).reshape(y.shape)
        total = max(float(np.sum((y - y.mean()) ** 2)), np.finfo(np.float64).tiny)
        rows = 1.0 - len(y) * errors**2 / total
        return cls(rows, rows, rows)

    @classmethod
    def of_classification(cls, y: np.ndarray, probabilities: np.ndarray) -> "HoldoutRows":
        """``y``: class indices; ``probabilities``: columns in class-index order."""
        y = np.asarray(y, dtype=int)
        correct = (probabilities.argmax(axis=1) == y).astype(np.float64)
        true_class = probabilities[np.arange(len(y)), y].astype(np.float64)
        return cls(correct, true_class, np.log(np.maximum(true_class, MIN_PROBABILITY)))


def holdout_rows(model, X: np.ndarray, y: np.ndarray, fhe: str = "disable") -> HoldoutRows:
    """Score ``model`` on ``X, y`` row by row, computed in the ``fhe`` mode.

    ``X`` is rows ``fit`` validated; ``y`` is encoded: class indices, or scaled targets (R² ignores
    the scaling).
    """
    outputs = model._validated_outputs(X, fhe)
    if model._estimator_type == "classifier":
        return HoldoutRows.of_classification(y, OutputDecoder.from_estimator(model).proba(outputs))
    return HoldoutRows.of_regression(y, outputs)


def paired_gap(best: np.ndarray, rows: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the paired difference ``best - rows``."""
    difference = best - rows
    standard_error = float(difference.std(ddof=1) / np.sqrt(len(difference))) if len(difference) > 1 else 0.0
    return float(difference.mean()), standard_error


def within(gap: tuple[float, float], tolerance: float, standard_errors: float) -> bool:
    """Whether a :func:`paired_gap` is a tie: at most ``tolerance`` + ``standard_errors`` × its SE."""
    mean, standard_error = gap
    return mean <= tolerance + standard_errors * standard_error + 1e-12


def choose_regularization(rows: dict) -> tuple:
    """The setting the hold-out prefers, and every setting's mean score. ``rows``: each setting's
    :class:`HoldoutRows`, keyed by :class:`~.regularization.Regularization` (``weight_decay``,
    ``first_layer_density``).

    Among the densest settings (the penalties), :func:`choose_penalty`. A sparser first layer
    replaces that choice only when its score beats every one of them by more than
    :data:`SPARSE_STANDARD_ERRORS` paired standard errors: it bets that most inputs are
    irrelevant, and a tie or a win by a row or two is no evidence of that. Decided by likelihood
    within the ties, a first layer keeping 8 of digits' 64 pixels won at 0.006 less hold-out
    accuracy and lost 0.016 on the test split.
    """
    means = _means(rows)
    densest = max(key.first_layer_density for key in rows)
    dense = {key: r for key, r in rows.items() if key.first_layer_density == densest}
    chosen = choose_penalty(dense)
    sparse = [key for key in rows if key.first_layer_density < densest]
    if sparse:
        best_sparse = max(sparse, key=lambda key: (*means[key], *_strength(key)))
        if all(_beats(rows[best_sparse].score, r.score, SPARSE_STANDARD_ERRORS) for r in dense.values()):
            chosen = best_sparse
    return chosen, {key: score for key, (score, _) in means.items()}


def _beats(rows: np.ndarray, other: np.ndarray, standard_errors: float) -> bool:
    """Whether ``rows`` score more than ``standard_errors`` paired standard errors above ``other``."""
    return not within(paired_gap(rows, other), 0.0, standard_errors)


def _means(rows: dict) -> dict:
    """Each setting's mean (score, log-likelihood) on the hold-out."""
    return {key: (float(np.mean(r.score)), float(np.mean(r.log_likelihood))) for key, r in rows.items()}


def _strength(key) -> tuple[float, float]:
    """The stronger of two settings: the larger penalty, then the sparser first layer."""
    return key.weight_decay, -key.first_layer_density


def choose_penalty(rows: dict):
    """The penalty (the setting, among equally dense ones) of best mean log-likelihood among those
    whose hold-out score ties the best within one paired standard error (:func:`within`), then the
    strongest.

    Accuracy moves by whole rows on a small hold-out (iris' 28 rows: one row is 0.036, about one
    standard error), so the best accuracy alone is noise there: with float pre-training a
    penalty of 0.3 once won iris by one row with a mean true-class probability of 0.54 against
    0.96 and lost 0.37 test accuracy. Among the ties the log-likelihood says how well the
    classes are separated; the mean true-class probability would favour the least regularized,
    most confident network (breast cancer lost 0.035 that way on one seed, as "the stronger
    penalty" alone lost 0.07-0.11 on iris and wine). A regressor's rows are R² terms: the best
    mean R² wins.
    """
    return _likeliest_of_ties(rows, _strength)


#: Per estimator type: do the penalties stop once past the best (:func:`past_the_best_penalty`)?
#: A regressor's path can fall and rise again: diabetes, seed 2, hold-out R² 0.535 at 1e-4 and
#: 0.488 at 1e-2, and the 0.1 it then never tried had been its choice (test R² 0.357, 0.251 without
#: it). Classifiers' fits were all the same models with the stop (24 fits, seeds 1 and 2).
PENALTY_STOP = {"classifier": True, "regressor": False}


def past_the_best_penalty(rows: list[HoldoutRows]) -> bool:
    """Whether the penalties tried so far (their hold-out ``rows``, weakest first) are past the best:
    the last one scores lower than the one before it and out of the tie band of the best so far
    (:data:`REGULARIZATION_STANDARD_ERRORS`, the band :func:`choose_penalty` picks in). Stronger
    penalties are then not trained: they flatten the network further (10 classes, hold-out accuracy
    from 1e-4 to 0.3: 0.693, 0.655, 0.497, 0.100), and one left out changes the choice only if the
    scores rise again past a fall (the benchmark's choices, docs/pruning.md)."""
    if len(rows) < 2 or np.mean(rows[-1].score) >= np.mean(rows[-2].score):
        return False
    best = max(rows, key=lambda r: (float(np.mean(r.score)), float(np.mean(r.log_likelihood))))
    return not within(paired_gap(best.score, rows[-1].score), 0.0, REGULARIZATION_STANDARD_ERRORS)


def prefers_finer_input(finer: HoldoutRows, rule: HoldoutRows) -> bool:
    """Whether the network with the finer input beats the width rule's on the hold-out by more than
    :data:`FINER_INPUT_STANDARD_ERRORS` paired standard errors (0: any higher score); on a hold-out
    under :data:`AUTO_SPARSE_MIN_HOLDOUT` rows, :data:`SMALL_HOLDOUT_FINER_INPUT_STANDARD_ERRORS`."""
    small = len(rule.score) < AUTO_SPARSE_MIN_HOLDOUT
    standard_errors = SMALL_HOLDOUT_FINER_INPUT_STANDARD_ERRORS if small else FINER_INPUT_STANDARD_ERRORS
    return _beats(finer.score, rule.score, standard_errors)


def prefers_wider(wider: HoldoutRows, default: HoldoutRows) -> bool:
    """Whether the wider network of ``hidden_layer_sizes="auto"`` beats the default width on the
    hold-out by more than :data:`WIDER_STANDARD_ERRORS` paired standard errors: it doubles the
    lookups of every encrypted prediction, so a tie keeps the cheaper network."""
    return _beats(wider.score, default.score, WIDER_STANDARD_ERRORS)


def choose_initialization(rows: list[HoldoutRows]) -> int:
    """Index of the initialization (``n_init``) the hold-out prefers among networks trained alike from
    different random weights: the best log-likelihood among those whose score ties the best within
    one paired standard error, the earliest among equals (so a tie keeps the first).

    Trained alike, networks still end apart (3-class set, five seeds: test accuracy 0.813-0.869), and
    the hold-out log-likelihood ranked those five exactly as their test accuracy did.
    """
    return _likeliest_of_ties(dict(enumerate(rows)), lambda index: (-index,))


def _likeliest_of_ties(rows: dict, prefer) -> object:
    """The key of best mean log-likelihood among those whose score ties the best within
    :data:`REGULARIZATION_STANDARD_ERRORS` paired standard errors; ``prefer(key)`` breaks ties."""
    means = _means(rows)
    best = max(rows, key=lambda key: (*means[key], *prefer(key)))
    tied = [
        key for key, r in rows.items() if within(paired_gap(rows[best].score, r.score), 0.0, REGULARIZATION_STANDARD_ERRORS)
    ]
    return max(tied, key=lambda key: (means[key][1], *prefer(key)))
