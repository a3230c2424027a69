"""Quickstart: a classifier under a 10-bit accumulator budget, in the clear, simulated and encrypted.

Run with:  .venv/bin/python examples/quickstart.py
"""

import warnings

from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from fhe_estimators import NeuralNetClassifier, omega

warnings.filterwarnings("ignore")

X, y = load_breast_cancer(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)

print(f"Ω for 3-bit weights and activations, 10-bit accumulators: {omega(10, 3, 3)}")
model = NeuralNetClassifier(n_w_bits=3, n_a_bits=3, n_accum_bits=10, random_state=0)
model.fit(X_train, y_train)
for layer in model.pruning_report_:
    print(
        f"layer {layer['layer']}: fan-in {layer['fan_in']}, ≤ {layer['k']} weights per neuron "
        f"(max kept {layer['max_nonzero']}), worst-case accumulator {layer['accumulator_bits']} bits"
    )

model.compile()
print("accuracy in the clear:", model.score(X_test, y_test, fhe="disable"))
print("accuracy in FHE simulation:", model.score(X_test, y_test, fhe="simulate"))
print("two encrypted predictions:", model.predict(X_test[:2], fhe="execute"), "true:", y_test[:2])
