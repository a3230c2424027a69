"""scikit-learn estimators (built on skorch) that train pruned, quantized MLPs for FHE.

``fit`` trains with a per-neuron pruning callback, then *finalizes*: the masks
become permanent and the exact accumulator bound is checked on the integer
weights, dropping weights where a neuron could overflow ``n_accum_bits``.
``compile`` turns the result into a Concrete circuit; ``predict(X, fhe=...)``
runs it in the clear, simulated, or encrypted.

The steps live in their own modules, in the order the data takes them:
:mod:`.validation`, :mod:`.callbacks` (pruning schedule, training scores),
:mod:`.finalize` (exact check, neuron removal, reports), then compile and run
in :mod:`.fhe`. This module holds the parameters and the scikit-learn/skorch plumbing.
"""

from __future__ import annotations

import inspect
import numbers
from pathlib import Path
from typing import Any

import numpy as np
import skorch
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from skorch.dataset import Dataset
from torch.utils.data import DataLoader

from . import fhe as fhe_backend
from .fhe import DEFAULT_P_ERROR
from . import distillation, finalize, holdout, search, validation
from .budget import default_input_bits, omega
from .holdout import AUTO_MIN_SAMPLES, AUTO_WEIGHT_DECAYS
from .cost import estimate_cost
from .callbacks import TrainingScore, fhe_callbacks  # noqa: F401  (TrainingScore: importable here as before)
from .module import QuantMLP
from .validation import PRUNING_BUDGETS  # noqa: F401  (importable here as before)

#: Rows of the training data kept to calibrate ``compile`` when no X is given.
CALIBRATION_ROWS = 500

#: Fraction of training over which quantizers measure their input ranges.
STATS_FRACTION = 0.4

#: The L2 penalty when "auto" has too few rows to choose (it keeps weights small, which is what
#: lets a pruned neuron fit its accumulator). Both estimators default to "auto".
DEFAULT_WEIGHT_DECAY = 1e-4


_USE_PARAM = object()  # "take the constructor's value" for compile() arguments


def _stored_privately(name: str) -> property:
    """A property keeping skorch's attribute ``name`` in ``vars(self)`` under a private name.

    skorch sets ``history_``, ``initialized_`` and ``virtual_params_`` in ``__init__``;
    scikit-learn reads any public attribute ending in "_" as fitted state, so an
    unfitted net would look fitted (and fail ``check_no_attributes_set_in_init``).
    """
    private = "_" + name.rstrip("_")

    def get(self):
        try:
            return vars(self)[private]
        except KeyError:
            raise AttributeError(name) from None

    def set(self, value):
        vars(self)[private] = value

    return property(get, set, doc=f"skorch's ``{name}``, stored as ``{private}``.")


class _FHEMixin:
    """Everything the classifier and the regressor share: validation, pruning, FHE."""

    _fhe_params = (
        "hidden_layer_sizes",
        "n_w_bits",
        "n_a_bits",
        "n_input_bits",
        "n_accum_bits",
        "n_hidden_neurons_multiplier",
        "pruning",
        "pruning_budget",
        "neuron_removal",
        "pruning_start",
        "pruning_end",
        "pruning_frequency",
        "lr_schedule",
        "distillation",
        "tighten",
        "tighten_tolerance",
        "rounding_threshold_bits",
        "p_error",
        "fhe",
        "n_jobs",
        "random_state",
    )

    history_ = _stored_privately("history_")
    initialized_ = _stored_privately("initialized_")
    virtual_params_ = _stored_privately("virtual_params_")

    #: ``optimizer__weight_decay`` when the user does not set it (see ``_resolve_weight_decay``).
    _default_weight_decay: float | str = "auto"

    def _store_fhe_params(self, arguments: dict) -> None:
        """Store our constructor arguments as they are (scikit-learn convention)."""
        for name in self._fhe_params:
            setattr(self, name, arguments[name])

    def _get_param_names(self):
        # skorch lists every attribute not ending in "_"; private ones and the module
        # (ours to build) are not parameters.
        return (name for name in super()._get_param_names() if name != "module" and not name.startswith("_"))

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "accumulator_bits_")

    # ------------------------------------------------------------------ validation
    def _validate_hyperparameters(self) -> None:
        """Check the parameters at fit (see :func:`validation.validate_hyperparameters`)."""
        validation.validate_hyperparameters(self)

    def _validate_X(self, X, *, reset: bool) -> np.ndarray:
        """``X`` checked and as float32 (see :func:`validation.validate_X`)."""
        return validation.validate_X(self, X, reset=reset)

    # ------------------------------------------------------------------ fit entry points
    def fit(self, X, y, **fit_params):
        """Validate, train with per-neuron pruning, and enforce the accumulator bound.

        With ``warm_start=True``, a fitted model continues training instead (see ``partial_fit``).
        """
        if self.warm_start and self.__sklearn_is_fitted__():
            return self._continue_training(X, y, **fit_params)
        return self._fit_from_scratch(X, y, **fit_params)

    def partial_fit(self, X, y, classes=None, **fit_params):
        """Train a fitted model ``max_epochs`` more epochs on ``X, y``, keeping its pruning.

        The masks stay fixed (no weight pruned so far comes back) and the exact
        accumulator check runs again, so the FHE guarantee still holds. On an
        unfitted model this is ``fit``; ``classes`` may then list every label.
        """
        if self.__sklearn_is_fitted__():
            return self._continue_training(X, y, **fit_params)
        return self._fit_from_scratch(X, y, classes=classes, **fit_params)

    def _fit_from_scratch(self, X, y, classes=None, **fit_params):
        self._validate_hyperparameters()
        X = self._validate_X(X, reset=True)
        y = self._fit_targets(validation.check_y_given(y), len(X), classes)
        self._forget_compilation()
        if self.tighten and len(X) >= search.MIN_SAMPLES:
            # The search fits a copy and derives cheaper ones; the winner's fitted state becomes ours.
            winner = vars(search.tighten(self, X, y, **fit_params))
            for stale in set(vars(self)) - set(winner):  # fitted state of an earlier fit
                delattr(self, stale)
            vars(self).update(winner)
        else:
            self._fit_prepared(X, y, **fit_params)
            self.rounding_threshold_bits_ = self.rounding_threshold_bits
            self.tightening_candidates_ = []
        self.fhe_cost_ = estimate_cost(self)
        return self

    def _continue_training(self, X, y, **fit_params):
        X = self._validate_X(X, reset=False)
        y = self._encode_targets(validation.check_y_given(y), len(X))
        self._forget_compilation()
        self._training_loop(X, y, **fit_params)
        self._finalize_pruning()
        self.fhe_cost_ = estimate_cost(self)
        return self

    #: True while skorch's loop runs: its callbacks see encoded labels and scaled targets.
    _in_training_loop = False

    def _training_loop(self, X: np.ndarray, y: np.ndarray, **fit_params) -> None:
        """skorch's training loop on the initialized net (callbacks, history, pruning)."""
        self._in_training_loop = True
        try:
            skorch.NeuralNet.partial_fit(self, X, y, **fit_params)
        finally:
            del self._in_training_loop  # back to the class default

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """skorch's loss, mixed with the distance to the float teacher's outputs while training
        with ``distillation`` (see :mod:`.distillation`)."""
        loss = super().get_loss(y_pred, y_true, X=X, training=training)
        if not training or X is None or getattr(self, "distillation_teacher_", None) is None:
            return loss
        return distillation.distilled_loss(self, loss, y_pred, X)

    def check_data(self, X, y):
        # X and y were validated and encoded before training; skorch needs nothing more.
        pass

    # ------------------------------------------------------------------ training
    def _input_bits(self) -> int:
        """``n_input_bits``, or the free extra bit of :func:`budget.default_input_bits`."""
        if self.n_input_bits is not None:
            return self.n_input_bits
        return default_input_bits(self.n_features_in_, self.n_w_bits, self.n_a_bits, self.n_accum_bits)

    def _hidden_sizes(self) -> tuple[int, ...]:
        sizes = self.hidden_layer_sizes
        return (int(sizes),) if isinstance(sizes, numbers.Integral) else tuple(int(s) for s in sizes)

    def initialize_module(self):
        """Build the quantized MLP from the estimator's hyperparameters and the data's shape."""
        self.module_ = QuantMLP(
            input_dim=self.n_features_in_,
            output_dim=self.n_outputs_,
            hidden_layer_sizes=self._hidden_sizes(),
            n_w_bits=self.n_w_bits,
            n_a_bits=self.n_a_bits,
            n_input_bits=self.n_input_bits_,
            collect_stats_steps=self._stats_steps(),
        ).to(self.device)
        return self

    def _stats_steps(self) -> int:
        """Quantizer range statistics over the first 40% of training (at least one batch)."""
        batches_per_epoch = max(1, int(np.ceil(self.n_train_samples_ / max(1, self.batch_size))))
        return max(1, round(STATS_FRACTION * self.max_epochs * batches_per_epoch))

    def get_default_callbacks(self):
        return [*super().get_default_callbacks(), *fhe_callbacks(self)]

    def _keep_counts(self, module: QuantMLP) -> list[np.ndarray]:
        """Per layer, the weights each neuron may keep now (the pruning callback's budget)."""
        return finalize.keep_counts(
            module, self.pruning_budget, self.layer_omegas_, self.n_hidden_neurons_multiplier, self.accumulator_budget_
        )

    def _set_accumulator_budget(self, n_bits: int) -> None:
        """Make ``n_bits`` (≤ ``n_accum_bits``) the budget pruning and the exact check enforce.

        Ω follows it: the first layer's from the input bits, the others' from ``n_a_bits``.
        """
        self.accumulator_budget_ = int(n_bits)
        self.omega_ = omega(n_bits, self.n_w_bits, self.n_a_bits)
        first_omega = omega(n_bits, self.n_w_bits, self.n_input_bits_)
        self.layer_omegas_ = [first_omega] + [self.omega_] * len(self._hidden_sizes())

    def _fit_prepared(self, X: np.ndarray, y: np.ndarray, weight_decay: float | None = None, **fit_params):
        """Shared tail of ``fit``: budget, seed, skorch training loop, finalize.

        ``weight_decay`` overrides the parameter's (a number, or "auto" resolved on a hold-out).
        """
        self.n_input_bits_ = self._input_bits()
        self._set_accumulator_budget(self.n_accum_bits)
        if weight_decay is None:
            self.weight_decay_ = self._resolve_weight_decay(X, y)
        else:
            vars(self).pop("weight_decay_scores_", None)
            self.weight_decay_ = float(weight_decay)
        self.n_train_samples_ = len(X)
        self.distillation_teacher_ = distillation.fit_teacher(self, X, y) if self.distillation else None
        rng = check_random_state(self.random_state)
        if self.random_state is not None:
            # An int seeds torch as given; a RandomState instance draws torch's seed.
            seed = self.random_state if isinstance(self.random_state, numbers.Integral) else rng.randint(2**31)
            torch.manual_seed(int(seed))
        self.calibration_X_ = self._calibration_sample(X, rng)
        self._forget_compilation()
        self.initialize()
        self._training_loop(X, y, **fit_params)
        self._finalize_pruning()
        return self

    def _calibration_sample(self, X: np.ndarray, rng=None) -> np.ndarray:
        """Up to ``CALIBRATION_ROWS`` rows of ``X`` (in order) kept to calibrate ``compile``."""
        rng = check_random_state(self.random_state) if rng is None else rng
        rows = rng.choice(len(X), size=min(len(X), CALIBRATION_ROWS), replace=False)
        return X[np.sort(rows)]

    def _weight_decay_parameter(self):
        """``optimizer__weight_decay`` as given, or this estimator's default."""
        return getattr(self, "optimizer__weight_decay", self._default_weight_decay)

    def _resolve_weight_decay(self, X: np.ndarray, y: np.ndarray) -> float:
        """The L2 penalty this fit uses: the user's number, or the hold-out choice for "auto"."""
        vars(self).pop("weight_decay_scores_", None)
        decay = self._weight_decay_parameter()
        if isinstance(decay, str) and decay == "auto":
            return self._select_weight_decay(X, y)
        if isinstance(decay, bool) or not isinstance(decay, numbers.Real) or not decay >= 0:
            raise ValueError(f'optimizer__weight_decay must be a number >= 0 or "auto", got {decay!r}.')
        return float(decay)

    def _select_weight_decay(self, X: np.ndarray, y: np.ndarray) -> float:
        """Fit once per candidate penalty on the internal split (:mod:`.holdout`), keep the
        best on the hold-out (:func:`holdout.choose_weight_decay`); the caller then trains on all the data.

        Scores are those of the quantized network in the clear, which are the
        FHE-simulated ones (the forward pass reproduces the circuit's rounding).
        With the search on, :func:`search.tighten` makes this choice on its own split instead.
        """
        self.weight_decay_scores_ = {}
        if len(X) < AUTO_MIN_SAMPLES:
            return DEFAULT_WEIGHT_DECAY
        train, valid = holdout.internal_split(y, self._estimator_type == "classifier")
        rows = {}
        for decay in AUTO_WEIGHT_DECAYS:
            # One plain fit per penalty: a search per penalty would multiply the fit time.
            candidate = clone(self).set_params(optimizer__weight_decay=decay, verbose=0, tighten=False)
            candidate.fit(X[train], y[train])
            y_valid = candidate._encode_targets(y[valid], len(valid))  # the candidate's own encoding
            rows[decay] = holdout.holdout_rows(candidate, X[valid], y_valid)
        decay, self.weight_decay_scores_ = holdout.choose_weight_decay(rows)
        return decay

    def set_params(self, **params):
        """skorch's ``set_params``, keeping ``optimizer__*`` values as parameters.

        On a fitted net, skorch 0.11 only pushes ``optimizer__*`` into the live
        optimizer, so ``get_params`` and the next ``fit`` would still see the old
        value. "auto" is resolved at ``fit`` and never reaches a live optimizer.
        """
        optimizer_params = {key: value for key, value in params.items() if key.startswith("optimizer__")}
        live = {
            key: value
            for key, value in params.items()
            if not (key in optimizer_params and isinstance(value, str) and value == "auto")
        }
        super().set_params(**live)
        for key, value in optimizer_params.items():
            setattr(self, key, value)
            self._kwargs[key] = value
        return self

    def get_params_for_optimizer(self, prefix, named_parameters):
        """skorch's optimizer arguments, with the weight decay this fit resolved.

        The default (or "auto") penalty is only passed to optimizers that take one.
        """
        args, kwargs = super().get_params_for_optimizer(prefix, named_parameters)
        takes_decay = "weight_decay" in kwargs or "weight_decay" in inspect.signature(getattr(self, prefix)).parameters
        if takes_decay and hasattr(self, "weight_decay_"):
            kwargs["weight_decay"] = self.weight_decay_  # the user's number, or the one "auto" chose
        return args, kwargs

    def _forget_compilation(self) -> None:
        for name in ("quantized_module_", "fhe_circuit_", "circuit_report_", "compile_arguments_"):
            vars(self).pop(name, None)

    # ------------------------------------------------------------------ pruning guarantee
    def _finalize_pruning(self) -> None:
        """Make masks permanent and enforce the exact accumulator bound on integer weights."""
        module = self.module_.eval()
        dropped, removed = finalize.finalize_pruning(module, self._keep_counts(module), self.accumulator_budget_)
        if any(removed):
            self.initialize_optimizer()  # parameter shapes changed
        reports = finalize.build_reports(
            module,
            dropped,
            removed,
            layer_omegas=self.layer_omegas_,
            multiplier=self.n_hidden_neurons_multiplier,
            pruning_budget=self.pruning_budget,
        )
        self.pruning_report_ = reports.pruning_report
        self.max_nonzero_per_neuron_ = reports.max_nonzero_per_neuron
        self.accumulator_bits_ = reports.accumulator_bits
        self.accumulator_ranges_ = reports.accumulator_ranges

    # ------------------------------------------------------------------ persistence
    def __getstate__(self):
        """Pickle the network as weights, and never the compiled circuit (it holds keys)."""
        state = dict(vars(self))
        module = state.pop("module_", None)
        for name in ("optimizer_", "quantized_module_", "fhe_circuit_"):
            state.pop(name, None)
        state["_module_state"] = None if module is None else module.to_state()
        return state

    def __setstate__(self, state):
        module_state = state.pop("_module_state", None)
        vars(self).update(state)
        if module_state is not None:
            self.module_ = QuantMLP.from_state(module_state).to(self.device)
            self.initialize_optimizer()
        if hasattr(self, "circuit_report_"):
            # It was compiled: compile again (deterministic), keys are generated when needed.
            self.compile(**self.compile_arguments_)

    # ------------------------------------------------------------------ FHE
    def compile(
        self,
        X=None,
        *,
        rounding_threshold_bits: Any = _USE_PARAM,
        p_error: Any = _USE_PARAM,
        configuration=None,
    ):
        """Compile the fitted network to an FHE circuit with Concrete ML; returns self.

        ``X`` calibrates the circuit (defaults to a sample kept at ``fit``). The
        circuit's accumulators are made wide enough for the exact worst case of
        *any* in-range input, not only for ``X``. ``rounding_threshold_bits``
        and ``p_error`` default to the constructor's values.
        """
        self._check_fitted()
        calibration = self.calibration_X_ if X is None else self._validate_X(X, reset=False)
        if len(calibration) == 0:
            raise ValueError("compile needs at least one calibration sample; X is empty.")
        rounding = self._default_rounding() if rounding_threshold_bits is _USE_PARAM else rounding_threshold_bits
        rounding = fhe_backend.check_rounding_threshold_bits(rounding)
        self.compile_arguments_ = dict(
            X=None if X is None else calibration,
            rounding_threshold_bits=rounding,
            p_error=self.p_error if p_error is _USE_PARAM else p_error,
        )
        self.quantized_module_ = fhe_backend.compile_module(
            self.module_,
            np.concatenate([calibration, self.module_.extreme_inputs()]),
            [layer.weights for layer in self.module_.integer_layers()],
            self.accumulator_ranges_,
            rounding_threshold_bits=rounding,
            p_error=self.p_error if p_error is _USE_PARAM else p_error,
            configuration=configuration,
            verbose=bool(self.verbose > 1),
        )
        self.fhe_circuit_ = self.quantized_module_.fhe_circuit
        self.circuit_report_ = fhe_backend.circuit_report(self.quantized_module_)
        return self

    def _default_rounding(self):
        """The constructor's ``rounding_threshold_bits``, else the one the search chose."""
        if self.rounding_threshold_bits is not None:
            return self.rounding_threshold_bits
        return getattr(self, "rounding_threshold_bits_", None)

    def save(self, path) -> Path:
        """Save the compiled model for deployment: ``path/client`` and ``path/server``.

        See :mod:`fhe_estimators.deploy`; ``fhe_estimators.load(path)`` reads it back.
        """
        from .deploy import save

        return save(self, path)

    def _check_fitted(self) -> None:
        """``NotFittedError`` before ``fit`` (see :func:`validation.check_fitted`)."""
        validation.check_fitted(self)

    def _network_outputs(self, X, fhe: str | None) -> np.ndarray:
        """Raw network outputs (logits or scaled values) in the requested FHE mode.

        Inside the training loop, skorch's scoring callbacks predict on its own
        datasets: the torch network answers them, in the clear.
        """
        if self._in_training_loop:
            return skorch.NeuralNet.forward(self, X, training=False).cpu().numpy()
        self._check_fitted()
        mode = fhe_backend.check_fhe_mode(self.fhe if fhe is None else fhe)
        X = self._validate_X(X, reset=False)
        # Concrete's rounding changes what the network computes: with one, the clear mode
        # runs the compiled module too, so "disable", "simulate" and "execute" agree.
        needs_circuit = mode != "disable" or self._default_rounding() is not None
        if needs_circuit and not hasattr(self, "quantized_module_"):
            if self.verbose > 0:
                print(f"{type(self).__name__}: not compiled yet, compiling on the calibration sample kept at fit.")
            self.compile()
        if hasattr(self, "quantized_module_"):
            return fhe_backend.run(self.quantized_module_, X, mode, n_jobs=self.n_jobs, verbose=self.verbose > 0)
        self.module_.eval()
        with torch.no_grad():
            return self.module_(torch.from_numpy(X).to(self.device)).cpu().numpy()


def _skorch_kwargs(local_vars: dict) -> dict:
    """Constructor arguments destined for skorch (everything not ours)."""
    kwargs = dict(local_vars.pop("kwargs"))
    local_vars.pop("self")
    local_vars.pop("__class__", None)
    for name in _FHEMixin._fhe_params:
        local_vars.pop(name)
    return {**local_vars, **kwargs}


class NeuralNetClassifier(_FHEMixin, skorch.NeuralNetClassifier, BaseEstimator):
    """Quantized, pruned MLP classifier whose predictions can run in FHE.

    Parameters specific to FHE are documented in ``docs/user_guide.md``; every
    other parameter is skorch's, with its usual name and meaning. Defaults
    differ from skorch's where tabular data wants it: Adam, no internal
    validation split, silent training.
    """

    def __init__(
        self,
        hidden_layer_sizes=(32,),
        n_w_bits=3,
        n_a_bits=3,
        n_accum_bits=10,
        n_input_bits=None,
        n_hidden_neurons_multiplier=4.0,
        pruning="gradual",
        pruning_budget="exact",
        neuron_removal=0.0,
        pruning_start=0.1,
        pruning_end=0.6,
        pruning_frequency=1,
        lr_schedule="cosine",
        distillation=None,
        tighten=True,
        tighten_tolerance=0.01,
        rounding_threshold_bits=None,
        p_error=DEFAULT_P_ERROR,
        fhe="disable",
        n_jobs=None,
        random_state=None,
        *,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=0.01,
        max_epochs=100,
        batch_size=64,
        iterator_train=DataLoader,
        iterator_valid=DataLoader,
        dataset=Dataset,
        train_split=None,
        callbacks=None,
        predict_nonlinearity="auto",
        warm_start=False,
        verbose=0,
        device="cpu",
        classes=None,
        **kwargs,
    ):
        arguments = dict(locals())
        super().__init__(QuantMLP, **_skorch_kwargs(dict(arguments)))
        self._store_fhe_params(arguments)

    def _fit_targets(self, y: np.ndarray, n_samples: int, classes=None) -> np.ndarray:
        """Check the labels and learn their encoding.

        ``classes`` (``partial_fit``'s argument, else the constructor's) may list
        more labels than ``y`` has; every label of ``y`` must be among them.
        """
        y = validation.check_class_labels(y, n_samples)
        classes = self.classes if classes is None else classes
        encoder = LabelEncoder().fit(y if classes is None else np.asarray(classes))
        if classes is not None and len(encoder.classes_) < 2:
            raise ValueError(f"classes must list at least 2 distinct labels, got {classes!r}.")
        if len(encoder.classes_) < 2:
            raise ValueError(
                f"y contains only one class ({encoder.classes_[0]!r}); a classifier needs at least 2 classes."
            )
        self.label_encoder_ = encoder
        self.n_outputs_ = len(encoder.classes_)
        return self._encode_targets(y, n_samples)

    def _encode_targets(self, y: np.ndarray, n_samples: int) -> np.ndarray:
        y = validation.check_class_labels(y, n_samples)
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(
                f"y has labels {unknown.tolist()} that are not among the classes {self.classes_.tolist()}; "
                "list every label in the classes parameter (or in the first partial_fit's classes=...)."
            )
        return self.label_encoder_.transform(y).astype(np.int64)

    @property
    def classes_(self):
        if not hasattr(self, "label_encoder_"):
            raise AttributeError(f"{type(self).__name__} has no attribute 'classes_' before fit.")
        return self.label_encoder_.classes_

    def predict_proba(self, X, fhe: str | None = None) -> np.ndarray:
        """Class probabilities (rows sum to 1), computed in the given FHE mode."""
        logits = torch.from_numpy(np.asarray(self._network_outputs(X, fhe), dtype=np.float64))
        return torch.softmax(logits, dim=1).numpy()

    def predict(self, X, fhe: str | None = None) -> np.ndarray:
        """Class labels, computed in the given FHE mode (default: the ``fhe`` parameter)."""
        indices = np.argmax(self._network_outputs(X, fhe), axis=1)
        return indices if self._in_training_loop else self.classes_[indices]

    def score(self, X, y, sample_weight=None, fhe: str | None = None) -> float:
        """Accuracy of ``predict(X, fhe=fhe)``."""
        return accuracy_score(y, self.predict(X, fhe=fhe), sample_weight=sample_weight)


class NeuralNetRegressor(_FHEMixin, skorch.NeuralNetRegressor, BaseEstimator):
    """Quantized, pruned MLP regressor whose predictions can run in FHE.

    Targets are standardized for training and mapped back at prediction, so
    raw targets of any scale train well.
    """

    def __init__(
        self,
        hidden_layer_sizes=(32,),
        n_w_bits=3,
        n_a_bits=3,
        n_accum_bits=10,
        n_input_bits=None,
        n_hidden_neurons_multiplier=4.0,
        pruning="gradual",
        pruning_budget="exact",
        neuron_removal=0.0,
        pruning_start=0.1,
        pruning_end=0.6,
        pruning_frequency=1,
        lr_schedule="cosine",
        distillation=None,
        tighten=True,
        tighten_tolerance=0.01,
        rounding_threshold_bits=None,
        p_error=DEFAULT_P_ERROR,
        fhe="disable",
        n_jobs=None,
        random_state=None,
        *,
        criterion=torch.nn.MSELoss,
        optimizer=torch.optim.Adam,
        lr=0.01,
        max_epochs=100,
        batch_size=64,
        iterator_train=DataLoader,
        iterator_valid=DataLoader,
        dataset=Dataset,
        train_split=None,
        callbacks=None,
        predict_nonlinearity="auto",
        warm_start=False,
        verbose=0,
        device="cpu",
        **kwargs,
    ):
        arguments = dict(locals())
        super().__init__(QuantMLP, **_skorch_kwargs(dict(arguments)))
        self._store_fhe_params(arguments)

    def _more_tags(self):
        return {"multioutput": True}

    @property
    def predict_proba(self):
        # skorch's regressor has one (raw outputs, no FHE); a regressor has no probabilities.
        raise AttributeError(f"{type(self).__name__} has no predict_proba; use predict.")

    def _fit_targets(self, y: np.ndarray, n_samples: int, classes=None) -> np.ndarray:
        """Check the targets and learn their standardization."""
        y = validation.check_regression_targets(y, n_samples)
        self.target_ndim_ = y.ndim
        y2 = y.reshape(len(y), -1)
        self.n_outputs_ = y2.shape[1]
        self.target_mean_ = y2.mean(axis=0)
        scale = y2.std(axis=0)
        self.target_scale_ = np.where(scale > 0, scale, 1.0)
        return self._encode_targets(y, n_samples)

    def _encode_targets(self, y: np.ndarray, n_samples: int) -> np.ndarray:
        y2 = validation.check_regression_targets(y, n_samples).reshape(len(y), -1)
        if y2.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y2.shape[1]} target columns but the model was fitted with {self.n_outputs_}.")
        return ((y2 - self.target_mean_) / self.target_scale_).astype(np.float32)

    def predict(self, X, fhe: str | None = None) -> np.ndarray:
        """Predicted targets, shaped like ``y`` at fit, in the given FHE mode."""
        outputs = self._network_outputs(X, fhe)
        if self._in_training_loop:
            return outputs  # scaled, like the targets skorch's callbacks compare them with
        outputs = outputs * self.target_scale_ + self.target_mean_
        return outputs.ravel() if self.target_ndim_ == 1 else outputs

    def score(self, X, y, sample_weight=None, fhe: str | None = None) -> float:
        """R² of ``predict(X, fhe=fhe)``."""
        return r2_score(y, self.predict(X, fhe=fhe), sample_weight=sample_weight)
