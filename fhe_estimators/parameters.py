"""The estimators' constructor parameters, listed once.

scikit-learn reads an estimator's parameters from the signature of its ``__init__``
(``get_params``, ``clone``, its estimator checks), so each estimator needs an explicit
signature. Both estimators share almost every parameter; rather than write the list twice
(and a third time to tell ours from skorch's), :func:`estimator_init` builds each
``__init__`` from the lists below and gives it that explicit signature
(``inspect.signature(NeuralNetClassifier)`` shows it, as does ``help``).

Every parameter is keyword-only, as in scikit-learn's own estimators: a parameter added
to the list can never shift another's position. Ours come first, then skorch's, which keep
skorch's names and meanings. Their meanings: docs/user_guide.md (ours) and skorch's docs.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
from skorch.dataset import Dataset
from torch.utils.data import DataLoader

from .compilation import DEFAULT_P_ERROR

#: Our parameters (the FHE bit budget, pruning, the search, FHE execution), in signature order.
FHE_PARAMETERS: dict[str, Any] = {
    "hidden_layer_sizes": "auto",
    "n_w_bits": 3,
    "n_a_bits": 3,
    "n_accum_bits": 10,
    "n_input_bits": None,
    "input_scale": "learned",
    "n_hidden_neurons_multiplier": 4.0,
    "pruning": "gradual",
    "pruning_budget": "exact",
    "neuron_removal": 0.0,
    "first_layer_density": "auto",
    "n_init": 1,
    "pruning_start": 0.1,
    "pruning_end": 0.6,
    "pruning_frequency": 1,
    "lr_schedule": "cosine",
    "float_pretraining": 0.3,
    "weight_averaging": 0.0,
    "distillation": None,
    "tighten": True,
    "tighten_tolerance": 0.01,
    "rounding_threshold_bits": None,
    "p_error": DEFAULT_P_ERROR,
    "fhe": "disable",
    "n_jobs": None,
    "random_state": None,
}

#: skorch's parameters we set a default for. They differ from skorch's where tabular data
#: wants it: Adam, no internal validation split, silent training. ``criterion`` (and the
#: classifier's ``classes``) come from each estimator's task.
SKORCH_PARAMETERS: dict[str, Any] = {
    "optimizer": torch.optim.Adam,
    "lr": 0.01,
    "max_epochs": 100,
    "batch_size": 64,
    "iterator_train": DataLoader,
    "iterator_valid": DataLoader,
    "dataset": Dataset,
    "train_split": None,
    "callbacks": None,
    "predict_nonlinearity": "auto",
    "warm_start": False,
    "verbose": 0,
    "device": "cpu",
}


def estimator_signature(**task_parameters: Any) -> inspect.Signature:
    """``(self, *, <ours>, criterion=..., <skorch's>, **kwargs)``, ``task_parameters`` after criterion."""
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    keyword = inspect.Parameter.KEYWORD_ONLY
    skorch_parameters = {"criterion": task_parameters.pop("criterion"), **SKORCH_PARAMETERS, **task_parameters}
    return inspect.Signature(
        [
            inspect.Parameter("self", positional),
            *(inspect.Parameter(name, keyword, default=value) for name, value in FHE_PARAMETERS.items()),
            *(inspect.Parameter(name, keyword, default=value) for name, value in skorch_parameters.items()),
            inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD),
        ]
    )


def estimator_init(skorch_class: type, module: type, **task_parameters: Any) -> Callable[..., None]:
    """An ``__init__`` with :func:`estimator_signature`: skorch's arguments go to
    ``skorch_class.__init__`` (with ``module``), ours are stored as given (scikit-learn
    convention: validated at ``fit``, not here)."""
    signature = estimator_signature(**task_parameters)

    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        del arguments["self"]
        extra = arguments.pop("kwargs")
        ours = {name: arguments.pop(name) for name in FHE_PARAMETERS}
        skorch_class.__init__(self, module, **arguments, **extra)
        for name, value in ours.items():
            setattr(self, name, value)

    __init__.__signature__ = signature
    __init__.__doc__ = "Store the parameters (see :mod:`fhe_estimators.parameters`); validated at ``fit``."
    return __init__
