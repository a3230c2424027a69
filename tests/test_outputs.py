"""One output decoder for estimators and deployed clients; callbacks score encoded targets, predict never does."""

import json
import pickle
import threading
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import skorch
from sklearn.exceptions import NotFittedError
from sklearn.metrics import f1_score
from skorch.callbacks import EpochScoring
from skorch.dataset import ValidSplit

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor
from fhe_estimators.callbacks import encoded_scorer
from fhe_estimators.outputs import OutputDecoder

FAST = dict(hidden_layer_sizes=(6,), max_epochs=8, tighten=False, random_state=0)


# ---------------------------------------------------------------- OutputDecoder
@pytest.mark.parametrize(
    "classes", [np.array(["benign", "malignant"]), np.array([3, 7, 11]), np.array([0.5, 1.5]), np.array([False, True])]
)
def test_classifier_decoder_survives_the_json_round_trip(classes):
    estimator = SimpleNamespace(_estimator_type="classifier", classes_=classes)
    decoder = OutputDecoder.from_estimator(estimator)
    loaded = OutputDecoder.from_dict(json.loads(json.dumps(decoder.to_dict())))
    raw = np.random.RandomState(0).normal(size=(5, len(classes)))
    labels = loaded.labels(raw)
    assert labels.dtype == classes.dtype and np.array_equal(labels, decoder.labels(raw))
    np.testing.assert_array_equal(loaded.proba(raw), decoder.proba(raw))
    np.testing.assert_allclose(decoder.proba(raw).sum(axis=1), 1.0)
    assert loaded.n_outputs == len(classes) and loaded.is_classifier
    assert loaded.labels(np.empty((0, len(classes)))).shape == (0,)
    with pytest.raises(AttributeError, match="regressors"):
        decoder.values(raw)


@pytest.mark.parametrize("ndim", [1, 2])
def test_regressor_decoder_keeps_the_target_shape(ndim):
    columns = 1 if ndim == 1 else 3
    estimator = SimpleNamespace(
        _estimator_type="regressor",
        target_mean_=np.arange(columns, dtype=np.float64),
        target_scale_=np.full(columns, 2.0),
        target_ndim_=ndim,
    )
    decoder = OutputDecoder.from_estimator(estimator)
    loaded = OutputDecoder.from_dict(json.loads(json.dumps(decoder.to_dict())))
    raw = np.ones((4, columns), dtype=np.float32)
    expected = (raw * 2.0 + np.arange(columns)).ravel() if ndim == 1 else raw * 2.0 + np.arange(columns)
    for d in (decoder, loaded):
        np.testing.assert_array_equal(d.values(raw), expected)
        assert d.predictions(raw).shape == expected.shape
    assert loaded.values(np.empty((0, columns))).shape == ((0,) if ndim == 1 else (0, columns))
    with pytest.raises(AttributeError, match="classifiers"):
        decoder.proba(raw)


def test_malformed_output_metadata_is_a_clear_error():
    with pytest.raises(ValueError, match="Malformed output metadata"):
        OutputDecoder.from_dict({"target": {"mean": [0.0]}})


# ---------------------------------------------------------------- encoded scores, no hidden mode
def easy_problem():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    return X, y


def test_valid_acc_scores_string_labels_on_their_encoding():
    X, y = easy_problem()
    model = NeuralNetClassifier(
        **FAST,
        train_split=ValidSplit(5, stratified=True),
        callbacks=[EpochScoring(encoded_scorer(f1_score), name="valid_f1", lower_is_better=False)],
    ).fit(X, y)
    history = model.history
    assert {"valid_acc", "valid_f1", "train_acc", "sparsity"} <= set(history[-1])
    assert history[-1, "valid_acc"] > 0.5 and history[-1, "valid_f1"] > 0.5 and history[-1, "train_acc"] > 0.5
    assert "train_acc_best" not in history[-1]  # the same columns as before
    assert set(model.predict(X)) <= {"no", "yes"}
    assert not hasattr(model, "_in_training_loop")
    assert set(pickle.loads(pickle.dumps(model)).predict(X[:5])) <= {"no", "yes"}  # its scorers pickle


def test_regressor_records_train_r2_on_standardized_targets(diabetes):
    X_train, _, y_train, _ = diabetes
    model = NeuralNetRegressor(**FAST, optimizer__weight_decay=1e-4)
    model.fit(X_train, y_train * 1000.0)  # the target's scale must not matter: it is standardized
    scores = model.history[:, "train_r2"]
    assert len(scores) == FAST["max_epochs"] and scores[-1] > 0.0
    assert "train_r2_best" not in model.history[-1]


class PredictFromAnotherThread(skorch.callbacks.Callback):
    """At each epoch's end, ``predict`` on the model being trained, from another thread."""

    def __init__(self, X):
        self.X = X

    def initialize(self):
        self.answers_ = []
        return self

    def on_epoch_end(self, net, **kwargs):
        def predict():
            try:
                self.answers_.append(net.predict(self.X))
            except NotFittedError as error:
                self.answers_.append(error)

        thread = threading.Thread(target=predict)
        thread.start()
        thread.join()


def test_predict_during_training_is_never_switched_to_encoded_labels():
    """No hidden mode: while a fitted model trains more (partial_fit), predict still answers labels;
    during the first fit it has nothing to predict with."""
    X, y = easy_problem()
    model = NeuralNetClassifier(**FAST, callbacks=[("watcher", PredictFromAnotherThread(X[:10]))])
    model.fit(X, pd.Series(y))
    first = list(dict(model.callbacks_)["watcher"].answers_)
    assert len(first) == FAST["max_epochs"] and all(isinstance(answer, NotFittedError) for answer in first)
    model.partial_fit(X, y)
    answers = dict(model.callbacks_)["watcher"].answers_[len(first):]  # the same callback goes on recording
    assert len(answers) == FAST["max_epochs"]
    for labels in answers:
        assert isinstance(labels, np.ndarray) and labels.dtype == model.classes_.dtype
        assert set(labels) <= {"no", "yes"}
