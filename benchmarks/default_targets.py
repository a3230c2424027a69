"""Issue 3's targets: FHE-simulated test scores at (3,3,10) with default settings, several seeds.

Same splits as the other benchmarks (StandardScaler, test_size=0.25, random_state=0); a float
scikit-learn MLP on the same split is the reference.

Run:  .venv/bin/python benchmarks/default_targets.py [--seeds 0 1 2]
"""

import argparse
import os
import warnings

# One torch/BLAS thread, as the generalization benchmark: the thread count changes float summation
# order and can move a score (digits seed 2 read 0.960 and 0.949 in two earlier runs, which did not pin it).
for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402
from pruning_ablation import DATASETS, float_ceiling, split

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor

warnings.filterwarnings("ignore")
TARGETS = {"breast_cancer": 0.96, "iris": 0.95, "digits": 0.90, "diabetes": 0.35}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    print("| data set | seeds | FHE-simulated score per seed | mean | target | float MLP |")
    print("|---|---|---|---|---|---|")
    for name, (loader, task) in DATASETS.items():
        X_train, X_test, y_train, y_test = split(loader)
        estimator = NeuralNetClassifier if task == "classification" else NeuralNetRegressor
        scores = []
        for seed in args.seeds:
            model = estimator(random_state=seed).fit(X_train, y_train).compile()
            scores.append(model.score(X_test, y_test, fhe="simulate"))
        ceiling = float_ceiling(task, X_train, X_test, y_train, y_test)
        per_seed = ", ".join(f"{s:.3f}" for s in scores)
        print(f"| {name} | {args.seeds} | {per_seed} | {np.mean(scores):.3f} | ≥ {TARGETS[name]} | {ceiling:.3f} |", flush=True)


if __name__ == "__main__":
    main()
