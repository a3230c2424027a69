"""Breast cancer at 3-bit weights/activations and a 10-bit accumulator (Ω = 20), side by side.

fhe_estimators' NeuralNetClassifier (defaults) against Concrete ML's built-in NeuralNetClassifier at
the same bits and the same number of epochs, on the same split, in one run: accumulator bound,
clear/simulated accuracy, circuit size, key generation and encrypted latency per sample.

Run:  .venv/bin/python benchmarks/breast_cancer_3_3_10.py [--samples 3]
"""

import argparse
import statistics
import time
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from fhe_estimators import NeuralNetClassifier
from fhe_estimators import fhe as fhe_backend

warnings.filterwarnings("ignore")
BITS = dict(n_w_bits=3, n_a_bits=3, n_accum_bits=10)


def data():
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train).astype(np.float32), scaler.transform(X_test).astype(np.float32), y_train, y_test


def encrypted_latency(quantized_module, predict_simulated, X, n_samples):
    """Keygen time, per-sample encrypt+run+decrypt times, and whether execute matched simulate."""
    keygen_s = fhe_backend.keygen(quantized_module)
    times, matches = [], []
    simulated = predict_simulated(X[:n_samples])
    for index in range(n_samples):
        start = time.perf_counter()
        outputs = quantized_module.forward(X[index : index + 1], fhe="execute")
        times.append(time.perf_counter() - start)
        matches.append(np.allclose(outputs, simulated[index : index + 1]))
    return keygen_s, times, all(matches)


def ours(X_train, X_test, y_train, y_test, n_samples):
    model = NeuralNetClassifier(**BITS, random_state=0)
    start = time.perf_counter()
    model.fit(X_train, y_train)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    model.compile()
    compile_s = time.perf_counter() - start
    qm = model.quantized_module_
    keygen_s, times, same = encrypted_latency(
        qm, lambda X: qm.forward(X, fhe="simulate"), X_test, n_samples
    )
    return {
        "model": "fhe_estimators NeuralNetClassifier",
        "epochs": model.max_epochs,
        "worst-case accumulator bits (per layer)": model.accumulator_bits_,
        "max non-zeros per neuron (per layer)": [layer["max_nonzero"] for layer in model.pruning_report_],
        "clear accuracy": model.score(X_test, y_test, fhe="disable"),
        "simulated accuracy": model.score(X_test, y_test, fhe="simulate"),
        "fit s": fit_s,
        "compile s": compile_s,
        "circuit max bit-width": model.circuit_report_.max_bit_width,
        "PBS count": model.circuit_report_.pbs_count,
        "keygen s": keygen_s,
        "encrypted s/sample (median)": statistics.median(times),
        "execute == simulate": same,
    }


def builtin(X_train, X_test, y_train, y_test, n_samples, epochs):
    from concrete.ml.sklearn import NeuralNetClassifier as ConcreteNeuralNetClassifier

    model = ConcreteNeuralNetClassifier(
        module__n_w_bits=BITS["n_w_bits"],
        module__n_a_bits=BITS["n_a_bits"],
        module__n_accum_bits=BITS["n_accum_bits"],
        module__n_layers=3,  # as in Concrete ML's documentation examples
        max_epochs=epochs,
        verbose=0,
    )
    start = time.perf_counter()
    model.fit(X_train, y_train)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    model.compile(X_train)
    compile_s = time.perf_counter() - start
    circuit = model.fhe_circuit
    qm = model.quantized_module_
    keygen_s, times, same = encrypted_latency(qm, lambda X: qm.forward(X, fhe="simulate"), X_test, n_samples)
    weights = [
        layer.weight.detach().numpy() for layer in model.module_.modules() if hasattr(layer, "weight") and layer.weight is not None and layer.weight.ndim == 2
    ]
    return {
        "model": "Concrete ML NeuralNetClassifier",
        "epochs": epochs,
        "worst-case accumulator bits (per layer)": "not computed by Concrete ML",
        "max non-zeros per neuron (per layer)": [int(np.count_nonzero(w, axis=1).max()) for w in weights],
        "clear accuracy": float(np.mean(model.predict(X_test) == y_test)),
        "simulated accuracy": float(np.mean(model.predict(X_test, fhe="simulate") == y_test)),
        "fit s": fit_s,
        "compile s": compile_s,
        "circuit max bit-width": int(circuit.graph.maximum_integer_bit_width()),
        "PBS count": int(circuit.statistics.get("programmable_bootstrap_count", 0)),
        "keygen s": keygen_s,
        "encrypted s/sample (median)": statistics.median(times),
        "execute == simulate": same,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=3)
    args = parser.parse_args()
    split = data()
    rows = [ours(*split, args.samples)]
    rows.append(builtin(*split, args.samples, epochs=rows[0]["epochs"]))
    print(f"breast cancer, (n_w, n_a, n_accum) = (3, 3, 10), Ω = 20, {args.samples} encrypted samples\n")
    for key in rows[0]:
        cells = [f"{row[key]:.3f}" if isinstance(row[key], float) else str(row[key]) for row in rows]
        print(f"{key:42s} " + " | ".join(f"{cell:38s}" for cell in cells))


if __name__ == "__main__":
    main()
