"""runtime.simulate's batch path (Concrete's per-row setup done once) gives Concrete's own outputs."""

import numpy as np
import pytest
from concrete.ml.common.utils import to_tuple

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor, runtime

SMALL = dict(hidden_layer_sizes=(8,), max_epochs=3, tighten=False, optimizer__weight_decay=1e-4, random_state=0)


def per_row_simulation(quantized_module, X):
    """What runtime.simulate did before: Concrete's public ``circuit.simulate``, one row at a time."""
    circuit = quantized_module.fhe_circuit
    (q_x,) = to_tuple(quantized_module.quantize_input(*quantized_module.pre_processing(X)))
    q_rows = [to_tuple(circuit.simulate(q_x[[row]])) for row in range(len(q_x))]
    return quantized_module.dequantize_output(*[np.concatenate(outputs, axis=0) for outputs in zip(*q_rows)])


@pytest.fixture(scope="module")
def classifier(iris):
    X_train, _, y_train, _ = iris
    return NeuralNetClassifier(**SMALL).fit(X_train, y_train).compile(X_train)


@pytest.fixture(scope="module")
def rows(iris):
    X_train, X_test, _, _ = iris
    return np.concatenate([X_test, X_train[:10]]).astype(np.float32)  # 48 rows


def test_classifier_matches_per_row_simulation(classifier, rows):
    quantized_module = classifier.quantized_module_
    np.testing.assert_array_equal(runtime.simulate(quantized_module, rows), per_row_simulation(quantized_module, rows))


def test_regressor_matches_per_row_simulation(diabetes):
    X_train, X_test, y_train, _ = diabetes
    model = NeuralNetRegressor(**SMALL).fit(X_train, y_train).compile(X_train)
    rows = X_test[:40].astype(np.float32)
    quantized_module = model.quantized_module_
    np.testing.assert_array_equal(runtime.simulate(quantized_module, rows), per_row_simulation(quantized_module, rows))


def test_rounded_circuit_matches_per_row_simulation(iris, rows):
    X_train, _, y_train, _ = iris
    model = NeuralNetClassifier(**SMALL).fit(X_train, y_train)
    model.compile(X_train, rounding_threshold_bits={"n_bits": 5, "method": "exact"})
    quantized_module = model.quantized_module_
    np.testing.assert_array_equal(runtime.simulate(quantized_module, rows), per_row_simulation(quantized_module, rows))


def test_predict_simulate_goes_through_the_batch_path(classifier, rows, monkeypatch):
    calls = []
    row_simulator = runtime._row_simulator
    monkeypatch.setattr(runtime, "_row_simulator", lambda *args: calls.append(1) or row_simulator(*args))
    simulated = classifier.predict_proba(rows, fhe="simulate")
    assert calls == [1]  # one setup for the whole batch
    monkeypatch.setattr(runtime, "_row_simulator", missing_internals)  # Concrete's per-row path
    np.testing.assert_array_equal(simulated, classifier.predict_proba(rows, fhe="simulate"))


def missing_internals(*args):
    raise AttributeError("'FheFunction' object has no attribute 'simulation_runtime'")


def test_other_concrete_versions_fall_back_to_per_row_simulation(classifier, rows, monkeypatch):
    monkeypatch.setattr(runtime, "_row_simulator", missing_internals)
    quantized_module = classifier.quantized_module_
    np.testing.assert_array_equal(runtime.simulate(quantized_module, rows), per_row_simulation(quantized_module, rows))


@pytest.mark.parametrize("sign", [1, -1])
def test_out_of_range_row_raises_like_concrete(classifier, rows, monkeypatch, sign):
    """One quantized row outside the circuit's input type: Concrete's own ValueError, before any row runs."""
    quantized_module = classifier.quantized_module_
    q_x = quantized_module.quantize_input(rows)
    q_x[-1, 0] = sign * 1000  # far outside the circuit's input integers (7 bits or so)
    with pytest.raises(ValueError, match="Expected argument 0 to be"):
        quantized_module.fhe_circuit.simulate(q_x[[-1]])  # Concrete's check on that row
    monkeypatch.setattr(quantized_module, "quantize_input", lambda *args: q_x)
    with pytest.raises(ValueError, match="Expected argument 0 to be"):
        runtime.simulate(quantized_module, rows)


def test_non_integer_input_raises_like_concrete(classifier, rows, monkeypatch):
    quantized_module = classifier.quantized_module_
    q_x = quantized_module.quantize_input(rows).astype(np.float64)
    monkeypatch.setattr(quantized_module, "quantize_input", lambda *args: q_x)
    with pytest.raises(ValueError, match="Expected argument 0 to be"):
        runtime.simulate(quantized_module, rows)
