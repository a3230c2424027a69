"""Client/server encrypted prediction, every exchange through bytes on disk.

1. The model owner trains, compiles and saves:  model/client (for the data owner), model/server.
2. The client loads model/client, generates keys, encrypts rows and writes keys + ciphertexts.
3. The server loads model/server (no secret key in it), reads the files, evaluates, writes results.
4. The client reads the results and decrypts: the same labels as ``predict(X, fhe="simulate")``.

Run with:  .venv/bin/python examples/client_server.py [--rows 3] [--workdir DIR]
"""

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from fhe_estimators import FHEClient, FHEServer, NeuralNetClassifier

warnings.filterwarnings("ignore")


def size(path: Path) -> str:
    total = sum(file.stat().st_size for file in path.rglob("*") if file.is_file()) if path.is_dir() else path.stat().st_size
    return f"{total / 1e6:.2f} MB" if total >= 1e5 else f"{total / 1e3:.1f} kB"


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--rows", type=int, default=3, help="rows to predict encrypted")
parser.add_argument("--workdir", type=Path, default=None, help="where the exchanged files go (default: a temp dir)")
args = parser.parse_args()
workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fhe_client_server_"))
workdir.mkdir(parents=True, exist_ok=True)

# 1. Model owner ------------------------------------------------------------------
X, y = load_breast_cancer(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
labels = np.array(["malignant", "benign"])
model = NeuralNetClassifier(random_state=0).fit(X_train, labels[y_train]).compile()
model.save(workdir / "model")
print(f"[owner]  saved model/client ({size(workdir / 'model' / 'client')}) and model/server ({size(workdir / 'model' / 'server')})")

# 2. Client: keys and ciphertexts --------------------------------------------------
client = FHEClient(workdir / "model" / "client")  # keys in memory; key_dir=... keeps them on disk
start = time.perf_counter()
(workdir / "evaluation_keys.bin").write_bytes(client.evaluation_keys())
print(f"[client] keys generated in {time.perf_counter() - start:.1f} s; evaluation keys {size(workdir / 'evaluation_keys.bin')}")
rows = X_test[: args.rows]
start = time.perf_counter()
for index, ciphertext in enumerate(client.encrypt(rows)):
    (workdir / f"input_{index}.bin").write_bytes(ciphertext)
print(f"[client] {len(rows)} rows encrypted in {time.perf_counter() - start:.2f} s; one ciphertext {size(workdir / 'input_0.bin')}")

# 3. Server: only the server directory, evaluation keys and ciphertexts --------------
server = FHEServer(workdir / "model" / "server")
ciphertexts = [(workdir / f"input_{index}.bin").read_bytes() for index in range(len(rows))]
start = time.perf_counter()
results = server.run_many(ciphertexts, (workdir / "evaluation_keys.bin").read_bytes())
elapsed = time.perf_counter() - start
for index, result in enumerate(results):
    (workdir / f"output_{index}.bin").write_bytes(result)
print(f"[server] {len(rows)} rows evaluated in {elapsed:.2f} s ({elapsed / len(rows):.2f} s per row); one result {size(workdir / 'output_0.bin')}")

# 4. Client: decrypt ---------------------------------------------------------------
received = [(workdir / f"output_{index}.bin").read_bytes() for index in range(len(rows))]
decrypted = client.decrypt(received)
simulated = model.predict(rows, fhe="simulate")
print(f"[client] decrypted: {list(decrypted)}")
print(f"[client] simulated: {list(simulated)}  (true: {list(labels[y_test[: args.rows]])})")
print(f"decrypted equals simulation: {bool(np.array_equal(decrypted, simulated))}")
print(f"files exchanged in {workdir}")
