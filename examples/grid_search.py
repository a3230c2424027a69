"""Grid search over the FHE budget: pick the best model as it will run encrypted.

The estimator is built with ``fhe="simulate"``, so every cross-validation score
GridSearchCV computes comes from the compiled FHE circuit, simulated: the
search ranks models by the accuracy they will really have in FHE, and each
candidate's accumulators fit its own ``n_accum_bits`` by construction.

Run with:  .venv/bin/python examples/grid_search.py [--quick]
"""

import argparse
import os
import time
import warnings

from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from fhe_estimators import NeuralNetClassifier

warnings.filterwarnings("ignore")
os.environ.setdefault("PYTHONWARNINGS", "ignore")  # quiet the search's worker processes too

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="a smaller grid and fewer epochs (for tests)")
args = parser.parse_args()

X, y = load_breast_cancer(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)

pipe = Pipeline(
    [
        ("scale", StandardScaler()),
        ("nn", NeuralNetClassifier(max_epochs=20 if args.quick else 60, fhe="simulate", random_state=0)),
    ]
)
grid = {
    "nn__n_accum_bits": [7, 10] if args.quick else [7, 8, 10],
    "nn__n_hidden_neurons_multiplier": [1.0] if args.quick else [0.5, 1.0],
    "nn__hidden_layer_sizes": [(16,)] if args.quick else [(16,), (32,)],
}
start = time.perf_counter()
search = GridSearchCV(pipe, grid, cv=3, n_jobs=2).fit(X_train, y_train)
print(f"{len(search.cv_results_['params'])} candidates × 3 folds in {time.perf_counter() - start:.0f} s")
print("accumulator bits | multiplier | hidden | FHE-simulated CV accuracy")
for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
    print(
        f"{params['nn__n_accum_bits']:>16} | {params['nn__n_hidden_neurons_multiplier']:>10} | "
        f"{str(params['nn__hidden_layer_sizes']):>6} | {score:.3f}"
    )

best = search.best_estimator_
network = best[-1]
network.compile()  # on the (scaled) calibration sample the network kept at fit
report = network.circuit_report_
print(f"best: {search.best_params_}")
print(
    f"best model: worst-case accumulators {network.accumulator_bits_} bits (budget {network.n_accum_bits}), "
    f"circuit {report.max_bit_width} bits, {report.pbs_count} PBS"
)
print(f"test accuracy in FHE simulation: {best.score(X_test, y_test):.3f}")
