"""Targets as the network trains on them: class labels as indices, regression targets standardized.

The inverse (network outputs back to labels, probabilities or values) is :mod:`.outputs`.
Each ``fit_*`` checks ``y`` (see :mod:`.validation`), learns the encoding and returns it with the
encoded targets; each ``encode_*`` applies a learned encoding to new targets (``partial_fit``,
the hold-out of :mod:`.holdout`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.preprocessing import LabelEncoder

from .validation import check_class_labels, check_regression_targets


def fit_labels(y: np.ndarray, n_samples: int, classes=None) -> tuple[LabelEncoder, np.ndarray]:
    """The label encoding of ``y`` (or of ``classes``, which may list more labels than ``y`` has),
    and ``y`` encoded."""
    y = check_class_labels(y, n_samples)
    encoder = LabelEncoder().fit(y if classes is None else np.asarray(classes))
    if classes is not None and len(encoder.classes_) < 2:
        raise ValueError(f"classes must list at least 2 distinct labels, got {classes!r}.")
    if len(encoder.classes_) < 2:
        raise ValueError(f"y contains only one class ({encoder.classes_[0]!r}); a classifier needs at least 2 classes.")
    return encoder, encode_labels(encoder, y, n_samples)


def encode_labels(encoder: LabelEncoder, y: np.ndarray, n_samples: int) -> np.ndarray:
    """Class indices of ``y``; every label must be one the encoder knows."""
    y = check_class_labels(y, n_samples)
    unknown = np.setdiff1d(y, encoder.classes_)
    if unknown.size:
        raise ValueError(
            f"y has labels {unknown.tolist()} that are not among the classes {encoder.classes_.tolist()}; "
            "list every label in the classes parameter (or in the first partial_fit's classes=...)."
        )
    return encoder.transform(y).astype(np.int64)


@dataclass
class TargetScaling:
    """Standardization of regression targets (a constant column keeps scale 1)."""

    mean: np.ndarray
    scale: np.ndarray
    ndim: int

    @property
    def n_outputs(self) -> int:
        return len(self.mean)


def fit_values(y: np.ndarray, n_samples: int) -> tuple[TargetScaling, np.ndarray]:
    """The standardization of the regression targets ``y``, and ``y`` standardized (2-D)."""
    y = check_regression_targets(y, n_samples)
    columns = y.reshape(len(y), -1)
    scale = columns.std(axis=0)
    scaling = TargetScaling(columns.mean(axis=0), np.where(scale > 0, scale, 1.0), y.ndim)
    return scaling, encode_values(scaling, y, n_samples)


def encode_values(scaling: TargetScaling, y: np.ndarray, n_samples: int) -> np.ndarray:
    """``y`` standardized as at fit, one column per output."""
    columns = check_regression_targets(y, n_samples).reshape(len(y), -1)
    if columns.shape[1] != scaling.n_outputs:
        raise ValueError(f"y has {columns.shape[1]} target columns but the model was fitted with {scaling.n_outputs}.")
    return ((columns - scaling.mean) / scaling.scale).astype(np.float32)
