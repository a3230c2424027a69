"""Input checks for the estimators: hyperparameters, X, and targets, before any training.

Plain functions, so the estimators' ``fit``/``predict`` read as the data path and the
error messages live in one place. Parameters are checked against
:data:`PARAMETER_CONSTRAINTS` (the estimators' ``_parameter_constraints``, in scikit-learn's
``Interval``/``StrOptions`` language) with scikit-learn's ``InvalidParameterError`` (both a
``ValueError`` and a ``TypeError``), then the rules between parameters; data errors are
``ValueError`` and an unfitted model raises ``NotFittedError`` (``check_is_fitted``).
"""

from __future__ import annotations

import math
import warnings
from numbers import Integral, Real
from typing import Callable

import numpy as np
from sklearn.utils import column_or_1d
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions, make_constraint
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted

from .budget import omega
from .compilation import check_rounding_threshold_bits
from .distillation import DISTILLATIONS
from .input_grid import check_input_scale
from .pruning import PRUNING_SCHEDULES
from .regularization import is_auto
from .runtime import FHE_MODES, check_n_jobs

#: How many weights a neuron keeps: "count" keeps multiplier × Ω; "exact" keeps its largest
#: weights as long as their exact integer worst case fits n_accum_bits; "l1" keeps multiplier × Ω
#: and trains accumulator-aware (A2Q-style): each neuron's weights are scaled down after every
#: optimizer step until its exact worst case fits (see fhe_estimators/accumulator_aware.py).
PRUNING_BUDGETS = ("exact", "count", "l1")
#: Learning-rate schedules: "cosine" anneals from ``lr`` to 0 over each training call; None: constant.
LR_SCHEDULES = ("cosine", None)


def _positive_int(name: str) -> Callable:
    return lambda value, estimator: f"{name} must be a positive integer, got {value!r}."


def _pruning_fractions(value, estimator) -> str:
    return (
        "Need 0 <= pruning_start <= pruning_end <= 1 (fractions of max_epochs), got "
        f"pruning_start={estimator.pruning_start!r}, pruning_end={estimator.pruning_end!r}."
    )


#: What each of our parameters may be, in scikit-learn's constraint language (checked by
#: :func:`validate_parameters` at ``fit``; ``sklearn.set_config(skip_parameter_validation=True)``
#: skips it, as for scikit-learn's estimators). Cross-parameter rules follow in
#: :func:`validate_hyperparameters`.
PARAMETER_CONSTRAINTS: dict[str, list] = {
    "hidden_layer_sizes": [Interval(Integral, 1, None, closed="left"), tuple, list, StrOptions({"auto"})],
    "n_w_bits": [Interval(Integral, 1, None, closed="left")],
    "n_a_bits": [Interval(Integral, 1, None, closed="left")],
    "n_accum_bits": [Interval(Integral, 1, None, closed="left")],
    "n_input_bits": [Interval(Integral, 1, None, closed="left"), None],
    "input_scale": [StrOptions({"auto", "learned"}), Interval(Real, 0, None, closed="neither")],
    "n_hidden_neurons_multiplier": [Interval(Real, 0, None, closed="neither")],
    "pruning": [StrOptions(set(PRUNING_SCHEDULES))],
    "pruning_budget": [StrOptions(set(PRUNING_BUDGETS))],
    "neuron_removal": [Interval(Real, 0, 1, closed="left")],
    "first_layer_density": [Interval(Real, 0, 1, closed="right"), StrOptions({"auto"})],
    "n_init": [Interval(Integral, 1, None, closed="left")],
    "pruning_start": [Interval(Real, 0, 1, closed="both")],
    "pruning_end": [Interval(Real, 0, 1, closed="both")],
    "pruning_frequency": [Interval(Integral, 1, None, closed="left")],
    "lr_schedule": [StrOptions({s for s in LR_SCHEDULES if s is not None}), None],
    "float_pretraining": [Interval(Real, 0, 1, closed="left")],
    "weight_averaging": [Interval(Real, 0, 1, closed="left")],
    "distillation": [StrOptions({d for d in DISTILLATIONS if d is not None}), None],
    "tighten": ["boolean"],
    "tighten_tolerance": [Interval(Real, 0, 1, closed="left")],
    "rounding_threshold_bits": [Interval(Integral, 1, None, closed="left"), dict, None],
    "p_error": [Interval(Real, 0, 1, closed="neither"), None],
    "fhe": [StrOptions(set(FHE_MODES))],
    "n_jobs": [Integral, None],
    "random_state": ["random_state"],
    "optimizer": [callable],
    "predict_nonlinearity": [StrOptions({"auto"})],
}

#: The message of a parameter that breaks its constraints: what it must be and why.
CONSTRAINT_MESSAGES: dict[str, Callable] = {
    "hidden_layer_sizes": lambda value, e: (
        f'hidden_layer_sizes must be "auto" or a tuple of positive integers, got {value!r}: "auto" trains '
        "32 neurons, or 64 when they win on the internal hold-out."
    ),
    "n_w_bits": _positive_int("n_w_bits"),
    "n_a_bits": _positive_int("n_a_bits"),
    "n_accum_bits": _positive_int("n_accum_bits"),
    "n_input_bits": _positive_int("n_input_bits"),
    "input_scale": lambda value, e: (
        f'input_scale must be "auto", "learned" or a power of two, got {value!r}: the step at which the '
        'network reads its inputs; "auto" chooses it from the training data, "learned" trains it.'
    ),
    "n_hidden_neurons_multiplier": lambda value, e: f"n_hidden_neurons_multiplier must be a number > 0, got {value!r}.",
    "pruning": lambda value, e: f"pruning must be one of {PRUNING_SCHEDULES}, got {value!r}.",
    "pruning_budget": lambda value, e: (
        f'pruning_budget must be one of {PRUNING_BUDGETS}, got {value!r}: "exact" keeps each neuron\'s largest '
        'weights whose exact worst case fits n_accum_bits, "count" keeps n_hidden_neurons_multiplier × Ω, '
        '"l1" shrinks weights during training so they fit (A2Q-style).'
    ),
    "neuron_removal": lambda value, e: f"neuron_removal must be a fraction in [0, 1), got {value!r}.",
    "first_layer_density": lambda value, e: (
        f'first_layer_density must be a fraction in (0, 1] or "auto", got {value!r}: each first-layer neuron '
        'keeps its largest weights on that fraction of the inputs; "auto" lets the hold-out choose it along '
        'with optimizer__weight_decay="auto".'
    ),
    "n_init": lambda value, e: (
        f"n_init must be an integer >= 1, got {value!r}: how many networks are trained from different "
        "random weights at the chosen setting, the internal hold-out keeping the best; 1 trains one."
    ),
    "pruning_start": _pruning_fractions,
    "pruning_end": _pruning_fractions,
    "pruning_frequency": _positive_int("pruning_frequency"),
    "lr_schedule": lambda value, e: (
        f'lr_schedule must be one of {LR_SCHEDULES}, got {value!r}: "cosine" anneals the '
        "learning rate to 0 over each training call, None keeps it constant."
    ),
    "float_pretraining": lambda value, e: (
        f"float_pretraining must be a fraction of max_epochs in [0, 1), got {value!r}: that part of "
        "training runs with the quantizers off, the rest quantized."
    ),
    "weight_averaging": lambda value, e: (
        f"weight_averaging must be a fraction of max_epochs in [0, 1), got {value!r}: each training call "
        "ends on the mean of the weights of that last part of its epochs; 0 keeps the last epoch's weights."
    ),
    "distillation": lambda value, e: (
        f'distillation must be one of {DISTILLATIONS}, got {value!r}: "mlp" also trains on the outputs '
        "of a float scikit-learn MLP fitted on the same rows, None on the labels only."
    ),
    "tighten": lambda value, e: f"tighten must be True or False, got {value!r}.",
    "tighten_tolerance": lambda value, e: f"tighten_tolerance must be a score difference in [0, 1), got {value!r}.",
    "rounding_threshold_bits": lambda value, e: (
        'rounding_threshold_bits must be None, a positive integer or a dict {"n_bits": int, "method": '
        f'"exact" | "approximate"}}, got {value!r}.'
    ),
    "p_error": lambda value, e: f"p_error must be None or a probability in (0, 1), got {value!r}.",
    "fhe": lambda value, e: f"fhe must be one of {', '.join(repr(m) for m in FHE_MODES)}; got {value!r}.",
    "n_jobs": lambda value, e: (
        "n_jobs must be None, a positive integer, or a negative one counted from the number of cores "
        f"(-1: all, -2: all but one), as in joblib; got {value!r}."
    ),
    "random_state": lambda value, e: (
        f"random_state must be None, an int or a numpy.random.RandomState, got {value!r}."
    ),
    "optimizer": lambda value, e: (
        f"optimizer must be a torch optimizer class (e.g. torch.optim.AdamW), got {value!r}."
    ),
    "predict_nonlinearity": lambda value, e: (
        f"predict_nonlinearity must be 'auto', got {value!r}: predict_proba applies "
        "softmax to the logits (a regressor applies nothing), in the clear and on the decrypting FHEClient "
        "alike, where a custom function could not follow the model."
    ),
}


def _satisfies(value, constraint) -> bool:
    if isinstance(value, (bool, np.bool_)) and isinstance(constraint, Interval):
        return False  # scikit-learn's intervals take True for 1; a bit width or a fraction is never a bool
    return make_constraint(constraint).is_satisfied_by(value)


def validate_parameters(estimator) -> None:
    """Each of our parameters against :data:`PARAMETER_CONSTRAINTS` (the estimator's
    ``_parameter_constraints``): scikit-learn's ``InvalidParameterError`` (a ``ValueError``
    and a ``TypeError``) with a message that says what the parameter must be."""
    for name, constraints in estimator._parameter_constraints.items():
        value = getattr(estimator, name)
        if not any(_satisfies(value, constraint) for constraint in constraints):
            raise InvalidParameterError(CONSTRAINT_MESSAGES[name](value, estimator))


def validate_hyperparameters(estimator) -> None:
    """The rules between parameters and inside containers, checked at ``fit`` after
    :func:`validate_parameters` (these are never skipped: they keep the FHE guarantee)."""
    for input_bits in {estimator.n_a_bits, estimator.n_input_bits or estimator.n_a_bits}:
        omega(estimator.n_accum_bits, estimator.n_w_bits, input_bits)  # raises when Ω == 0
    sizes = estimator.hidden_layer_sizes
    positive_integers = (isinstance(s, Integral) and not isinstance(s, bool) and s > 0 for s in np.atleast_1d(sizes))
    if not is_auto(sizes) and not all(positive_integers):
        raise InvalidParameterError(CONSTRAINT_MESSAGES["hidden_layer_sizes"](sizes, estimator))
    if not estimator.pruning_start <= estimator.pruning_end:
        raise ValueError(_pruning_fractions(None, estimator))
    check_rounding_threshold_bits(estimator.rounding_threshold_bits)
    if not isinstance(estimator.input_scale, str):
        check_input_scale(estimator.input_scale)
    check_n_jobs(estimator.n_jobs, 1)


def check_no_fit_params(estimator, method: str, fit_params: dict) -> None:
    """Refuse keyword arguments to ``fit`` / ``partial_fit``: skorch would hand them to the torch
    module, which fails far from the call (``QuantMLP.forward() got an unexpected keyword argument``)."""
    if fit_params:
        names = ", ".join(sorted(map(repr, fit_params)))
        raise TypeError(
            f"{type(estimator).__name__}.{method}() got unexpected keyword argument(s) {names}: it trains on X "
            "and y only. Sample weights are not supported (nor by scikit-learn's MLPClassifier); to weight "
            "classes or rows, resample the training data."
        )


def validate_X(estimator, X, *, reset: bool) -> np.ndarray:
    """scikit-learn's checks on ``X`` (``reset``: learn ``n_features_in_``), as dense float32 for the network.

    A scipy sparse matrix (what ``OneHotEncoder`` hands a ``ColumnTransformer`` by default) is
    densified: every first-layer neuron reads every input, in torch and in the circuit alike.
    At ``fit`` (``reset``), columns far from a standardized scale get a warning
    (:func:`warn_if_unscaled`).
    """
    check_numeric_columns(X)
    X = estimator._validate_data(
        X, reset=reset, accept_sparse=True, dtype=[np.float64, np.float32], force_all_finite=True
    )
    X32 = as_dense_float32(X)
    if not np.all(np.isfinite(X32)):
        raise ValueError(
            "X has values too large for float32 (the network's precision); rescale the features, "
            "e.g. with sklearn.preprocessing.StandardScaler."
        )
    if reset:
        warn_if_unscaled(X32, getattr(estimator, "feature_names_in_", None))
    return X32


def as_dense_float32(X) -> np.ndarray:
    """``X`` (an array or a scipy sparse matrix) as a dense float32 array."""
    if hasattr(X, "toarray"):
        X = X.toarray()
    return np.asarray(X).astype(np.float32)


def check_numeric_columns(X) -> None:
    """A DataFrame's non-numeric columns, named: pandas' own error quotes a value, not its column.

    Booleans, integers (nullable ones too) and floats are numbers; strings, categories and dates
    must be encoded first.
    """
    dtypes = getattr(X, "dtypes", None)
    if dtypes is None or not hasattr(dtypes, "items"):
        return
    other = [f"{name!r} ({dtype})" for name, dtype in dtypes.items() if getattr(dtype, "kind", "O") not in "biuf"]
    if other:
        raise ValueError(
            f"X has non-numeric columns: {', '.join(other)}. The network reads numbers: encode them "
            "first, e.g. with OneHotEncoder(handle_unknown='ignore') in a ColumnTransformer (docs/user_guide.md, "
            "'Tabular data: categories and missing values')."
        )


#: A column whose root mean square exceeds this is not on the scale the input grid is sized for
#: (a standardized column has 1, a one-hot or min-max scaled one at most 1).
UNSCALED_RMS = 10.0


def warn_if_unscaled(X: np.ndarray, feature_names=None) -> None:
    """Warn when columns of ``X`` are far from a standardized scale.

    The network reads every input on one power-of-two grid of at most 2^5 steps (the input
    quantizer is per tensor), which training sizes to the bulk of the values. Columns on a much
    larger scale are clipped to its ends, or the grid grows and the others fall between its
    steps. On the churn set of benchmarks/pipelines.py, raw numeric columns beside one-hot ones
    scored 0.636 test accuracy against 0.665 standardized (mean of three seeds).
    """
    rms = np.sqrt(np.mean(np.square(X, dtype=np.float64), axis=0))
    far = np.flatnonzero(rms > UNSCALED_RMS)
    if far.size == 0:
        return
    names = [repr(feature_names[i]) if feature_names is not None else f"column {i}" for i in far[:5]]
    listing = ", ".join(f"{name} ({rms[i]:.3g})" for name, i in zip(names, far[:5]))
    more = f" and {far.size - 5} more" if far.size > 5 else ""
    warnings.warn(
        f"X has columns far from a standardized scale (root mean square in brackets, 1 when "
        f"standardized): {listing}{more}. The network reads every input on one quantization grid of "
        "a few bits, so these columns are clipped or the others lose their resolution. Standardize X "
        "first, e.g. with StandardScaler in a Pipeline or ColumnTransformer.",
        UserWarning,
        stacklevel=4,
    )


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
    if y.dtype == object:
        missing = np.flatnonzero([_is_missing(label) for label in y])
        if missing.size:
            raise ValueError(
                f"y has {missing.size} missing labels (None or NaN), at rows {missing[:5].tolist()}"
                f"{' ...' if missing.size > 5 else ''}: drop those rows (a classifier needs a class per sample)."
            )
    try:
        check_classification_targets(y)
    except ValueError:
        raise ValueError(
            f"Unknown label type: {type_of_target(y)!r}. NeuralNetClassifier needs discrete class labels "
            "(use NeuralNetRegressor for continuous targets)."
        ) from None
    return y


def _is_missing(label) -> bool:
    """None, a float NaN or pandas' NA (not imported: only its type's name is checked)."""
    return label is None or (isinstance(label, float) and math.isnan(label)) or type(label).__name__ == "NAType"


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
    """scikit-learn's ``check_is_fitted``: ``NotFittedError`` with its usual message before ``fit``
    (the estimators say whether they are fitted through ``__sklearn_is_fitted__``)."""
    check_is_fitted(estimator)
