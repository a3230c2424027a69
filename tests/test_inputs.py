"""Inputs users really have: pandas, integer features, string labels, single samples."""

import numpy as np
import pandas as pd
import pytest

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor

SMALL = {"hidden_layer_sizes": (6,), "max_epochs": 15, "random_state": 0}


@pytest.fixture(scope="module")
def frame(breast_cancer):
    X_train, X_test, y_train, y_test = breast_cancer
    columns = [f"feature {i}" for i in range(X_train.shape[1])]
    names = np.array(["benign", "malignant"])
    return (
        pd.DataFrame(X_train, columns=columns),
        pd.DataFrame(X_test, columns=columns),
        pd.Series(names[y_train], name="diagnosis"),
        names[y_test],
    )


def test_pandas_frame_and_string_series(frame):
    X_train, X_test, y_train, y_test = frame
    model = NeuralNetClassifier(**SMALL).fit(X_train, y_train)
    assert list(model.feature_names_in_) == list(X_train.columns)
    assert list(model.classes_) == ["benign", "malignant"]
    predicted = model.predict(X_test, fhe="simulate")
    assert set(predicted) <= {"benign", "malignant"} and np.mean(predicted == y_test) > 0.9
    assert model.score(X_test, y_test) > 0.9
    with pytest.raises(ValueError, match="feature names"):
        model.predict(X_test[X_test.columns[::-1]])


def test_integer_features_and_integer_labels():
    rng = np.random.RandomState(0)
    X = rng.randint(-5, 6, size=(200, 4))  # int64 features
    y = np.where(X[:, 0] + X[:, 1] > 0, 10, 20)  # integer labels that are not 0..k-1
    model = NeuralNetClassifier(**SMALL).fit(X, y)
    assert model.predict(X).dtype == y.dtype and set(model.classes_) == {10, 20}
    assert model.score(X, y, fhe="simulate") > 0.85


def test_single_sample_predictions(breast_cancer, diabetes):
    X_train, X_test, y_train, _ = breast_cancer
    classifier = NeuralNetClassifier(**SMALL).fit(X_train, y_train)
    assert classifier.predict(X_test[:1], fhe="simulate").shape == (1,)
    assert classifier.predict_proba(X_test[:1]).shape == (1, 2)
    X_train, X_test, y_train, _ = diabetes
    regressor = NeuralNetRegressor(**SMALL, optimizer__weight_decay=0.1).fit(X_train, y_train)
    assert regressor.predict(X_test[:1], fhe="simulate").shape == (1,)
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        regressor.predict(X_test[0])


def test_pandas_regression_target(diabetes):
    X_train, X_test, y_train, _ = diabetes
    y = pd.Series(y_train, name="progression")
    model = NeuralNetRegressor(**SMALL, optimizer__weight_decay=0.1).fit(pd.DataFrame(X_train), y)
    assert model.predict(pd.DataFrame(X_test)).shape == (len(X_test),)


def test_same_random_state_gives_same_masks_and_predictions(diabetes):
    X_train, X_test, y_train, _ = diabetes
    fits = [NeuralNetRegressor(**SMALL).fit(X_train, y_train) for _ in range(2)]
    assert fits[0].regularization_scores_ == fits[1].regularization_scores_
    for first, second in zip(*(model.module_.linears for model in fits)):
        np.testing.assert_array_equal(first.weight.detach().numpy(), second.weight.detach().numpy())
    np.testing.assert_array_equal(fits[0].predict(X_test), fits[1].predict(X_test))
    np.testing.assert_array_equal(fits[0].predict(X_test, fhe="simulate"), fits[1].predict(X_test, fhe="simulate"))
