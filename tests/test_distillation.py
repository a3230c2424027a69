"""distillation="mlp": the quantized network also learns a float MLP teacher's outputs."""

import numpy as np
import pytest
import torch

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor, distillation

QUICK = dict(hidden_layer_sizes=(8,), max_epochs=5, tighten=False, random_state=0)


def test_classifier_loss_mixes_labels_and_the_teachers_soft_outputs(iris):
    X_train, _, y_train, _ = iris
    model = NeuralNetClassifier(distillation="mlp", **QUICK).fit(X_train, y_train)
    teacher = model.distillation_teacher_
    assert teacher.n_features_in_ == X_train.shape[1] and list(teacher.classes_) == [0, 1, 2]
    X = torch.as_tensor(X_train[:16], dtype=torch.float32)
    y = torch.as_tensor(model.label_encoder_.transform(y_train[:16]))
    logits = model.module_(X).detach()
    hard = torch.nn.functional.cross_entropy(logits, y)
    T = distillation.TEMPERATURE
    soft = torch.softmax(torch.log(torch.as_tensor(teacher.predict_proba(X.numpy()), dtype=torch.float32)) / T, 1)
    kl = torch.nn.functional.kl_div(torch.log_softmax(logits / T, 1), soft, reduction="batchmean") * T**2
    expected = (1 - distillation.ALPHA) * hard + distillation.ALPHA * kl
    assert float(model.get_loss(logits, y, X=X, training=True)) == pytest.approx(float(expected), rel=1e-4)
    # Outside training (skorch's validation loss) the loss is the plain criterion.
    assert float(model.get_loss(logits, y, X=X, training=False)) == pytest.approx(float(hard), rel=1e-5)
    plain = NeuralNetClassifier(**QUICK).fit(X_train, y_train)
    assert plain.distillation_teacher_ is None


def test_regressor_learns_towards_the_teachers_predictions(diabetes, monkeypatch):
    X_train, _, y_train, _ = diabetes
    monkeypatch.setattr(distillation, "ALPHA", 1.0)  # the teacher alone
    model = NeuralNetRegressor(distillation="mlp", optimizer__weight_decay=0.01, **QUICK).fit(X_train, y_train)
    X = torch.as_tensor(X_train[:16], dtype=torch.float32)
    y_pred = model.module_(X).detach()
    taught = torch.as_tensor(model.distillation_teacher_.predict(X.numpy()), dtype=torch.float32).reshape(-1, 1)
    y_true = torch.zeros_like(y_pred)  # ignored with ALPHA = 1
    loss = model.get_loss(y_pred, y_true, X=X, training=True)
    assert float(loss) == pytest.approx(float(torch.mean((y_pred - taught) ** 2)), rel=1e-4)


def test_a_class_the_teacher_never_saw_gets_probability_zero(iris):
    X_train, _, y_train, _ = iris
    seen = y_train != 2
    model = NeuralNetClassifier(distillation="mlp", classes=[0, 1, 2], **QUICK).fit(X_train[seen], y_train[seen])
    assert list(model.distillation_teacher_.classes_) == [0, 1] and model.n_outputs_ == 3
    X = torch.as_tensor(X_train[:4], dtype=torch.float32)
    loss = model.get_loss(model.module_(X), torch.zeros(4, dtype=torch.long), X=X, training=True)
    assert torch.isfinite(loss)


def test_unknown_distillation_is_refused(iris):
    X_train, _, y_train, _ = iris
    with pytest.raises(ValueError, match="distillation must be one of"):
        NeuralNetClassifier(distillation="teacher", **QUICK).fit(X_train, y_train)
    with pytest.raises(ValueError, match="distillation must be one of"):
        NeuralNetClassifier(distillation=np.array(["mlp"]), **QUICK).fit(X_train, y_train)
