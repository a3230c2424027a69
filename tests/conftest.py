"""Shared small data sets and fitted models (module scope keeps the suite fast)."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

warnings.filterwarnings("ignore", category=UserWarning)


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
