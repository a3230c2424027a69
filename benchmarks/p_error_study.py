"""What a larger p_error buys on our circuits, and whether encrypted still equals simulated.

For each data set of the benchmark, the default model under the (3,3,10) budget (search on) is
fitted once, then compiled at each p_error; each compile gets fresh keys, and N_SAMPLES test rows
are run encrypted and compared with the FHE simulation of the same compile (labels for the
classifiers, values for the regressor). Writes benchmarks/results/p_error_study.md and .json.
Run:  .venv/bin/python benchmarks/p_error_study.py   (about 20 minutes on 2 cores)
"""

import json
import statistics
import time
import warnings
from pathlib import Path

import numpy as np

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor
from fhe_estimators import runtime
from fhe_estimators.benchmarking import DATASETS, describe_environment, load_split

warnings.filterwarnings("ignore")
RESULTS = Path(__file__).parent / "results" / "p_error_study"
BUDGET = {"n_w_bits": 3, "n_a_bits": 3, "n_accum_bits": 10}
P_ERRORS = (None, 1e-9, 1e-6, 1e-4, 1e-2)
N_SAMPLES = 10


def measure(model, X_test, y_test, task: str, p_error) -> dict:
    model.compile(p_error=p_error)
    circuit = model.quantized_module_.fhe_circuit
    simulated = model.predict(X_test, fhe="simulate")
    score = float(model.score(X_test, y_test, fhe="simulate"))
    keygen_s = runtime.keygen(model.quantized_module_)
    keys_mb = len(circuit.keys.evaluation.serialize()) / 1e6
    times, equal = [], []
    for index in range(N_SAMPLES):
        start = time.perf_counter()
        encrypted = model.predict(X_test[index : index + 1], fhe="execute")
        times.append(time.perf_counter() - start)
        same = encrypted[0] == simulated[index] if task == "classification" else np.isclose(encrypted[0], simulated[index])
        equal.append(bool(same))
    return {
        "p_error": p_error,
        "max_bit_width": int(circuit.graph.maximum_integer_bit_width()),
        "pbs_count": int(circuit.statistics.get("programmable_bootstrap_count", 0)),
        "simulated_score": score,
        "keygen_s": keygen_s,
        "evaluation_key_mb": keys_mb,
        "latency_s": statistics.median(times),
        "encrypted_equal_simulated": f"{sum(equal)}/{len(equal)}",
    }


def main() -> None:
    rows = []
    for dataset, task in DATASETS.items():
        X_train, X_test, y_train, y_test = load_split(dataset)
        model = (NeuralNetClassifier if task == "classification" else NeuralNetRegressor)(**BUDGET, random_state=0)
        model.fit(X_train, y_train)
        for p_error in P_ERRORS:
            row = {"dataset": dataset, **measure(model, X_test, y_test, task, p_error)}
            rows.append(row)
            print(row, flush=True)
    RESULTS.with_suffix(".json").write_text(json.dumps({"environment": describe_environment(), "rows": rows}, indent=1))
    lines = [
        "# p_error: what a larger PBS error probability buys, and whether encrypted = simulated",
        "",
        f"`benchmarks/p_error_study.py`, one run on {describe_environment()}. Default models under the (3,3,10) "
        f"budget (search on), one fit per data set, compiled at each p_error with fresh keys; {N_SAMPLES} test rows "
        "encrypted (median latency: encrypt + run + decrypt) and compared with the simulation of the same compile. "
        "p_error None is Concrete ML's default, 2^-40.",
        "",
        "| data set | p_error | max bits | PBS | FHE-simulated score | keygen s | eval keys MB | latency s | encrypted = simulated |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['dataset']} | {row['p_error'] if row['p_error'] is not None else '2^-40'} | {row['max_bit_width']} "
            f"| {row['pbs_count']} | {row['simulated_score']:.3f} | {row['keygen_s']:.1f} | {row['evaluation_key_mb']:.0f} "
            f"| {row['latency_s']:.3f} | {row['encrypted_equal_simulated']} |"
        )
    RESULTS.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
