"""Encrypted prediction through the HTTP service: `fhe-estimators serve` + `RemoteClient`.

1. The model owner trains, compiles and saves a small classifier:  model/client, model/server.
2. The service starts on model/server (here a subprocess on a free loopback port; in production
   `fhe-estimators serve model/server --host 0.0.0.0 --state-dir /var/lib/fhe`).
3. The client (model/client, which keeps the secret key) uploads its evaluation keys once,
   then encrypts rows, sends them, and decrypts: the same labels as ``predict(X, fhe="simulate")``.
4. The service is stopped.

Run with:  .venv/bin/python examples/remote_client.py [--rows 4]
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
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
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--rows", type=int, default=4, help="rows to predict encrypted")
args = parser.parse_args()
workdir = Path(tempfile.mkdtemp(prefix="fhe_remote_client_"))

# 1. Model owner: a narrow circuit (6-bit accumulators) so that keys take seconds ----------
X, y = load_breast_cancer(return_X_y=True)
X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.25, random_state=0)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
labels = np.array(["malignant", "benign"])
model = NeuralNetClassifier(  # a fixed weight decay: one fit instead of the hold-out choice among five
    hidden_layer_sizes=(8,), n_w_bits=2, n_a_bits=2, n_accum_bits=6, max_epochs=15, optimizer__weight_decay=1e-4,
    random_state=0,
).fit(X_train, labels[y_train])
model.compile().save(workdir / "model")
print(f"[owner]   saved {workdir / 'model'}")

# 2. The service ---------------------------------------------------------------------------
with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
url = f"http://127.0.0.1:{port}"
command = [sys.executable, "-m", "fhe_estimators.cli", "serve", str(workdir / "model" / "server"), "--port", str(port)]
log = open(workdir / "server.log", "wb")
server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={"OMP_NUM_THREADS": "1", **os.environ})
try:
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                print(f"[service] {url} answers /health: {response.read().decode()}")
                break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the service did not start; see {workdir / 'server.log'}")
            time.sleep(0.3)

    # 3. Client ---------------------------------------------------------------------------
    client = RemoteClient(url, workdir / "model" / "client")  # checks model id and versions against /info
    start = time.perf_counter()
    client.upload_keys()
    print(f"[client]  keys generated and uploaded in {time.perf_counter() - start:.1f} s: key id {client.key_id[:16]}…")
    rows = X_test[: args.rows]
    start = time.perf_counter()
    decrypted = client.predict(rows)
    print(f"[client]  {len(rows)} rows predicted encrypted in {time.perf_counter() - start:.2f} s: {list(decrypted)}")
    simulated = model.predict(rows, fhe="simulate")
    print(f"[client]  simulated: {list(simulated)}")
    print(f"decrypted equals simulation: {bool(np.array_equal(decrypted, simulated))}")
finally:
    # 4. Stop the service (SIGTERM: uvicorn finishes what it was doing and exits) ---------------
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()
    print("[service] stopped")
    shutil.rmtree(workdir, ignore_errors=True)  # the saved model and the service's state dir (keys)
