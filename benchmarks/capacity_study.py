"""Where the 3-class set's gap to the float MLP goes: hidden width against accumulator bits.

On ``clf_3class`` of ``generalization.py`` (20 features, 10 informative, 3 classes, 1,500 rows) the
defaults stay 0.03-0.06 behind the better float MLP on every seed. That MLP has 100 hidden neurons
(0.883); the one with our 32 scores 0.835. This study trains the same estimator at several widths and
bit budgets, with the search off (``tighten=False``: the network as trained, not a cheaper circuit),
plus the defaults themselves, on the benchmark's split and seeds, and reports per configuration the
test accuracy in the clear (the quantized integer network, which FHE simulation reproduces), the
accumulator widths the fitted network needs per layer, the cost model's predicted latency per
encrypted sample (``estimate_cost``, this machine's PBS cost table or the package's fallback) and the
fit time. The question it answers: is the gap the bit budget, the width, or the training?

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/capacity_study.py [--seeds 0 1 2 3] [--dataset clf_3class]
      [--out PATH]   (one file per process when split over several)
      .venv/bin/python benchmarks/capacity_study.py --report-only PATH [PATH ...]
Writes benchmarks/results/capacity_study.json (after every fit) and capacity_study.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# First: generalization sets one torch/BLAS thread before numpy is imported.
from generalization import BASE_PARAMS, CLS, DATASETS, RESULTS, WITHIN, floats, load  # noqa: E402
from grid import collect_runs, merged_runs  # noqa: E402

import numpy as np  # noqa: E402

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor  # noqa: E402
from fhe_estimators.cost import estimate_cost, load_pbs_costs  # noqa: E402

warnings.filterwarnings("ignore")

OUT = RESULTS / "capacity_study.json"
#: (label, parameters over ``BASE_PARAMS``). The first is the defaults (with the search); the others
#: train without it, so that what is measured is the network a width and a budget allow.
CONFIGURATIONS: dict[str, dict] = {
    "defaults: (32,), (3,3,10), search on": {},
    "(32,), (3,3,10)": {"tighten": False},
    "(32,), (3,3,10), 4-bit inputs": {"tighten": False, "n_input_bits": 4},
    "(32,), (3,3,10), 5-bit inputs": {"tighten": False, "n_input_bits": 5},
    "(32,), (3,3,10), 5-bit inputs, multiplier 8": {"tighten": False, "n_input_bits": 5, "n_hidden_neurons_multiplier": 8.0},
    "(32,), (3,3,16)": {"tighten": False, "n_accum_bits": 16},
    "(64,), (3,3,10)": {"tighten": False, "hidden_layer_sizes": (64,)},
    "(100,), (3,3,10)": {"tighten": False, "hidden_layer_sizes": (100,)},
    "(100,), (3,3,12)": {"tighten": False, "hidden_layer_sizes": (100,), "n_accum_bits": 12},
    "(100,), (4,4,16)": {"tighten": False, "hidden_layer_sizes": (100,), "n_w_bits": 4, "n_a_bits": 4, "n_accum_bits": 16},
    # Depth instead of width: each layer's fan-in stays small enough for 10-bit accumulators.
    "(32, 16), (3,3,10)": {"tighten": False, "hidden_layer_sizes": (32, 16)},
    "(32, 32), (3,3,10)": {"tighten": False, "hidden_layer_sizes": (32, 32)},
    "(64, 32), (3,3,10)": {"tighten": False, "hidden_layer_sizes": (64, 32)},
    "(32, 32), (3,3,10), search on": {"hidden_layer_sizes": (32, 32)},
}


def measure(name: str, label: str, seed: int) -> dict:
    """One fit of configuration ``label`` on data set ``name``: its scores, accumulators and cost."""
    X_train, X_test, y_train, y_test = load(name)
    estimator_class = NeuralNetClassifier if DATASETS[name].task == CLS else NeuralNetRegressor
    model = estimator_class(**{**BASE_PARAMS, **CONFIGURATIONS[label], "random_state": seed})
    start = time.perf_counter()
    model.fit(X_train, y_train)
    fit_s = time.perf_counter() - start
    cost = estimate_cost(model)
    return {
        "dataset": name,
        "configuration": label,
        "seed": seed,
        "test_score": float(model.score(X_test, y_test)),
        "train_score": float(model.score(X_train, y_train)),
        "weight_decay": float(model.weight_decay_),
        "first_layer_density": float(model.first_layer_density_),
        "hidden_layer_sizes": [int(layer.out_features) for layer in model.module_.linears[:-1]],
        "accumulator_bits": [int(bits) for bits in model.accumulator_bits_],
        "predicted_latency_s": float(cost.latency_s),
        "predicted_pbs_count": int(cost.pbs_count),
        "pbs_cost_table": load_pbs_costs().source,
        "fit_s": fit_s,
    }


def report(runs: list[dict], anchors: dict) -> str:
    name = runs[0]["dataset"]
    best = anchors["best_float"]
    seeds = sorted({run["seed"] for run in runs})
    by_label = {label: sorted((run for run in runs if run["configuration"] == label), key=lambda run: run["seed"])
                for label in CONFIGURATIONS}
    by_label = {label: rows for label, rows in by_label.items() if rows}
    lines = [
        f"# Width against accumulator bits on `{name}`",
        "",
        f"Generated by `benchmarks/capacity_study.py` ({len(runs)} fits, seeds {', '.join(map(str, seeds))}, the split of "
        f"`generalization.py`). Float scikit-learn MLPs on the same split: (32,) {anchors['float_32']:.3f}, "
        f"(100,) {anchors['float_100']:.3f}. Test score in the clear (the quantized integer network; FHE simulation "
        "gives the same). Every configuration but the first trains without the search (`tighten=False`). "
        "Accumulator bits: the widest each layer needs over the seeds (hidden layers, then the output layer). "
        "Predicted latency: the cost model's, per encrypted sample, with the PBS cost table named in the last column.",
        "",
        "| configuration | test score per seed | mean | worst gap to the best float | seeds within "
        f"{WITHIN} | accumulator bits | hidden neurons kept | predicted latency (s) | fit (s) | cost table |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, rows in by_label.items():
        scores = [run["test_score"] for run in rows]
        bits = np.max([run["accumulator_bits"] for run in rows], axis=0)
        hidden = sorted({tuple(run["hidden_layer_sizes"]) for run in rows})
        tables = sorted({run["pbs_cost_table"] for run in rows})
        lines.append(
            f"| {label} | {' / '.join(f'{s:.3f}' for s in scores)} | {np.mean(scores):.3f} "
            f"| {best - min(scores):.3f} | {sum(best - s <= WITHIN for s in scores)} / {len(scores)} "
            f"| {', '.join(map(str, bits))} | {', '.join(map(str, hidden))} "
            f"| {np.mean([run['predicted_latency_s'] for run in rows]):.2f} | {np.mean([run['fit_s'] for run in rows]):.1f} "
            f"| {', '.join(tables)} |"
        )
    lines += ["", "Per fit, the setting the hold-out chose (penalty, first-layer density):", ""]
    lines += ["| configuration | " + " | ".join(f"seed {seed}" for seed in seeds) + " |", "|---|" + "---|" * len(seeds)]
    for label, rows in by_label.items():
        by_seed = {run["seed"]: run for run in rows}
        cells = [f"{by_seed[s]['weight_decay']:g}, {by_seed[s]['first_layer_density']:g}" if s in by_seed else "-" for s in seeds]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="clf_3class", choices=list(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    parser.add_argument("--configurations", nargs="+", choices=list(CONFIGURATIONS), default=list(CONFIGURATIONS))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--report-only", nargs="+", type=Path, help="rebuild the report from these JSON files")
    args = parser.parse_args()
    if args.report_only:
        order = lambda run: (list(CONFIGURATIONS).index(run["configuration"]), run["seed"])  # noqa: E731
        runs = merged_runs(args.report_only, order, OUT)
    else:
        jobs = [(args.dataset, label, seed) for seed in args.seeds for label in args.configurations]
        runs = collect_runs(jobs, measure, args.out, json.dumps)
    dataset = runs[0]["dataset"]
    anchors = floats(DATASETS[dataset].task, load(dataset))
    text = report(runs, anchors)
    (RESULTS / "capacity_study.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
