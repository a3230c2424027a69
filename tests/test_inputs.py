"""Inputs users really have: pandas, integer features, string labels, single samples, and data frames
with categories and missing values through a ColumnTransformer (sparse one-hot input)."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor
from fhe_estimators.benchmarking.tabular import make_churn, preprocessor

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
    with warnings.catch_warnings():
        # The hold-out and the search score arrays fit validated: no feature-name warning from them.
        warnings.filterwarnings("error", message="X does not have valid feature names")
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


def test_pipeline_with_categories_missing_values_and_sparse_one_hot():
    """A data frame with string categories and holes, through the usual ColumnTransformer (forced to a
    scipy sparse matrix), into the estimator: it trains, and sparse and dense input predict alike."""
    frame, y, _ = make_churn(n_samples=800)
    frame_train, frame_test, y_train, y_test = train_test_split(frame, y, test_size=0.25, random_state=0, stratify=y)
    model = NeuralNetClassifier(**SMALL, optimizer__weight_decay=0.01, tighten=False)
    pipeline = make_pipeline(preprocessor(frame).set_params(sparse_threshold=1.0), model)
    pipeline.fit(frame_train, y_train)
    encoded = pipeline[:-1].transform(frame_test)
    assert sparse.issparse(encoded) and frame_test.isna().any().any()
    np.testing.assert_array_equal(model.predict(encoded), model.predict(encoded.toarray()))
    np.testing.assert_array_equal(pipeline.predict(frame_test[:20], fhe="simulate"), pipeline.predict(frame_test[:20]))
    majority = np.mean(y_test == np.bincount(y_train).argmax())
    assert pipeline.score(frame_test, y_test) > majority + 0.05


def test_non_numeric_columns_are_named():
    frame = pd.DataFrame({"age": [30.0, 40.0, 50.0, 60.0], "city": ["a", "b", "a", "c"]})
    frame["plan"] = pd.Categorical(["x", "y", "x", "y"])
    with pytest.raises(ValueError, match=r"'city' \(object\), 'plan' \(category\).*OneHotEncoder"):
        NeuralNetClassifier(**SMALL).fit(frame, [0, 1, 0, 1])


@pytest.mark.parametrize("missing", [None, np.nan, pd.NA])
def test_missing_class_labels_are_reported(missing):
    X = np.random.RandomState(0).normal(size=(6, 2))
    y = np.array(["a", "b", missing, "a", "b", "a"], dtype=object)
    with pytest.raises(ValueError, match=r"1 missing labels .* rows \[2\]"):
        NeuralNetClassifier(**SMALL).fit(X, y)


def test_columns_far_from_a_standardized_scale_warn_at_fit():
    rng = np.random.RandomState(0)
    frame = pd.DataFrame(rng.normal(size=(120, 3)), columns=["a", "b", "income"])
    y = (frame.a + frame.income > 0).astype(int)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*standardized scale")  # standardized columns: no warning
        model = NeuralNetClassifier(**SMALL).fit(frame, y)
    frame["income"] = np.exp(rng.normal(10.5, 0.6, 120))
    with pytest.warns(UserWarning, match=r"far from a standardized scale.*'income' \(\d\.\d+e\+04\)"):
        model.fit(frame, y)
