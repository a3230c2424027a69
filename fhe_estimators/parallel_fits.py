"""The hold-out's candidate networks trained ``n_jobs`` processes at a time.

A fit with ``optimizer__weight_decay="auto"`` trains several networks on the same rows before it
chooses one (:mod:`.regularization`): four penalties, then up to four sparse first layers, then
``n_init - 1`` more initializations; on a default digits fit they are nine tenths of the time. The
search (:mod:`.search`) then derives up to eight cheaper networks from the chosen one, each
fine-tuned. Each of these is independent of the others and seeded (or derived from the same
trained network), so a process trains exactly the network the sequential fit trains, and the
choice is the same.

Processes, not threads: training is mostly Python (skorch's loop, brevitas' quantizers), which holds
the GIL, and the torch random generator that seeds each fit is one per process. Inside a joblib
worker (a ``GridSearchCV(n_jobs=...)`` already using the cores) the candidates train one at a time.
"""

from __future__ import annotations

import warnings
from typing import Callable

import joblib

from .runtime import check_n_jobs


def candidate_processes(n_jobs: int | None, n_fits: int) -> int:
    """Processes for ``n_fits`` candidate fits: ``n_jobs`` as joblib reads it (None: 1), at most
    one per fit, and 1 inside a joblib worker."""
    processes = check_n_jobs(n_jobs, n_fits)
    backend, _ = joblib.parallel.get_active_backend()
    if getattr(backend, "nesting_level", 0):
        return 1
    return processes


def fit_all(fit: Callable, arguments: list[dict], n_jobs: int | None) -> list:
    """``[fit(**each) for each in arguments]``, in input order, ``n_jobs`` processes at a time."""
    processes = candidate_processes(n_jobs, len(arguments))
    if processes == 1:
        return [fit(**each) for each in arguments]
    return joblib.Parallel(n_jobs=processes, backend="loky")(joblib.delayed(_fit_in_worker)(fit, each) for each in arguments)


def _fit_in_worker(fit: Callable, arguments: dict):
    """``fit(**arguments)`` in a worker process, without the warning brevitas' first forward
    raises there (torch's "Named tensors ... experimental", which the parent never shows)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Named tensors", category=UserWarning)
        return fit(**arguments)
