"""The hold-out's candidate networks trained ``n_jobs`` processes at a time.

A fit with ``optimizer__weight_decay="auto"`` trains several networks on the same rows before it
chooses one (:mod:`.regularization`): up to four penalties, then up to four sparse first layers, then
``n_init - 1`` more initializations; on a default digits fit they are nine tenths of the time. The
search (:mod:`.search`) then derives up to eight cheaper networks from the chosen one, each
fine-tuned. Each is independent of the others and starts from a seed drawn in order
(:func:`fit_all`; with ``random_state=None`` the fit draws one seed for all, see
:func:`~.regularization.draw_unseeded_fit_seed`), so a process trains the network the sequential
fit trains and the choice is the same (up to floating-point summation order: a worker runs torch
on one thread).

Processes, not threads: training is mostly Python (skorch's loop, brevitas' quantizers), which holds
the GIL, and the torch random generator that seeds each fit is one per process. Inside a joblib
worker (a ``GridSearchCV(n_jobs=...)`` already using the cores) the candidates train one at a time.
"""

from __future__ import annotations

import warnings
from typing import Callable

import joblib
import torch

from .runtime import check_n_jobs


def candidate_processes(n_jobs: int | None, n_fits: int) -> int:
    """Processes for ``n_fits`` candidate fits: ``n_jobs`` as joblib reads it (None: 1), at most
    one per fit, and 1 inside a joblib worker."""
    processes = check_n_jobs(n_jobs, n_fits)
    backend, _ = joblib.parallel.get_active_backend()
    if getattr(backend, "nesting_level", 0):
        return 1
    return processes


def fit_all(
    fit: Callable, arguments: list[dict], n_jobs: int | None, stop_after: Callable[[list], bool] | None = None
) -> list:
    """``[fit(**each) for each in arguments]``, in input order, ``n_jobs`` processes at a time.

    Each fit starts from a torch seed drawn here, in input order, whichever process runs it: a fit
    that seeds itself is unaffected, and one that does not (the search's fine-tunes, which draw
    only with a user's ``iterator_train__shuffle=True``) draws the same in a worker as in order.

    ``stop_after(results)`` (the results so far, in order) ends the fits at the first prefix it is
    true for; they then run one batch of ``n_jobs`` at a time, and a result past that prefix (from
    the same batch) is dropped, so what returns does not depend on ``n_jobs``. Seeds are drawn for
    every argument either way, so what follows draws the same too."""
    seeds = torch.randint(0, 2**31 - 1, (len(arguments),)).tolist()
    after_the_draw = torch.get_rng_state()
    processes = candidate_processes(n_jobs, len(arguments))
    tasks = list(zip(seeds, arguments))
    batch = len(tasks) if stop_after is None else processes
    results: list = []
    try:
        for start in range(0, len(tasks), max(batch, 1)):
            results += _run(fit, tasks[start : start + batch], processes)
            for end in range(start + 1, len(results) + 1):
                if stop_after is not None and stop_after(results[:end]):
                    return results[:end]
        return results
    finally:
        torch.set_rng_state(after_the_draw)  # as the fits in workers leave it: what follows draws the same


def _run(fit: Callable, tasks: list[tuple[int, dict]], processes: int) -> list:
    """Each ``(seed, arguments)`` of ``tasks`` fitted, in order: here, or in ``processes`` workers."""
    if processes == 1 or len(tasks) == 1:
        return [_seeded_fit(fit, seed, each) for seed, each in tasks]
    work = (joblib.delayed(_fit_in_worker)(fit, seed, each) for seed, each in tasks)
    return joblib.Parallel(n_jobs=processes, backend="loky")(work)


def _seeded_fit(fit: Callable, seed: int, arguments: dict):
    torch.manual_seed(seed)
    return fit(**arguments)


def _fit_in_worker(fit: Callable, seed: int, arguments: dict):
    """:func:`_seeded_fit` in a worker process, without the warning brevitas' first forward raises
    there (torch's "Named tensors ... experimental", which the parent never shows). Other warnings
    of a fit in a worker stay in the worker."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Named tensors", category=UserWarning)
        return _seeded_fit(fit, seed, arguments)
