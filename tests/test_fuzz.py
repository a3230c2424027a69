"""Random shapes, dtypes and values into fit/predict: a correct result or one of our clear errors.

"Clear" means a ValueError or TypeError raised by our validation or
scikit-learn's (whose messages name the problem), never one escaping from deep
inside torch, brevitas, skorch or Concrete.
"""

import traceback
import warnings

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor

TINY = {"hidden_layer_sizes": (3,), "max_epochs": 1, "random_state": 0, "optimizer__weight_decay": 1e-4}
DEEP_LIBRARIES = ("/torch/", "/brevitas/", "/skorch/", "/concrete/")


def sometimes(draw, usual, *unusual):
    """``usual`` five times in six, else one of ``unusual``: most examples reach training."""
    return draw(st.sampled_from([usual] * 5 * len(unusual) + list(unusual)))


@st.composite
def feature_arrays(draw):
    n_samples = sometimes(draw, draw(st.integers(2, 12)), 0, 1)
    n_features = sometimes(draw, draw(st.integers(1, 4)), 0)
    shape = sometimes(draw, (n_samples, n_features), (n_samples,), (n_samples, n_features, 2))
    kind = sometimes(draw, draw(st.sampled_from(["float64", "float32", "int64", "bool"])), "strings", "complex", "object")
    rng = np.random.RandomState(draw(st.integers(0, 2**16)))
    values = rng.randn(*shape) * sometimes(draw, 1.0, 1e3, 1e300)
    if sometimes(draw, False, True) and values.size:
        values.flat[draw(st.integers(0, values.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    if kind == "strings":
        return values.astype(str)
    if kind == "object":
        return values.astype(object)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return values.astype(kind)


@st.composite
def targets(draw, n_samples):
    n = max(0, n_samples + sometimes(draw, 0, -1, 1))  # sometimes a length mismatch
    kind = sometimes(draw, draw(st.sampled_from(["int", "string", "float"])), "nan", "2-D", "None")
    rng = np.random.RandomState(draw(st.integers(0, 2**16)))
    if kind == "None":
        return None
    if kind == "int":
        return np.arange(n) % draw(st.integers(1, 3))  # one class only, sometimes
    if kind == "string":
        return np.array(["yes", "no", "maybe"])[rng.randint(0, 3, size=n)]
    if kind == "2-D":
        return rng.randn(n, draw(st.integers(1, 2)))
    y = rng.randn(n)
    if kind == "nan" and n:
        y[0] = np.nan
    return y


def assert_clear_error(error: BaseException) -> None:
    assert isinstance(error, (ValueError, TypeError)), f"{type(error).__name__}: {error}"
    origin = traceback.extract_tb(error.__traceback__)[-1].filename
    assert not any(library in origin for library in DEEP_LIBRARIES), f"raised in {origin}: {error}"


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), estimator=st.sampled_from([NeuralNetClassifier, NeuralNetRegressor]))
def test_fit_and_predict_give_a_result_or_a_clear_error(data, estimator):
    X = data.draw(feature_arrays())
    y = data.draw(targets(len(X)))
    model = estimator(**TINY)
    try:
        model.fit(X, y)
    except Exception as error:  # noqa: BLE001 - the point is to inspect any error
        assert_clear_error(error)
        event(f"fit refused: {type(error).__name__}")
        return
    try:
        predicted = model.predict(X, fhe="simulate")
    except Exception as error:  # noqa: BLE001 (e.g. constant X: degenerate scales, no circuit)
        assert_clear_error(error)
        event(f"predict refused: {type(error).__name__}")
        return
    event("fitted and predicted")
    assert len(predicted) == len(X)
    if estimator is NeuralNetClassifier:
        assert set(predicted) <= set(model.classes_)
    else:
        assert np.all(np.isfinite(predicted))
    wrong_width = np.zeros((2, X.shape[1] + 1))
    try:
        model.predict(wrong_width)
    except Exception as error:  # noqa: BLE001
        assert_clear_error(error)
    else:
        raise AssertionError("predict accepted a different number of features")
