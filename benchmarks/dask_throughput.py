"""Encrypted batch scoring throughput: one process (1 and 2 threads) vs a Dask LocalCluster (1 and 2 workers).

The default classifier on breast cancer (StandardScaler, test_size=0.25, random_state=0),
compiled and saved; the client encrypts ``--rows`` test rows once; each setting then
evaluates all of them and decrypts. Rows/second counts only the evaluation (for Dask
including shipping the server artifact and the evaluation keys to the workers, which a
long-running cluster pays once). Writes benchmarks/results/dask_throughput.md.

Run:  .venv/bin/python benchmarks/dask_throughput.py [--rows 8] [--budget 3,3,10]
"""

import argparse
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from distributed import Client, LocalCluster

from fhe_estimators import FHEServer, NeuralNetClassifier, load
from fhe_estimators.benchmarking import load_split, parse_budget
from fhe_estimators.scale_out import run_on_dask

warnings.filterwarnings("ignore")
os.environ.setdefault("PYTHONWARNINGS", "ignore")
RESULTS = Path(__file__).parent / "results" / "dask_throughput.md"


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--budget", default="3,3,10", help="n_w,n_a,n_accum")
    args = parser.parse_args()
    n_w, n_a, n_accum = parse_budget(args.budget)

    X_train, X_test, y_train, _ = load_split("breast_cancer")
    model = NeuralNetClassifier(n_w_bits=n_w, n_a_bits=n_a, n_accum_bits=n_accum, random_state=0)
    model.fit(X_train, y_train).compile()
    directory = model.save(Path(tempfile.mkdtemp()) / "model")
    deployed = load(directory)
    keys, keygen_s = timed(deployed.client.evaluation_keys)
    rows = X_test[: args.rows]
    ciphertexts = deployed.client.encrypt(rows)
    expected = model.predict(rows, fhe="simulate")

    lines = []
    for threads in (1, 2):
        server = FHEServer(directory / "server")  # fresh: each setting deserializes the keys itself
        results, seconds = timed(lambda: server.run_many(ciphertexts, keys, n_jobs=threads))  # noqa: B023
        assert np.array_equal(deployed.client.decrypt(results), expected)
        lines.append(f"| one process, {threads} thread{'s' * (threads > 1)} | {seconds:.1f} | {len(rows) / seconds:.3f} |")
        print(lines[-1], flush=True)
    for workers in (1, 2):
        options = {"n_workers": workers, "threads_per_worker": 1, "processes": True, "host": "127.0.0.1"}
        with LocalCluster(dashboard_address=None, **options) as cluster, Client(cluster) as client:
            results, seconds = timed(lambda: run_on_dask(client, directory / "server", ciphertexts, keys))  # noqa: B023
        assert np.array_equal(deployed.client.decrypt(results), expected)
        lines.append(f"| Dask LocalCluster, {workers} worker{'s' * (workers > 1)} | {seconds:.1f} | {len(rows) / seconds:.3f} |")
        print(lines[-1], flush=True)

    report = model.circuit_report_
    RESULTS.write_text(
        "# Encrypted batch scoring throughput\n\n"
        f"`benchmarks/dask_throughput.py --rows {args.rows} --budget {args.budget}` on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores. Default classifier on breast cancer, (n_w, n_a, n_accum) = ({n_w}, {n_a}, {n_accum}): "
        f"circuit {report.max_bit_width} bits, {report.pbs_count} PBS; evaluation keys "
        f"{len(keys) / 1e6:.0f} MB, generated in {keygen_s:.1f} s. Every setting's decrypted labels equal "
        "`predict(fhe=\"simulate\")`. Every time includes deserializing the evaluation keys (once per process); "
        "Dask times also include shipping the server artifact and keys to the workers.\n\n"
        "| setting | seconds | rows / second |\n|---|---|---|\n" + "\n".join(lines) + "\n",
        encoding="utf-8",
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
