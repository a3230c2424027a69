"""Pruning ablation: the Concrete ML recipe vs one-shot vs gradual vs gradual + exact budget.

For each data set (breast cancer, iris, digits, diabetes; StandardScaler, test_size=0.25,
random_state=0) and bit budget (n_w, n_a, n_accum) in (2,2,8), (3,3,10), (4,4,12), trains one model
per method and reports FHE-simulated test accuracy (R² for diabetes), weight sparsity and the
circuit's PBS count. A float scikit-learn MLP on the same split is the ceiling.

Run:  .venv/bin/python benchmarks/pruning_ablation.py [--out benchmarks/results/pruning_ablation.json]
"""

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.preprocessing import StandardScaler

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor

warnings.filterwarnings("ignore")

DATASETS = {
    "breast_cancer": (load_breast_cancer, "classification"),
    "iris": (load_iris, "classification"),
    "digits": (load_digits, "classification"),
    "diabetes": (load_diabetes, "regression"),
}
BUDGETS = [(2, 2, 8), (3, 3, 10), (4, 4, 12)]
METHODS = {
    "initial mask, frozen (Concrete ML recipe)": dict(pruning="initial", pruning_budget="count"),
    "one-shot after training": dict(pruning="oneshot", pruning_budget="count"),
    "gradual": dict(pruning="gradual", pruning_budget="count"),
    "gradual + exact budget": dict(pruning="gradual", pruning_budget="exact"),
}


def split(loader):
    X, y = loader(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def float_ceiling(task, X_train, X_test, y_train, y_test):
    model = (MLPClassifier if task == "classification" else MLPRegressor)(max_iter=2000, random_state=0)
    return float(model.fit(X_train, y_train).score(X_test, y_test))


def run_one(task, params, bits, data, random_state=0):
    X_train, X_test, y_train, y_test = data
    n_w, n_a, n_accum = bits
    estimator = NeuralNetClassifier if task == "classification" else NeuralNetRegressor
    model = estimator(n_w_bits=n_w, n_a_bits=n_a, n_accum_bits=n_accum, random_state=random_state, **params)
    start = time.perf_counter()
    model.fit(X_train, y_train).compile()
    weights = sum(layer["fan_in"] * layer["neurons"] for layer in model.pruning_report_)
    kept = sum(layer["mean_nonzero"] * layer["neurons"] for layer in model.pruning_report_)
    return {
        "simulated_score": float(model.score(X_test, y_test, fhe="simulate")),
        "sparsity": float(1 - kept / weights),
        "pbs": model.circuit_report_.pbs_count,
        "max_bit_width": model.circuit_report_.max_bit_width,
        "accumulator_bits": model.accumulator_bits_,
        "seconds": time.perf_counter() - start,
    }


def write_report(results: list[dict], markdown_path: Path, plot_path: Path) -> None:
    """A markdown table (one row per data set and budget) and a bar plot of the scores."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(METHODS)
    lines = [
        "| data set | bits (w, a, accum) | float MLP | " + " | ".join(methods) + " |",
        "|---|---|---|" + "---|" * len(methods),
    ]
    keys = sorted({(r["dataset"], tuple(r["bits"])) for r in results}, key=lambda k: (list(DATASETS).index(k[0]), k[1]))
    for dataset, bits in keys:
        rows = {r["method"]: r for r in results if r["dataset"] == dataset and tuple(r["bits"]) == bits}
        cells = [
            f"{rows[m]['simulated_score']:.3f} ({rows[m]['sparsity']:.0%}, {rows[m]['pbs']} PBS)" if m in rows else "-"
            for m in methods
        ]
        ceiling = next(iter(rows.values()))["float_mlp"]
        lines.append(f"| {dataset} | {bits} | {ceiling:.3f} | " + " | ".join(cells) + " |")
    markdown_path.write_text("\n".join(lines) + "\n")

    datasets = [d for d in DATASETS if any(r["dataset"] == d for r in results)]
    figure, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 4), squeeze=False)
    width = 0.8 / len(methods)
    for axis, dataset in zip(axes[0], datasets):
        budgets = [b for b in BUDGETS if any(r["dataset"] == dataset and tuple(r["bits"]) == b for r in results)]
        for index, method in enumerate(methods):
            scores = [
                next((r["simulated_score"] for r in results if r["dataset"] == dataset and tuple(r["bits"]) == b and r["method"] == method), np.nan)
                for b in budgets
            ]
            axis.bar(np.arange(len(budgets)) + index * width, scores, width, label=method)
        ceiling = next(r["float_mlp"] for r in results if r["dataset"] == dataset)
        axis.axhline(ceiling, color="black", linestyle="--", label="float MLP")
        axis.set_xticks(np.arange(len(budgets)) + 0.4 - width / 2, [str(b) for b in budgets])
        axis.set_title(f"{dataset} ({'R²' if DATASETS[dataset][1] == 'regression' else 'accuracy'}, FHE-simulated)")
        axis.set_ylim(max(0.0, min(r["simulated_score"] for r in results if r["dataset"] == dataset) - 0.1), 1.0)
        axis.set_xlabel("(n_w, n_a, n_accum)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize="small")
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    figure.savefig(plot_path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="benchmarks/results/pruning_ablation.json")
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    parser.add_argument("--report-only", nargs="*", help="JSON result files to merge into the report, without training")
    parser.add_argument("--markdown", default="benchmarks/results/pruning_ablation.md")
    parser.add_argument("--plot", default="docs/pruning_ablation.png")
    args = parser.parse_args()
    if args.report_only:
        results = [row for path in args.report_only for row in json.loads(Path(path).read_text())]
        Path(args.out).write_text(json.dumps(results, indent=1))
        write_report(results, Path(args.markdown), Path(args.plot))
        return
    results = []
    for name in args.datasets:
        loader, task = DATASETS[name]
        data = split(loader)
        ceiling = float_ceiling(task, *data)
        for bits in BUDGETS:
            for method, params in METHODS.items():
                row = {"dataset": name, "bits": bits, "method": method, "float_mlp": ceiling}
                row.update(run_one(task, params, bits, data))
                results.append(row)
                print(
                    f"{name:13s} {str(bits):11s} {method:42s} score {row['simulated_score']:.3f} "
                    f"(float {ceiling:.3f})  sparsity {row['sparsity']:.2f}  PBS {row['pbs']}",
                    flush=True,
                )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    write_report(results, Path(args.markdown), Path(args.plot))


if __name__ == "__main__":
    main()
