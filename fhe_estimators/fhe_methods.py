"""The estimators' FHE side: compile the fitted network, and compute outputs in a chosen mode.

:mod:`.compilation` turns a trained network into a Concrete circuit and :mod:`.runtime` runs one;
this mixin is what the estimators call: ``compile`` (with the exact accumulator ranges of the fit),
``save`` for deployment, and the outputs ``predict`` and the hold-out scores read in the clear,
simulated or encrypted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import compilation, runtime
from .input_grid import clip_to_bounds

_USE_PARAM = object()  # "take the constructor's value" for compile() arguments


class FHEMethodsMixin:
    """``compile``, ``save`` and the FHE modes of a fitted estimator (mixed into both estimators)."""

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
        calibration = self.calibration_X_ if X is None else self._read_inputs(self._validate_X(X, reset=False))
        if len(calibration) == 0:
            raise ValueError("compile needs at least one calibration sample; X is empty.")
        rounding = self._default_rounding() if rounding_threshold_bits is _USE_PARAM else rounding_threshold_bits
        rounding = compilation.check_rounding_threshold_bits(rounding)
        self.compile_arguments_ = dict(
            X=None if X is None else calibration,
            rounding_threshold_bits=rounding,
            p_error=self.p_error if p_error is _USE_PARAM else p_error,
        )
        self.quantized_module_ = compilation.compile_module(
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
        self.circuit_report_ = compilation.circuit_report(self.quantized_module_)
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

    def _network_outputs(self, X, fhe: str | None) -> np.ndarray:
        """Raw network outputs (logits or scaled values) in the requested FHE mode
        (:class:`.outputs.OutputDecoder` turns them into predictions)."""
        self._check_fitted()
        mode = runtime.check_fhe_mode(self.fhe if fhe is None else fhe)
        return self._validated_outputs(self._validate_X(X, reset=False), mode)

    def _read_inputs(self, X: np.ndarray) -> np.ndarray:
        """Validated rows as the network reads them: clipped to the training range
        (:func:`~.input_grid.clip_to_bounds`; models fitted before it was kept read them as given)."""
        return clip_to_bounds(X, getattr(self, "input_bounds_", None))

    def _validated_outputs(self, X: np.ndarray, mode: str) -> np.ndarray:
        """Raw outputs on rows ``fit`` already validated (float32): the internal hold-out scores
        read these, without checking them again (a fit on a DataFrame would warn that the
        arrays have no feature names)."""
        # Concrete's rounding changes what the network computes: with one, the clear mode
        # runs the compiled module too, so "disable", "simulate" and "execute" agree.
        X = self._read_inputs(X)
        needs_circuit = mode != "disable" or self._default_rounding() is not None
        if needs_circuit and not hasattr(self, "quantized_module_"):
            if self.verbose > 0:
                print(f"{type(self).__name__}: not compiled yet, compiling on the calibration sample kept at fit.")
            self.compile()
        if hasattr(self, "quantized_module_"):
            return runtime.run(self.quantized_module_, X, mode, n_jobs=self.n_jobs, verbose=self.verbose > 0)
        return self.module_.outputs_on(X)
