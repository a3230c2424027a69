"""Grid search that picks the fastest encrypted model within 0.01 of the best accuracy.

``latency_scorer`` prices every fitted candidate with the FHE cost model (no
compilation, no encryption), ``fastest_within`` is the ``refit=`` rule: among the
candidates whose mean CV accuracy is within the tolerance of the best, the one
with the lowest predicted latency per encrypted prediction wins.

Run with:  .venv/bin/python examples/fastest_within_tolerance.py [--quick]
"""

import argparse
import warnings

from sklearn.datasets import load_breast_cancer
from sklearn.metrics import accuracy_score
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from fhe_estimators import NeuralNetClassifier
from fhe_estimators.scoring import fastest_within, latency_scorer

warnings.filterwarnings("ignore")

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="a smaller grid and fewer epochs (for tests)")
args = parser.parse_args()

X, y = load_breast_cancer(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)

# tighten=False: the grid, not the estimator's own search, explores the budgets here.
network = NeuralNetClassifier(max_epochs=20 if args.quick else 60, tighten=False, random_state=0)
pipe = Pipeline([("scale", StandardScaler()), ("nn", network)])
grid = {
    "nn__n_accum_bits": [7, 10] if args.quick else [6, 7, 8, 10],
    "nn__hidden_layer_sizes": [(8,), (32,)] if args.quick else [(8,), (16,), (32,)],
}
search = GridSearchCV(
    pipe,
    grid,
    cv=3,
    scoring={"accuracy": "accuracy", "latency": latency_scorer},
    refit=fastest_within(0.01, score="accuracy", cost="latency"),
).fit(X_train, y_train)

results = search.cv_results_
print("accumulator bits | hidden | CV accuracy | predicted latency s")
for index, params in enumerate(results["params"]):
    print(
        f"{params['nn__n_accum_bits']:>16} | {str(params['nn__hidden_layer_sizes']):>6} | "
        f"{results['mean_test_accuracy'][index]:>11.3f} | {-results['mean_test_latency'][index]:.3f}"
    )
chosen = search.best_index_
print(f"chosen: {results['params'][chosen]} (within 0.01 of the best CV accuracy, lowest predicted latency)")
simulated = search.best_estimator_.predict(X_test, fhe="simulate")  # the compiled circuit, simulated
print(f"test accuracy in FHE simulation: {accuracy_score(y_test, simulated):.3f}")
