"""Knowledge distillation from a float teacher: the quantized network also learns a float MLP's outputs.

With ``distillation="mlp"``, ``fit`` first trains a float scikit-learn MLP on the same rows
(hidden layer of :data:`TEACHER_HIDDEN`, the stronger of the two float anchors of
``benchmarks/generalization.py``), then trains the quantized network on a mix of the labels and
the teacher's outputs (Hinton et al., 2015): for a classifier ``(1 - ALPHA) × cross-entropy +
ALPHA × T² × KL(teacher_T ‖ student_T)`` with temperature ``T``; for a regressor the same mix of
the squared errors to the target and to the teacher's prediction. The teacher sees only the rows
the network trains on (with the search on: the train part of the internal split). It is not a
default: on the generalization benchmark it gained up to 0.019 on the regressions that underfit
and lost 0.015–0.025 on three classification sets and diabetes (docs/pruning.md).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier, MLPRegressor

from .regularization import numpy_random_state

#: Options of the ``distillation`` parameter: None (train on the labels only) or "mlp".
DISTILLATIONS = (None, "mlp")
#: Weight of the teacher's outputs in the loss.
ALPHA = 0.5
#: Softmax temperature of the classifier's soft targets (above 1: the teacher's small
#: probabilities carry information too).
TEMPERATURE = 2.0
#: Hidden layer of the float teacher.
TEACHER_HIDDEN = (100,)
#: Iterations of the teacher's optimizer.
TEACHER_MAX_ITER = 500


def fit_teacher(estimator, X: np.ndarray, y: np.ndarray):
    """A float MLP fitted on ``X`` and the encoded ``y`` (class indices or scaled targets).

    A teacher stopped at :data:`TEACHER_MAX_ITER` still teaches: its convergence warning is
    not the user's concern.
    """
    classifier = estimator._estimator_type == "classifier"
    teacher = (MLPClassifier if classifier else MLPRegressor)(
        TEACHER_HIDDEN, max_iter=TEACHER_MAX_ITER, random_state=numpy_random_state(estimator)
    )
    targets = np.asarray(y) if classifier else np.asarray(y, dtype=np.float64).ravel()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return teacher.fit(X, targets)


def distilled_loss(estimator, loss: torch.Tensor, y_pred: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """``loss`` (the criterion on the labels) mixed with the distance to the teacher's outputs on ``X``."""
    teacher = estimator.distillation_teacher_
    inputs = X.detach().cpu().numpy()
    if estimator._estimator_type == "classifier":
        probabilities = np.zeros((len(inputs), y_pred.shape[1]))
        probabilities[:, teacher.classes_] = teacher.predict_proba(inputs)  # a class it never saw: 0
        soft = torch.as_tensor(probabilities, dtype=y_pred.dtype, device=y_pred.device)
        soft = torch.softmax(torch.log(soft.clamp_min(1e-6)) / TEMPERATURE, dim=1)
        student = torch.log_softmax(y_pred / TEMPERATURE, dim=1)
        teacher_loss = torch.nn.functional.kl_div(student, soft, reduction="batchmean") * TEMPERATURE**2
    else:
        predicted = torch.as_tensor(teacher.predict(inputs), dtype=y_pred.dtype, device=y_pred.device)
        teacher_loss = estimator.criterion_(y_pred, predicted.reshape(y_pred.shape))
    return (1.0 - ALPHA) * loss + ALPHA * teacher_loss
