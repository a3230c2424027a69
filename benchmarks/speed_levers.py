"""Issue 4's speed target, lever by lever: breast cancer under the (3,3,10) budget, one run.

Every row is a model that fits the (n_w, n_a, n_accum) = (3, 3, 10) budget; the anchor is
Concrete ML's built-in NeuralNetClassifier at the same bits and epochs. Levers measured on ours:
- defaults (the exact budget fills the 10-bit accumulators);
- a tighter accumulator, chosen on the training data only: 3-fold CV of FHE-simulated accuracy for
  n_accum_bits in 6..10, keeping the smallest whose mean is within 0.01 of the best (tighter
  accumulators are narrower table lookups, hence smaller keys and faster PBS);
- fewer neurons (hidden_layer_sizes=(16,), and neuron_removal=0.5);
- p_error=0.01 per PBS (Concrete then picks cheaper parameters, at a small risk of a wrong lookup);
- and the levers combined.

Writes benchmarks/results/speed_levers.md. Run:  .venv/bin/python benchmarks/speed_levers.py
"""

import os
import warnings
from pathlib import Path

import numpy as np
from sklearn.model_selection import GridSearchCV

from fhe_estimators import NeuralNetClassifier
from fhe_estimators.benchmarking import describe_environment, load_split, measure_builtin, measure_compiled
from fhe_estimators.pbs_costs import load_pbs_costs

warnings.filterwarnings("ignore")
os.environ.setdefault("PYTHONWARNINGS", "ignore")
RESULTS = Path(__file__).parent / "results" / "speed_levers.md"
BUDGET = {"n_w_bits": 3, "n_a_bits": 3, "n_accum_bits": 10}
#: The levers one by one, from the defaults before issue 12 (no automatic tightening, Concrete's p_error).
BEFORE = {"tighten": False, "p_error": None}
N_SAMPLES = 3


def tightest_accumulator(X_train, y_train) -> tuple[int, dict]:
    """Smallest n_accum_bits ≤ 10 whose 3-fold FHE-simulated CV accuracy is within 0.01 of the best."""
    search = GridSearchCV(
        NeuralNetClassifier(**BUDGET, **BEFORE, fhe="simulate", random_state=0),
        {"n_accum_bits": [6, 7, 8, 9, 10]},
        cv=3,
        n_jobs=2,
    ).fit(X_train, y_train)
    scores = {params["n_accum_bits"]: score for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"])}
    best = max(scores.values())
    return min(bits for bits, score in scores.items() if score >= best - 0.01), scores


def main():
    split = load_split("breast_cancer")
    X_train, _, y_train, _ = split
    costs = load_pbs_costs()
    tight_bits, cv_scores = tightest_accumulator(X_train, y_train)
    print(f"CV (FHE-simulated) accuracy per n_accum_bits: {cv_scores}; chosen {tight_bits}", flush=True)

    variants = {
        "ours, defaults": {},
        f"ours, accumulators tightened to {tight_bits} bits by CV": {"n_accum_bits": tight_bits},
        "ours, hidden (16,)": {"hidden_layer_sizes": (16,)},
        "ours, neuron_removal=0.5": {"neuron_removal": 0.5},
        "ours, p_error=0.01": {"p_error": 0.01},
        f"ours, {tight_bits}-bit accumulators + hidden (16,) + p_error=0.001": {
            "n_accum_bits": tight_bits,
            "hidden_layer_sizes": (16,),
            "p_error": 0.001,
        },
        f"ours, {tight_bits}-bit accumulators + hidden (16,) + p_error=0.01": {
            "n_accum_bits": tight_bits,
            "hidden_layer_sizes": (16,),
            "p_error": 0.01,
        },
        f"ours, {tight_bits}-bit accumulators + hidden (16,) + neuron_removal=0.5 + p_error=0.01": {
            "n_accum_bits": tight_bits,
            "hidden_layer_sizes": (16,),
            "neuron_removal": 0.5,
            "p_error": 0.01,
        },
    }
    rows = [measure_builtin("breast_cancer", "classification", "(3,3,10)", split, N_SAMPLES, costs, epochs=100)]
    print(rows[-1], flush=True)
    for name, params in variants.items():
        model = NeuralNetClassifier(**{**BUDGET, **BEFORE, **params}, random_state=0)
        args = ("breast_cancer", "classification", "(3,3,10)", split, y_train, None, N_SAMPLES, costs)
        rows.append(measure_compiled(model, name, *args))
        print(rows[-1], flush=True)

    anchor = rows[0].latency_s
    lines = [
        "# Speed levers on breast cancer, (3,3,10) budget",
        "",
        f"`benchmarks/speed_levers.py`, one run on {describe_environment()}"
        + f". Latency: median of {N_SAMPLES} samples (encrypt + run + decrypt); floor = Σ PBS × measured cost "
        "of one PBS at its equivalent bit-width (see docs/benchmark.md).",
        "",
        "CV accuracy (3 folds, training data, FHE-simulated) per `n_accum_bits`: "
        + ", ".join(f"{bits}: {score:.3f}" for bits, score in cv_scores.items())
        + f" → {tight_bits} bits (smallest within 0.01 of the best).",
        "",
        "| model | FHE-simulated accuracy | max bits | PBS | keygen s | latency s | floor s | latency / built-in | latency / floor | execute = simulate |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.model} | {row.simulated_score:.3f} | {row.max_bit_width} | {row.pbs_count} | {row.keygen_s:.1f} "
            f"| {row.latency_s:.2f} | {row.floor_s:.2f} | {row.latency_s / anchor:.2f} | {row.latency_s / row.floor_s:.2f} "
            f"| {row.execute_matches_simulate} |"
        )
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    print(f"wrote {RESULTS}; accuracies {np.round([row.simulated_score for row in rows], 3)}")


if __name__ == "__main__":
    main()
