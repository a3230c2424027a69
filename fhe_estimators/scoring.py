"""Grid search that weighs FHE cost: a latency scorer and a "fastest within tolerance" refit rule.

::

    search = GridSearchCV(
        NeuralNetClassifier(),
        {"n_accum_bits": [7, 8, 10], "hidden_layer_sizes": [(16,), (32,)]},
        scoring={"accuracy": "accuracy", "latency": latency_scorer},
        refit=fastest_within(0.01, score="accuracy", cost="latency"),
    )

``latency_scorer`` prices each fitted candidate with the cost model (no
compilation, no encryption), so it is as cheap as an accuracy score.
"""

from __future__ import annotations

import numbers
from typing import Callable

import numpy as np

from .cost import estimate_cost


def latency_scorer(estimator, X=None, y=None) -> float:
    """Minus the predicted encrypted latency per sample, in seconds (higher is better, as scikit-learn wants).

    Works on a fitted estimator or a ``Pipeline`` ending in one; ``X`` and ``y`` are
    not needed (the cost depends on the circuit, not on the data) but accepted so it
    can be passed as ``scoring=``.
    """
    model = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    if not hasattr(model, "accumulator_bits_"):
        raise TypeError(f"latency_scorer scores fitted fhe_estimators models, got {type(model).__name__}.")
    return -float(estimate_cost(model).latency_s)


def fastest_within(tolerance: float = 0.01, *, score: str = "score", cost: str = "latency") -> Callable[[dict], int]:
    """A ``refit=`` callable: the cheapest candidate whose mean ``score`` is within ``tolerance`` of the best.

    ``score`` and ``cost`` name entries of the ``scoring`` dict; the cost scorer must be
    "higher is better" (as :func:`latency_scorer` is). Ties go to the better score.
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real) or tolerance < 0:
        raise ValueError(f"tolerance must be a number >= 0, got {tolerance!r}.")

    def best_index(cv_results: dict) -> int:
        for name in (score, cost):
            if f"mean_test_{name}" not in cv_results:
                raise ValueError(
                    f"fastest_within needs a scorer named {name!r} in the search's scoring dict; "
                    f"found {sorted(key[len('mean_test_'):] for key in cv_results if key.startswith('mean_test_'))}."
                )
        scores = np.asarray(cv_results[f"mean_test_{score}"], dtype=float)
        costs = np.asarray(cv_results[f"mean_test_{cost}"], dtype=float)
        feasible = np.flatnonzero(scores >= np.nanmax(scores) - tolerance)
        return int(max(feasible, key=lambda index: (costs[index], scores[index])))

    return best_index
