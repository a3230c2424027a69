"""scikit-learn estimators (built on skorch) that train pruned, quantized MLPs for FHE.

``fit`` trains with a per-neuron pruning callback, then *finalizes*: the masks
become permanent and the exact accumulator bound is checked on the integer
weights, dropping weights where a neuron could overflow ``n_accum_bits``.
``compile`` turns the result into a Concrete circuit; ``predict(X, fhe=...)``
runs it in the clear, simulated, or encrypted.

The steps live in their own modules, in the order the data takes them (docs/architecture.md):
:mod:`.validation`, :mod:`.targets`, :mod:`.callbacks` (pruning schedule, training scores),
:mod:`.finalize` (exact check, neuron removal, reports), then compile in :mod:`.compilation`,
run in :mod:`.runtime` (the estimators' side of both: :mod:`.fhe_methods`) and decode outputs in :mod:`.outputs`. The parameters are listed in
:mod:`.parameters`; skorch's plumbing is :mod:`.skorch_params`, pickling :mod:`.persistence`.
This module holds fit and predict.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import skorch
import torch
from sklearn.base import BaseEstimator, _fit_context
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import check_random_state

from . import distillation, finalize, search, targets, validation
from .budget import omega
from .fhe_methods import FHEMethodsMixin
from .input_grid import column_bounds, free_input_bits, resolve_input_scale
from .budget_policies import make_budget_policy
from .holdout import AUTO_WEIGHT_DECAYS  # noqa: F401  (importable here as before)
from .cost import estimate_cost
from .callbacks import fhe_callbacks, float_epochs, valid_accuracy
from .module import QuantMLP
from .outputs import OutputDecoder
from .parameters import estimator_init
from .persistence import PicklingMixin
from .skorch_params import SkorchParametersMixin
from .skorch_speed import FastBatchLoopMixin
from .regularization import HoldoutChoice, Regularization, given_first_layer_density, given_hidden_sizes
from .regularization import resolve_regularization
from .regularization import draw_unseeded_fit_seed, fit_seed, initialization_seed, numpy_random_state
from .validation import PRUNING_BUDGETS  # noqa: F401  (importable here as before)

#: Rows of the training data kept to calibrate ``compile`` when no X is given.
CALIBRATION_ROWS = 500

#: Fraction of training over which quantizers measure their input ranges.
STATS_FRACTION = 0.4

class _FHEMixin(FastBatchLoopMixin, SkorchParametersMixin, PicklingMixin, FHEMethodsMixin):
    """Everything the classifier and the regressor share: validation, training, pruning (compile and
    the FHE modes: :class:`~.fhe_methods.FHEMethodsMixin`)."""

    #: ``optimizer__weight_decay`` when the user does not set it (see :mod:`.regularization`).
    _default_weight_decay: float | str = "auto"

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "accumulator_bits_")

    # ------------------------------------------------------------------ validation
    #: What each of our parameters may be (scikit-learn's constraint language), checked at fit.
    _parameter_constraints: dict = validation.PARAMETER_CONSTRAINTS

    def _validate_params(self) -> None:
        """scikit-learn's hook (called by ``_fit_context``), with our messages (see :mod:`.validation`)."""
        validation.validate_parameters(self)

    def _validate_hyperparameters(self) -> None:
        """The rules between parameters (see :func:`validation.validate_hyperparameters`)."""
        validation.validate_hyperparameters(self)

    def _validate_X(self, X, *, reset: bool) -> np.ndarray:
        """``X`` checked and as float32 (see :func:`validation.validate_X`)."""
        return validation.validate_X(self, X, reset=reset)

    def _check_fitted(self) -> None:
        """``NotFittedError`` before ``fit`` (see :func:`validation.check_fitted`)."""
        validation.check_fitted(self)

    # ------------------------------------------------------------------ fit entry points
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, **fit_params):
        """Validate, train with per-neuron pruning, and enforce the accumulator bound.

        With ``warm_start=True``, a fitted model continues training instead (see ``partial_fit``).
        """
        validation.check_no_fit_params(self, "fit", fit_params)
        if self.warm_start and self.__sklearn_is_fitted__():
            return self._continue_training(X, y, **fit_params)
        return self._fit_from_scratch(X, y, **fit_params)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, **fit_params):
        """Train a fitted model ``max_epochs`` more epochs on ``X, y``, keeping its pruning.

        The masks stay fixed (no weight pruned so far comes back) and the exact
        accumulator check runs again, so the FHE guarantee still holds. On an
        unfitted model this is ``fit``; ``classes`` may then list every label.
        """
        validation.check_no_fit_params(self, "partial_fit", fit_params)
        if self.__sklearn_is_fitted__():
            return self._continue_training(X, y, **fit_params)
        return self._fit_from_scratch(X, y, classes=classes, **fit_params)

    def _fit_from_scratch(self, X, y, classes=None, **fit_params):
        self._validate_hyperparameters()
        X = self._validate_X(X, reset=True)
        y = self._fit_targets(validation.check_y_given(y), len(X), classes)
        self._forget_compilation()
        self.input_bounds_ = column_bounds(X)  # before the search: its fits on parts share it
        self._unseeded_fit_seed = draw_unseeded_fit_seed(self)
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

    def _training_loop(self, X: np.ndarray, y: np.ndarray, **fit_params) -> None:
        """skorch's training loop on the initialized net (callbacks, history, pruning).

        Its callbacks see encoded labels and standardized targets; they score the torch
        network (``net.forward``), never ``predict`` (see :mod:`.callbacks`).
        """
        # New rows of partial_fit are read as predictions read them: within the first fit's range.
        skorch.NeuralNet.partial_fit(self, self._read_inputs(X), y, **fit_params)

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
    def _hidden_sizes(self) -> tuple[int, ...]:
        """The hidden widths this fit trains: ``hidden_layer_sizes_`` (a model pickled before it was
        kept: the parameter's)."""
        return tuple(getattr(self, "hidden_layer_sizes_", None) or given_hidden_sizes(self))

    def initialize_module(self):
        """Build the quantized MLP from the estimator's hyperparameters and the data's shape."""
        self.module_ = QuantMLP(
            input_dim=self.n_features_in_,
            output_dim=self.n_outputs_,
            hidden_layer_sizes=self._hidden_sizes(),
            n_w_bits=self.n_w_bits,
            n_a_bits=self.n_a_bits,
            n_input_bits=self.n_input_bits_,
            input_scale=self.input_scale_,
            input_bounds=self.input_bounds_,
            collect_stats_steps=self._stats_steps(),
        ).to(self.device)
        return self

    def _stats_steps(self) -> int:
        """Quantizer range statistics over the first 40% of quantized training (at least one batch)."""
        batches_per_epoch = max(1, int(np.ceil(self.n_train_samples_ / max(1, self.batch_size))))
        quantized_epochs = self.max_epochs - float_epochs(self)
        return max(1, round(STATS_FRACTION * quantized_epochs * batches_per_epoch))

    def get_default_callbacks(self):
        # skorch's valid_acc compares predict() with the targets; ours scores the encoded labels.
        defaults = [
            (name, valid_accuracy() if name == "valid_acc" else callback)
            for name, callback in super().get_default_callbacks()
        ]
        return [*defaults, *fhe_callbacks(self)]

    def _set_accumulator_budget(self, n_bits: int) -> None:
        """Make ``n_bits`` (≤ ``n_accum_bits``) the budget pruning and the exact check enforce.

        Ω follows it: the first layer's from the input bits, the others' from ``n_a_bits``.
        """
        self.accumulator_budget_ = int(n_bits)
        self.omega_ = omega(n_bits, self.n_w_bits, self.n_a_bits)
        first_omega = omega(n_bits, self.n_w_bits, self.n_input_bits_)
        self.layer_omegas_ = [first_omega] + [self.omega_] * len(self._hidden_sizes())

    def _fit_prepared(
        self,
        X: np.ndarray,
        y: np.ndarray,
        regularization: Regularization | None = None,
        initialization: int = 0,
        input_bits: int | None = None,
        hidden_sizes: tuple | None = None,
        **fit_params,
    ):
        """Shared tail of ``fit``: budget, seed, skorch training loop, finalize.

        ``regularization`` overrides the parameters' (numbers, or "auto" resolved on a hold-out,
        which then also picks the ``initialization``: which of ``n_init`` seeds torch draws from,
        and may pick a finer input than the width rule's, ``input_bits``, and for
        ``hidden_layer_sizes="auto"`` the ``hidden_sizes``).
        """
        for stale in HoldoutChoice.SCORE_ATTRIBUTES.values():
            vars(self).pop(stale, None)
        if regularization is None:
            choice = resolve_regularization(self, X, y)
            regularization, initialization, input_bits = choice.setting, choice.initialization, choice.input_bits
            hidden_sizes = choice.hidden_sizes
            vars(self).update(choice.score_attributes())
        if not hasattr(self, "input_bounds_"):
            self.input_bounds_ = column_bounds(X)
        self.initialization_ = int(initialization)
        self.hidden_layer_sizes_ = given_hidden_sizes(self) if hidden_sizes is None else tuple(hidden_sizes)
        self.weight_decay_ = float(regularization.weight_decay)
        self.first_layer_density_ = float(regularization.first_layer_density)
        # A sparse first layer may leave room for a finer input; the hold-out may choose one too.
        self.n_input_bits_ = free_input_bits(self, X) if input_bits is None else int(input_bits)
        self.input_scale_ = resolve_input_scale(self.input_scale, X, self.n_input_bits_)
        self._set_accumulator_budget(self.n_accum_bits)
        self.n_train_samples_ = len(X)
        self.distillation_teacher_ = distillation.fit_teacher(self, X, y) if self.distillation else None
        rng = check_random_state(numpy_random_state(self))
        seed = fit_seed(self, rng)
        if seed is not None:
            torch.manual_seed(initialization_seed(seed, self.initialization_))
        self.calibration_X_ = self._calibration_sample(X, rng)
        self._forget_compilation()
        self.initialize()
        self._training_loop(X, y, **fit_params)
        self._finalize_pruning()
        return self

    def _calibration_sample(self, X: np.ndarray, rng=None) -> np.ndarray:
        """Up to ``CALIBRATION_ROWS`` rows of ``X`` (in order) kept to calibrate ``compile``."""
        rng = check_random_state(numpy_random_state(self)) if rng is None else rng
        rows = rng.choice(len(X), size=min(len(X), CALIBRATION_ROWS), replace=False)
        return X[np.sort(rows)]

    def _forget_compilation(self) -> None:
        for name in ("quantized_module_", "fhe_circuit_", "circuit_report_", "compile_arguments_"):
            vars(self).pop(name, None)

    # ------------------------------------------------------------------ pruning guarantee
    def _budget_policy(self):
        """The ``pruning_budget`` policy with this fit's multiplier and first-layer density (before
        a fit resolves it: the parameter's number, dense for "auto")."""
        density = getattr(self, "first_layer_density_", None) or given_first_layer_density(self)
        return make_budget_policy(self.pruning_budget, self.n_hidden_neurons_multiplier, density)

    def _finalize_pruning(self, layer_bits: Sequence[int] | None = None) -> None:
        """Make masks permanent and enforce the exact accumulator bound on integer weights (:mod:`.finalize`);
        ``layer_bits`` caps each layer's width below the budget too."""
        policy = self._budget_policy()
        module = self.module_.eval()
        reports = finalize.finalize_and_report(
            module, policy, self.accumulator_budget_, self.layer_omegas_, layer_bits=layer_bits
        )
        if reports.neurons_removed:
            self.initialize_optimizer()  # parameter shapes changed
        for name, value in reports.fitted_attributes().items():
            setattr(self, name, value)


class NeuralNetClassifier(_FHEMixin, skorch.NeuralNetClassifier, BaseEstimator):
    """Quantized, pruned MLP classifier whose predictions can run in FHE.

    Parameters specific to FHE are documented in ``docs/user_guide.md``; every
    other parameter is skorch's, with its usual name and meaning. Defaults
    differ from skorch's where tabular data wants it: Adam, no internal
    validation split, silent training.
    """

    __init__ = estimator_init(skorch.NeuralNetClassifier, QuantMLP, criterion=torch.nn.CrossEntropyLoss, classes=None)

    def _fit_targets(self, y: np.ndarray, n_samples: int, classes=None) -> np.ndarray:
        """Check the labels and learn their encoding (``classes``: ``partial_fit``'s, else the constructor's)."""
        self.label_encoder_, encoded = targets.fit_labels(y, n_samples, self.classes if classes is None else classes)
        self.n_outputs_ = len(self.label_encoder_.classes_)
        return encoded

    def _encode_targets(self, y: np.ndarray, n_samples: int) -> np.ndarray:
        return targets.encode_labels(self.label_encoder_, y, n_samples)

    @property
    def classes_(self):
        if not hasattr(self, "label_encoder_"):
            raise AttributeError(f"{type(self).__name__} has no attribute 'classes_' before fit.")
        return self.label_encoder_.classes_

    def predict_proba(self, X, fhe: str | None = None) -> np.ndarray:
        """Class probabilities (rows sum to 1), computed in the given FHE mode."""
        raw = self._network_outputs(X, fhe)  # first: it raises NotFittedError before fit
        return OutputDecoder.from_estimator(self).proba(raw)

    def predict(self, X, fhe: str | None = None) -> np.ndarray:
        """Class labels, computed in the given FHE mode (default: the ``fhe`` parameter)."""
        raw = self._network_outputs(X, fhe)
        return OutputDecoder.from_estimator(self).labels(raw)

    def score(self, X, y, sample_weight=None, fhe: str | None = None) -> float:
        """Accuracy of ``predict(X, fhe=fhe)``."""
        return accuracy_score(y, self.predict(X, fhe=fhe), sample_weight=sample_weight)


class NeuralNetRegressor(_FHEMixin, skorch.NeuralNetRegressor, BaseEstimator):
    """Quantized, pruned MLP regressor whose predictions can run in FHE.

    Targets are standardized for training and mapped back at prediction, so
    raw targets of any scale train well.
    """

    __init__ = estimator_init(skorch.NeuralNetRegressor, QuantMLP, criterion=torch.nn.MSELoss)

    def _more_tags(self):
        return {"multioutput": True}

    @property
    def predict_proba(self):
        # skorch's regressor has one (raw outputs, no FHE); a regressor has no probabilities.
        raise AttributeError(f"{type(self).__name__} has no predict_proba; use predict.")

    def _fit_targets(self, y: np.ndarray, n_samples: int, classes=None) -> np.ndarray:
        """Check the targets and learn their standardization."""
        scaling, encoded = targets.fit_values(y, n_samples)
        self.target_mean_, self.target_scale_, self.target_ndim_ = scaling.mean, scaling.scale, scaling.ndim
        self.n_outputs_ = scaling.n_outputs
        return encoded

    def _encode_targets(self, y: np.ndarray, n_samples: int) -> np.ndarray:
        scaling = targets.TargetScaling(self.target_mean_, self.target_scale_, self.target_ndim_)
        return targets.encode_values(scaling, y, n_samples)

    def predict(self, X, fhe: str | None = None) -> np.ndarray:
        """Predicted targets, shaped like ``y`` at fit, in the given FHE mode."""
        raw = self._network_outputs(X, fhe)  # first: it raises NotFittedError before fit
        return OutputDecoder.from_estimator(self).values(raw)

    def score(self, X, y, sample_weight=None, fhe: str | None = None) -> float:
        """R² of ``predict(X, fhe=fhe)``."""
        return r2_score(y, self.predict(X, fhe=fhe), sample_weight=sample_weight)
