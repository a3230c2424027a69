"""The L2 penalty a fit trains with: the user's ``optimizer__weight_decay``, or, for "auto"
(both estimators' default), the one the internal hold-out prefers, as ``RidgeCV`` picks its alpha.

Both ways of fitting choose it the same way (:func:`fit_best_on_holdout`): one network per
penalty of :data:`~.holdout.AUTO_WEIGHT_DECAYS`, each a copy of the estimator being fitted
(targets already encoded) trained on the train part of :func:`~.holdout.internal_split`, compared
by :func:`~.holdout.choose_weight_decay`. The tightening search (:mod:`.search`) keeps the chosen
network as its base; a plain fit (``tighten=False``) takes its penalty and trains on all the data.
"""

from __future__ import annotations

import copy
import numbers

import numpy as np

from .holdout import AUTO_MIN_SAMPLES, AUTO_WEIGHT_DECAYS, choose_weight_decay, holdout_rows, internal_split

#: The L2 penalty when "auto" has too few rows to choose (it keeps weights small, which is what
#: lets a pruned neuron fit its accumulator).
DEFAULT_WEIGHT_DECAY = 1e-4


def weight_decay_parameter(estimator):
    """``optimizer__weight_decay`` as given, or the estimator's default (``_default_weight_decay``)."""
    return getattr(estimator, "optimizer__weight_decay", estimator._default_weight_decay)


def is_auto(value) -> bool:
    return isinstance(value, str) and value == "auto"


def check_weight_decay(value) -> float:
    """A penalty given as a number, as a float; a clear error otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f'optimizer__weight_decay must be a number >= 0 or "auto", got {value!r}.')
    return float(value)


def fit_on_rows(estimator, X: np.ndarray, y: np.ndarray, rows: np.ndarray, weight_decay=None, **fit_params):
    """A copy of ``estimator`` fitted (plainly: no search) on ``X[rows], y[rows]`` (``y`` encoded)."""
    model = copy.deepcopy(estimator)
    # A refit must not score with the rounding an earlier search chose.
    model.rounding_threshold_bits_ = estimator.rounding_threshold_bits
    return model._fit_prepared(X[rows], y[rows], weight_decay=weight_decay, **fit_params)


def fit_best_on_holdout(estimator, X: np.ndarray, y: np.ndarray, train, holdout, **fit_params):
    """The copy of ``estimator`` trained on ``train`` with the penalty the ``holdout`` rows prefer,
    with every penalty's hold-out score in ``weight_decay_scores_``."""
    fits = {decay: fit_on_rows(estimator, X, y, train, decay, **fit_params) for decay in AUTO_WEIGHT_DECAYS}
    rows = {decay: holdout_rows(model, X[holdout], y[holdout]) for decay, model in fits.items()}
    chosen, scores = choose_weight_decay(rows)
    fits[chosen].weight_decay_scores_ = scores
    return fits[chosen]


def resolve_weight_decay(estimator, X: np.ndarray, y: np.ndarray) -> tuple[float, dict | None]:
    """The penalty of a plain fit on all of ``X, y`` and, for "auto", every penalty's hold-out
    score (None for a number; "auto" on fewer than ``AUTO_MIN_SAMPLES`` rows gives the default
    and no scores to compare: ``{}``)."""
    value = weight_decay_parameter(estimator)
    if not is_auto(value):
        return check_weight_decay(value), None
    if len(X) < AUTO_MIN_SAMPLES:
        return DEFAULT_WEIGHT_DECAY, {}
    train, holdout = internal_split(y, estimator._estimator_type == "classifier")
    best = fit_best_on_holdout(estimator, X, y, train, holdout)
    return best.weight_decay_, best.weight_decay_scores_
