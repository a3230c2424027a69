"""Tabular data as users have it: numeric and categorical columns, missing values, and the
scikit-learn preprocessing that turns them into the numbers a network reads.

The generated sets are synthetic (the machines have no network access for OpenML), built to look
like the data people bring: skewed amounts, counts, string categories of very different
cardinalities (one with a long tail of rare values), values missing at random in several
columns, and a target that depends on interactions between a category and a number. Each
generator returns a pandas ``DataFrame``, the target and the task; :func:`preprocessor` is the
``ColumnTransformer`` a careful user writes for them (median imputation with missing-value
indicators and standardization for numbers, a "missing" category and one-hot encoding for
strings). ``benchmarks/pipelines.py`` measures the estimators on them; ``examples/tabular_pipeline.py``
shows the whole path.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

CLASSIFICATION, REGRESSION = "classification", "regression"


def _with_missing(frame: pd.DataFrame, fractions: dict[str, float], rng: np.random.RandomState) -> pd.DataFrame:
    """``frame`` with each listed column's values set to NaN at random, at its fraction of the rows."""
    frame = frame.copy()
    for column, fraction in fractions.items():
        frame.loc[rng.uniform(size=len(frame)) < fraction, column] = np.nan
    return frame


def _effects(levels: list[str], spread: float, rng: np.random.RandomState) -> pd.Series:
    return pd.Series(rng.normal(0.0, spread, len(levels)), index=levels)


def make_churn(n_samples: int = 2000, random_state: int = 0) -> tuple[pd.DataFrame, np.ndarray, str]:
    """Customers who leave (1) or stay (0): 4 numeric and 3 categorical columns, 5-15% missing in four."""
    rng = np.random.RandomState(random_state)
    cities = [f"city_{i}" for i in range(12)]
    city_effects = _effects(cities, 0.8, rng)  # drawn first: the same process at any n_samples
    frame = pd.DataFrame(
        {
            "age": rng.normal(45, 12, n_samples).round(),
            "income": np.exp(rng.normal(10.5, 0.6, n_samples)),
            "tenure_years": rng.exponential(4, n_samples),
            "support_calls": rng.poisson(3, n_samples).astype(float),
            "city": rng.choice(cities, n_samples, p=np.r_[[0.25, 0.15, 0.1], np.full(9, 0.5 / 9)]),
            "plan": rng.choice(["basic", "plus", "pro", "family"], n_samples),
            "channel": rng.choice(["web", "store", "phone"], n_samples),
        }
    )
    logit = (
        -0.04 * (frame.age - 45)
        + 0.6 * np.log(frame.income / 36000)
        - 0.3 * np.sqrt(frame.tenure_years)
        + 0.35 * frame.support_calls
        - 1.0
        + frame.city.map(city_effects)
        + frame.plan.map({"basic": 0.5, "plus": 0.0, "pro": -0.7, "family": 0.2})
        + 0.8 * ((frame.plan == "pro") & (frame.channel == "web"))
    )
    y = (rng.uniform(size=n_samples) < 1 / (1 + np.exp(-logit.to_numpy()))).astype(int)
    missing = {"age": 0.1, "income": 0.15, "city": 0.08, "channel": 0.05}
    return _with_missing(frame, missing, rng), y, CLASSIFICATION


def make_house_prices(n_samples: int = 1500, random_state: int = 0) -> tuple[pd.DataFrame, np.ndarray, str]:
    """Log sale prices: area, rooms, age, lot; 25 neighbourhoods, a house type and an ordinal condition
    as strings; the price per square metre depends on the neighbourhood."""
    rng = np.random.RandomState(random_state)
    neighbourhoods = [f"district_{i:02d}" for i in range(25)]
    neighbourhood_effects = _effects(neighbourhoods, 0.3, rng)
    frame = pd.DataFrame(
        {
            "area_m2": np.exp(rng.normal(4.7, 0.35, n_samples)),
            "rooms": rng.randint(1, 8, n_samples).astype(float),
            "year_built": rng.randint(1900, 2024, n_samples).astype(float),
            "lot_m2": np.exp(rng.normal(6.0, 0.8, n_samples)),
            "neighbourhood": rng.choice(neighbourhoods, n_samples),
            "house_type": rng.choice(["flat", "terraced", "semi", "detached"], n_samples, p=[0.4, 0.25, 0.2, 0.15]),
            "condition": rng.choice(["poor", "fair", "good", "excellent"], n_samples, p=[0.1, 0.3, 0.45, 0.15]),
        }
    )
    location = frame.neighbourhood.map(neighbourhood_effects)
    y = (
        11.0
        + (1.0 + location) * np.log(frame.area_m2 / 100)
        + location
        + 0.03 * frame.rooms
        - 0.002 * (2024 - frame.year_built)
        + 0.08 * np.log(frame.lot_m2 / 400) * (frame.house_type != "flat")
        + frame.house_type.map({"flat": -0.1, "terraced": 0.0, "semi": 0.05, "detached": 0.15})
        + frame.condition.map({"poor": -0.2, "fair": -0.05, "good": 0.05, "excellent": 0.15})
        + rng.normal(0.0, 0.1, n_samples)
    ).to_numpy()
    missing = {"year_built": 0.1, "lot_m2": 0.2, "neighbourhood": 0.03, "condition": 0.1}
    return _with_missing(frame, missing, rng), y, REGRESSION


def make_credit(n_samples: int = 3000, random_state: int = 0) -> tuple[pd.DataFrame, np.ndarray, str]:
    """Loans that default (1, about a quarter): ratios with thresholds, and an employer column of 80
    values with a long tail of rare ones (the one-hot matrix is sparse)."""
    rng = np.random.RandomState(random_state)
    employers = [f"employer_{i:02d}" for i in range(80)]
    popularity = 1.0 / np.arange(1, 81)
    employer_effects = _effects(employers, 0.7, rng)
    frame = pd.DataFrame(
        {
            "debt_ratio": rng.beta(2, 5, n_samples),
            "utilization": rng.beta(1.5, 2, n_samples),
            "open_accounts": rng.poisson(6, n_samples).astype(float),
            "age": rng.uniform(21, 75, n_samples).round(),
            "employer": rng.choice(employers, n_samples, p=popularity / popularity.sum()),
            "purpose": rng.choice(["car", "home", "education", "business", "travel", "medical", "debt", "other"], n_samples),
            "housing": rng.choice(["rent", "own", "mortgage"], n_samples),
        }
    )
    logit = (
        3.0 * (frame.debt_ratio > 0.45)
        + 2.5 * np.maximum(frame.utilization - 0.6, 0) * 4
        - 0.15 * np.abs(frame.open_accounts - 6)
        - 0.02 * (frame.age - 45)
        + frame.employer.map(employer_effects)
        + frame.purpose.map({"business": 0.8, "travel": 0.4, "education": -0.3}).fillna(0.0)
        + 0.6 * ((frame.housing == "rent") & (frame.debt_ratio > 0.3))
        - 1.8
    )
    y = (rng.uniform(size=n_samples) < 1 / (1 + np.exp(-logit.to_numpy()))).astype(int)
    missing = {"utilization": 0.12, "age": 0.05, "employer": 0.1, "housing": 0.04}
    return _with_missing(frame, missing, rng), y, CLASSIFICATION


TABULAR_SETS: dict[str, Callable[..., tuple[pd.DataFrame, np.ndarray, str]]] = {
    "churn": make_churn,
    "house_prices": make_house_prices,
    "credit": make_credit,
}


def preprocessor(frame: pd.DataFrame, *, scale_numbers: bool = True) -> ColumnTransformer:
    """The usual preprocessing of ``frame``'s columns: numbers imputed by their median (with an
    indicator column per column that had missing values) and standardized; strings given a
    "missing" category and one-hot encoded (unknown categories at predict time: all zeros).

    ``scale_numbers=False`` leaves the numbers on their own scale, the mistake
    :func:`fhe_estimators.validation.warn_if_unscaled` warns about. ``ColumnTransformer``'s
    default ``sparse_threshold`` gives a scipy sparse matrix when the one-hot columns dominate.
    """
    numeric = [column for column in frame.columns if pd.api.types.is_numeric_dtype(frame[column])]
    categorical = [column for column in frame.columns if column not in numeric]
    numbers = [SimpleImputer(strategy="median", add_indicator=True)]
    if scale_numbers:
        numbers.append(StandardScaler())
    categories = make_pipeline(
        SimpleImputer(strategy="constant", fill_value="missing"), OneHotEncoder(handle_unknown="ignore")
    )
    return ColumnTransformer([("numbers", make_pipeline(*numbers), numeric), ("categories", categories, categorical)])
