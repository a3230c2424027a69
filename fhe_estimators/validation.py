"""Input checks for the estimators: hyperparameters, X, and targets, before any training.

Plain functions, so the estimators' ``fit``/``predict`` read as the data path and the
error messages live in one place. Each raises scikit-learn's usual ``ValueError``
(``TypeError`` for a non-callable optimizer, ``NotFittedError`` before ``fit``).
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils.multiclass import type_of_target

from . import fhe as fhe_backend
from .budget import check_positive_int, omega
from .distillation import DISTILLATIONS
from .pruning import PRUNING_SCHEDULES

#: How many weights a neuron keeps: "count" keeps multiplier × Ω; "exact" keeps its largest
#: weights as long as their exact integer worst case fits n_accum_bits; "l1" keeps multiplier × Ω
#: and trains accumulator-aware (A2Q-style): each neuron's weights are scaled down after every
#: optimizer step until its exact worst case fits (see fhe_estimators/accumulator_aware.py).
PRUNING_BUDGETS = ("exact", "count", "l1")
#: Learning-rate schedules: "cosine" anneals from ``lr`` to 0 over each training call; None: constant.
LR_SCHEDULES = ("cosine", None)


def validate_hyperparameters(estimator) -> None:
    """Check the estimator's parameters at ``fit`` (scikit-learn validates there, not in ``__init__``)."""
    for name in ("n_w_bits", "n_a_bits", "n_accum_bits"):
        check_positive_int(getattr(estimator, name), name)
    if estimator.n_input_bits is not None:
        check_positive_int(estimator.n_input_bits, "n_input_bits")
    for input_bits in {estimator.n_a_bits, estimator.n_input_bits or estimator.n_a_bits}:
        omega(estimator.n_accum_bits, estimator.n_w_bits, input_bits)  # raises when Ω == 0
    sizes = estimator.hidden_layer_sizes
    if isinstance(sizes, numbers.Integral):
        sizes = (sizes,)
    if not isinstance(sizes, (tuple, list)) or not all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in sizes
    ):
        raise ValueError(
            f"hidden_layer_sizes must be a tuple of positive integers, got {estimator.hidden_layer_sizes!r}."
        )
    multiplier = estimator.n_hidden_neurons_multiplier
    if isinstance(multiplier, bool) or not isinstance(multiplier, numbers.Real) or not multiplier > 0:
        raise ValueError(f"n_hidden_neurons_multiplier must be a number > 0, got {multiplier!r}.")
    if estimator.pruning not in PRUNING_SCHEDULES:
        raise ValueError(f"pruning must be one of {PRUNING_SCHEDULES}, got {estimator.pruning!r}.")
    if not isinstance(estimator.pruning_budget, str) or estimator.pruning_budget not in PRUNING_BUDGETS:
        raise ValueError(
            f'pruning_budget must be one of {PRUNING_BUDGETS}, got {estimator.pruning_budget!r}: "exact" keeps '
            'each neuron\'s largest weights whose exact worst case fits n_accum_bits, "count" keeps '
            'n_hidden_neurons_multiplier × Ω, "l1" shrinks weights during training so they fit (A2Q-style).'
        )
    schedule = estimator.lr_schedule
    if not (schedule is None or (isinstance(schedule, str) and schedule in LR_SCHEDULES)):
        raise ValueError(
            f'lr_schedule must be one of {LR_SCHEDULES}, got {estimator.lr_schedule!r}: "cosine" anneals the '
            "learning rate to 0 over each training call, None keeps it constant."
        )
    teacher = estimator.distillation
    if not (teacher is None or (isinstance(teacher, str) and teacher in DISTILLATIONS)):
        raise ValueError(
            f'distillation must be one of {DISTILLATIONS}, got {teacher!r}: "mlp" also trains on the outputs '
            "of a float scikit-learn MLP fitted on the same rows, None on the labels only."
        )
    removal = estimator.neuron_removal
    if isinstance(removal, bool) or not isinstance(removal, numbers.Real) or not 0.0 <= removal < 1.0:
        raise ValueError(f"neuron_removal must be a fraction in [0, 1), got {removal!r}.")
    fractions = (estimator.pruning_start, estimator.pruning_end)
    if not all(isinstance(f, numbers.Real) and not isinstance(f, bool) for f in fractions) or not (
        0.0 <= estimator.pruning_start <= estimator.pruning_end <= 1.0
    ):
        raise ValueError(
            "Need 0 <= pruning_start <= pruning_end <= 1 (fractions of max_epochs), got "
            f"pruning_start={estimator.pruning_start}, pruning_end={estimator.pruning_end}."
        )
    check_positive_int(estimator.pruning_frequency, "pruning_frequency")
    fhe_backend.check_rounding_threshold_bits(estimator.rounding_threshold_bits)
    if not isinstance(estimator.tighten, (bool, np.bool_)):
        raise ValueError(f"tighten must be True or False, got {estimator.tighten!r}.")
    tolerance = estimator.tighten_tolerance
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real) or not 0.0 <= tolerance < 1.0:
        raise ValueError(f"tighten_tolerance must be a score difference in [0, 1), got {tolerance!r}.")
    if not callable(estimator.optimizer):
        raise TypeError(
            f"optimizer must be a torch optimizer class (e.g. torch.optim.AdamW), got {estimator.optimizer!r}."
        )
    fhe_backend.check_fhe_mode(estimator.fhe)
    fhe_backend.check_n_jobs(estimator.n_jobs, 1)
    if not (isinstance(estimator.predict_nonlinearity, str) and estimator.predict_nonlinearity == "auto"):
        raise ValueError(
            f"predict_nonlinearity must be 'auto', got {estimator.predict_nonlinearity!r}: predict_proba applies "
            "softmax to the logits (a regressor applies nothing), in the clear and on the decrypting FHEClient "
            "alike, where a custom function could not follow the model."
        )
    try:
        check_random_state(estimator.random_state)
    except ValueError:
        raise ValueError(
            f"random_state must be None, an int or a numpy.random.RandomState, got {estimator.random_state!r}."
        ) from None


def validate_X(estimator, X, *, reset: bool) -> np.ndarray:
    """scikit-learn's checks on ``X`` (``reset``: learn ``n_features_in_``), as float32 for the network."""
    X = estimator._validate_data(X, reset=reset, dtype=[np.float64, np.float32], force_all_finite=True)
    X32 = X.astype(np.float32)
    if not np.all(np.isfinite(X32)):
        raise ValueError(
            "X has values too large for float32 (the network's precision); rescale the features, "
            "e.g. with sklearn.preprocessing.StandardScaler."
        )
    return X32


def check_y_given(y) -> np.ndarray:
    """``y`` as an array; skorch would accept ``None``, a supervised estimator must not."""
    if y is None:
        raise ValueError("This estimator requires y to be passed, but the target y is None.")
    try:
        return np.asarray(y)
    except ValueError as error:  # ragged nested sequences
        raise ValueError(f"y could not be read as an array: {error}") from None


def _check_n_samples(y: np.ndarray, n_samples: int) -> None:
    if len(y) != n_samples:
        raise ValueError(f"X has {n_samples} samples but y has {len(y)}; they must match.")


def check_class_labels(y: np.ndarray, n_samples: int) -> np.ndarray:
    """The classifier's targets: one discrete label per sample (a column vector is raveled, with a warning)."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = column_or_1d(y, warn=True)  # DataConversionWarning, as scikit-learn's classifiers
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D (one label per sample), got shape {y.shape}.")
    _check_n_samples(y, n_samples)
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise ValueError("y contains NaN or infinity.")
    target_type = type_of_target(y)
    if target_type not in ("binary", "multiclass"):
        raise ValueError(
            f"Unknown label type: {target_type!r}. NeuralNetClassifier needs discrete class labels "
            "(use NeuralNetRegressor for continuous targets)."
        )
    return y


def check_regression_targets(y: np.ndarray, n_samples: int) -> np.ndarray:
    """The regressor's targets: finite numbers, one row (1-D) or one row of outputs (2-D) per sample."""
    if y.ndim not in (1, 2):
        raise ValueError(f"y must be 1-D or 2-D, got shape {y.shape}.")
    _check_n_samples(y, n_samples)
    try:
        y = y.astype(np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"y must be numeric for a regressor: {error}") from None
    if not np.all(np.isfinite(y)):
        raise ValueError("y contains NaN or infinity.")
    return y


def check_fitted(estimator) -> None:
    """scikit-learn's ``NotFittedError`` (with its usual message) before ``fit``."""
    if not estimator.__sklearn_is_fitted__():
        raise NotFittedError(
            f"This {type(estimator).__name__} instance is not fitted yet. Call 'fit' with appropriate "
            "arguments before using this estimator."
        )
