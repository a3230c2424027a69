"""Shared small data sets and fitted models (module scope keeps the suite fast)."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

warnings.filterwarnings("ignore", category=UserWarning)


@pytest.fixture(scope="session", autouse=True)
def fixed_classifier_weight_decay():
    """Most tests check pruning, the search or FHE, not the weight-decay choice: there the classifier
    trains with the fixed penalty 1e-4 instead of its default "auto" (one fit instead of five).
    tests/test_holdout.py checks "auto" by asking for it; scripts run as subprocesses keep the default."""
    from fhe_estimators import NeuralNetClassifier

    NeuralNetClassifier._default_weight_decay = 1e-4
    yield
    del NeuralNetClassifier._default_weight_decay


def _split_scaled(X, y):
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


@pytest.fixture(scope="session")
def breast_cancer():
    return _split_scaled(*load_breast_cancer(return_X_y=True))


@pytest.fixture(scope="session")
def iris():
    return _split_scaled(*load_iris(return_X_y=True))


@pytest.fixture(scope="session")
def diabetes():
    return _split_scaled(*load_diabetes(return_X_y=True))


@pytest.fixture(scope="session")
def rng():
    return np.random.RandomState(0)
