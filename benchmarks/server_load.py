"""Load on the encrypted-inference service: rows/s and p50/p95 latency with 1, 2 and 4 concurrent clients.

The classifier on breast cancer (StandardScaler, test_size=0.25, random_state=0) at
``--budget`` (default 3,3,10; fixed weight decay 1e-4, one fit), compiled and saved; the
service (`fhe-estimators serve`, ``--workers`` threads, OMP_NUM_THREADS=1) runs as a
subprocess on loopback. Each client is a ``RemoteClient`` with its own keys, uploaded and
warmed up (one request: the server deserializes its keys) before timing. Then for each
client count, every client sends ``--requests`` requests of one row each, back to back;
latency is per request as the client sees it (encrypt + HTTP + evaluate + decrypt).
Writes benchmarks/results/server_load.md and .json.

Run:  .venv/bin/python benchmarks/server_load.py [--requests 8] [--clients 1 2 4] [--workers 2]
"""

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from fhe_estimators import NeuralNetClassifier, RemoteClient

warnings.filterwarnings("ignore")
RESULTS = Path(__file__).parent / "results" / "server_load"


def start_service(server_dir: Path, workers: int, log_path: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "fhe_estimators.cli", "serve", str(server_dir), "--port", str(port)]
    command += ["--workers", str(workers), "--queue-size", "64"]
    with open(log_path, "wb") as log:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(url + "/health", timeout=2).close()
            return process, url
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit(f"the service did not start; see {log_path}")


def load_level(clients: list[RemoteClient], rows: np.ndarray, requests: int) -> dict:
    """Every client sends ``requests`` one-row requests at once; throughput and latency percentiles."""
    latencies, errors = [], []

    def work(index: int, client: RemoteClient) -> None:
        for request in range(requests):
            row = rows[(index * requests + request) % len(rows)][None, :]
            start = time.perf_counter()
            try:
                client.predict(row)
            except Exception as error:  # reported in the results
                errors.append(repr(error))
            latencies.append(time.perf_counter() - start)

    threads = [threading.Thread(target=work, args=item) for item in enumerate(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    total = len(clients) * requests
    return {
        "clients": len(clients),
        "requests": total,
        "seconds": round(wall, 2),
        "rows_per_s": round(total / wall, 3),
        "p50_s": round(float(np.percentile(latencies, 50)), 3),
        "p95_s": round(float(np.percentile(latencies, 95)), 3),
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8, help="one-row requests per client per level")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--workers", type=int, default=2, help="the service's --workers")
    parser.add_argument("--budget", default="3,3,10", help="n_w_bits,n_a_bits,n_accum_bits")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]  # other work on the machine distorts every figure below
    n_w, n_a, n_accum = (int(part) for part in args.budget.split(","))

    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.25, random_state=0)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    model = NeuralNetClassifier(
        n_w_bits=n_w, n_a_bits=n_a, n_accum_bits=n_accum, optimizer__weight_decay=1e-4, random_state=0
    )
    model.fit(X_train, y_train).compile()
    workdir = Path(tempfile.mkdtemp(prefix="fhe_server_load_"))
    model.save(workdir / "model")
    circuit = model.circuit_report_
    print(f"model: max bit-width {circuit.max_bit_width}, {circuit.pbs_count} PBS", flush=True)

    process, url = start_service(workdir / "model" / "server", args.workers, workdir / "server.log")
    try:
        clients = [RemoteClient(url, workdir / "model" / "client") for _ in range(max(args.clients))]
        start = time.perf_counter()
        for client in clients:
            client.upload_keys()
            client.predict(X_test[:1])  # warm-up: the server deserializes this client's keys once
        setup_s = (time.perf_counter() - start) / len(clients)
        keys_mb = len(clients[0].client.evaluation_keys()) / 1e6
        print(f"per client: keys {keys_mb:.0f} MB, keygen + upload + first request {setup_s:.1f} s", flush=True)
        levels = []
        for count in args.clients:
            levels.append(load_level(clients[:count], X_test, args.requests))
            print(levels[-1], flush=True)
        info = json.loads(urllib.request.urlopen(url + "/info", timeout=30).read())
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)  # the saved model and the service's stored keys

    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_average_before": round(load_before, 2),
        "model": f"NeuralNetClassifier breast cancer ({n_w},{n_a},{n_accum}), max bit-width "
        f"{circuit.max_bit_width}, {circuit.pbs_count} PBS",
        "workers": args.workers,
        "keys_mb": round(keys_mb, 1),
        "setup_s_per_client": round(setup_s, 1),
        "key_cache": info["key_cache"],
        "levels": levels,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".json").write_text(json.dumps(results, indent=2))
    lines = [
        "# Encrypted-inference service under load",
        "",
        f"Generated by `benchmarks/server_load.py` on {results['machine']} (1-minute load average before the run: "
        f"{results['load_average_before']}).",
        f"Model: {results['model']}; evaluation keys {results['keys_mb']} MB per client. Service: "
        f"`fhe-estimators serve --workers {args.workers}`, OMP_NUM_THREADS=1, on loopback. Each client has its own "
        f"keys (keygen + upload + first request: {results['setup_s_per_client']} s per client, not timed below); "
        f"each sends {args.requests} one-row requests back to back. Latency: encrypt + HTTP + evaluate + decrypt.",
        "",
        "| concurrent clients | requests | seconds | rows / s | p50 latency (s) | p95 latency (s) | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for level in levels:
        lines.append(
            f"| {level['clients']} | {level['requests']} | {level['seconds']} | {level['rows_per_s']} | "
            f"{level['p50_s']} | {level['p95_s']} | {len(level['errors'])} |"
        )
    cache = info["key_cache"]
    lines += ["", f"Key cache after the run ({len(clients)} clients, whose keys were deserialized once, at upload): "
              f"{cache['loads']} loads from disk, {cache['hits']} hits."]
    RESULTS.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"written {RESULTS.with_suffix('.md')}")


if __name__ == "__main__":
    main()
