"""The one internal split of the training data, and how models are compared on it.

Everything ``fit`` chooses by itself is judged on the same hold-out: the weight decay
``optimizer__weight_decay="auto"`` picks and the circuit the tightening search keeps
(:mod:`.search`). It is :data:`HOLDOUT_FRACTION` of the training rows, stratified for a
classifier, drawn with a fixed seed so that a choice does not move with ``random_state``.

Two models are compared row by row on it (paired), not by their mean scores alone: the
standard error of the paired difference says how much of a gap the hold-out can resolve.
On 28 iris rows one sample is 0.036 of accuracy; on 100+ rows a gap of 0.01 means
something. :func:`within` is the one-standard-error rule of CART (Breiman et al., 1984;
Hastie et al., ESL §7.10): a gap up to ``tolerance`` plus ``k`` standard errors is a tie,
and the search keeps the cheapest circuit among the ties. The weight decay is chosen by
:func:`choose_weight_decay`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

#: Fraction of the training data held out (at 100+ held-out rows one misclassified sample
#: costs less than the search's default tolerance of 0.01).
HOLDOUT_FRACTION = 0.25
#: Seed of the split (fixed: the same data gives the same hold-out whatever ``random_state``).
SPLIT_SEED = 0

#: ``optimizer__weight_decay="auto"`` (both estimators' default) tries these penalties on the
#: hold-out and keeps the one :func:`choose_weight_decay` picks, as ``RidgeCV`` picks its alpha.
#: Noisy targets (diabetes) want 0.1–0.3, clean ones 1e-4.
AUTO_WEIGHT_DECAYS = (1e-4, 1e-2, 1e-1, 3e-1)
#: Below this many training rows a hold-out says nothing; "auto" then means the default penalty.
AUTO_MIN_SAMPLES = 20


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
    R² rows again). Rows, not just means, so that two models are compared pairwise.
    """

    score: np.ndarray
    confidence: np.ndarray

    @classmethod
    def of_regression(cls, y: np.ndarray, predicted: np.ndarray) -> "HoldoutRows":
        y = np.asarray(y, dtype=np.float64).ravel()
        errors = y - np.asarray(predicted, dtype=np.float64).reshape(y.shape)
        total = max(float(np.sum((y - y.mean()) ** 2)), np.finfo(np.float64).tiny)
        rows = 1.0 - len(y) * errors**2 / total
        return cls(rows, rows)

    @classmethod
    def of_classification(cls, y: np.ndarray, probabilities: np.ndarray) -> "HoldoutRows":
        """``y``: class indices; ``probabilities``: columns in class-index order."""
        y = np.asarray(y, dtype=int)
        correct = (probabilities.argmax(axis=1) == y).astype(np.float64)
        return cls(correct, probabilities[np.arange(len(y)), y].astype(np.float64))


def holdout_rows(model, X: np.ndarray, y: np.ndarray, fhe: str = "disable") -> HoldoutRows:
    """Score ``model`` on ``X, y`` row by row, computed in the ``fhe`` mode.

    ``y`` is encoded: class indices, or scaled targets (R² ignores the scaling).
    """
    if model._estimator_type == "classifier":
        return HoldoutRows.of_classification(y, model.predict_proba(X, fhe=fhe))
    return HoldoutRows.of_regression(y, model._network_outputs(X, fhe))


def paired_gap(best: np.ndarray, rows: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the paired difference ``best - rows``."""
    difference = best - rows
    standard_error = float(difference.std(ddof=1) / np.sqrt(len(difference))) if len(difference) > 1 else 0.0
    return float(difference.mean()), standard_error


def within(gap: tuple[float, float], tolerance: float, standard_errors: float) -> bool:
    """Whether a :func:`paired_gap` is a tie: at most ``tolerance`` + ``standard_errors`` × its SE."""
    mean, standard_error = gap
    return mean <= tolerance + standard_errors * standard_error + 1e-12


def choose_weight_decay(rows: dict[float, HoldoutRows]) -> tuple[float, dict[float, float]]:
    """The penalty with the best hold-out score, then the best confidence, then the strongest
    (``rows``: each penalty's :class:`HoldoutRows`), and every penalty's mean score.

    Accuracy ties often on a small hold-out (iris' 28 rows: every penalty up to 0.3 at 1.0);
    the mean probability of the true class breaks the tie by how well the classes are separated,
    where "the stronger penalty" alone lost 0.07-0.11 test accuracy on iris and wine.
    """
    means = {decay: (float(np.mean(r.score)), float(np.mean(r.confidence))) for decay, r in rows.items()}
    chosen = max(means, key=lambda decay: (*means[decay], decay))
    return chosen, {decay: score for decay, (score, _) in means.items()}
