"""Turn the network's raw outputs into what ``predict`` / ``predict_proba`` return.

The network outputs one logit per class (classifier) or one standardized value
per target column (regressor). :class:`OutputDecoder` holds what maps them
back, the classes or the target's mean, scale and shape, and is the one place
that does it: the estimators decode their outputs with it, and a deployed
client (:mod:`.deploy`) decodes decrypted outputs with the same object, read
from the ``classes`` / ``target`` entry of its ``estimator.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class OutputDecoder:
    """A classifier's ``classes`` or a regressor's target ``mean``, ``scale`` and ``ndim``."""

    classes: np.ndarray | None = None
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    ndim: int = 1

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_estimator(cls, estimator) -> "OutputDecoder":
        """The decoder of a fitted estimator (its arrays, not copies)."""
        if estimator._estimator_type == "classifier":
            return cls(classes=estimator.classes_)
        return cls(mean=estimator.target_mean_, scale=estimator.target_scale_, ndim=int(estimator.target_ndim_))

    @classmethod
    def from_dict(cls, info: dict) -> "OutputDecoder":
        """The decoder written by :meth:`to_dict` (the ``classes`` or ``target`` entry of ``estimator.json``)."""
        try:
            if "classes" in info:
                classes = info["classes"]
                return cls(classes=np.asarray(classes["values"], dtype=np.dtype(classes["dtype"])))
            target = info["target"]
            return cls(mean=np.asarray(target["mean"]), scale=np.asarray(target["scale"]), ndim=int(target["ndim"]))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"Malformed output metadata (classes or target): {error!r}") from None

    def to_dict(self) -> dict:
        """JSON-ready: ``{"classes": {"values", "dtype"}}`` or ``{"target": {"mean", "scale", "ndim"}}``."""
        if self.is_classifier:
            return {"classes": {"values": self.classes.tolist(), "dtype": self.classes.dtype.str}}
        return {"target": {"mean": self.mean.tolist(), "scale": self.scale.tolist(), "ndim": int(self.ndim)}}

    # ---------------------------------------------------------------- decoding
    @property
    def is_classifier(self) -> bool:
        return self.classes is not None

    @property
    def n_outputs(self) -> int:
        """Outputs of the network: one logit per class, or one value per target column."""
        return len(self.classes) if self.is_classifier else len(self.mean)

    def proba(self, raw) -> np.ndarray:
        """Class probabilities (softmax of the logits, in float64; rows sum to 1)."""
        self._need_classifier("proba")
        logits = torch.from_numpy(np.asarray(raw, dtype=np.float64))
        return torch.softmax(logits, dim=1).numpy()

    def labels(self, raw) -> np.ndarray:
        """Class labels (the classes' own dtype) of the largest logits."""
        self._need_classifier("labels")
        return self.classes[np.argmax(raw, axis=1)]

    def values(self, raw) -> np.ndarray:
        """Targets on their original scale, shaped like ``y`` at fit (1-D if it was)."""
        if self.is_classifier:
            raise AttributeError("values is for regressors; this decoder is a classifier's (use labels).")
        values = raw * self.scale + self.mean
        return values.ravel() if self.ndim == 1 else values

    def predictions(self, raw) -> np.ndarray:
        """What ``predict`` returns: labels or values."""
        return self.labels(raw) if self.is_classifier else self.values(raw)

    def _need_classifier(self, method: str) -> None:
        if not self.is_classifier:
            raise AttributeError(f"{method} is for classifiers; this decoder is a regressor's (use values).")
