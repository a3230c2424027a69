"""The encrypted-inference service (``fhe-estimators serve``) and ``RemoteClient``, over loopback HTTP.

Servers run as subprocesses (``python -m fhe_estimators.cli serve``) on a free port
of 127.0.0.1 and are always killed by the fixtures' finalizers.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from fhe_estimators import FHEClient, NeuralNetClassifier, RemoteClient
from fhe_estimators.deploy import seal, unseal
from fhe_estimators.key_store import KeyCache, KeyStore
from fhe_estimators.wire import pack, unpack

# A narrow circuit: keys in seconds (27 MB), rows in a fraction of a second.
TINY = {"hidden_layer_sizes": (8,), "n_w_bits": 2, "n_a_bits": 2, "n_accum_bits": 6, "max_epochs": 15}
FOREIGN_MODEL = "0" * 32
fhe = pytest.mark.fhe_execute


# ---------------------------------------------------------------- helpers
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def call(method: str, url: str, body: bytes | None = None, timeout: float = 120):
    """(status, headers, body) of one request; error statuses are returned, not raised."""
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def error_of(body: bytes) -> str:
    return json.loads(body)["error"]


class Service:
    """``fhe-estimators serve`` in a subprocess, on a free loopback port."""

    def __init__(self, server_dir, state_dir, log_path, *options: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        command = [sys.executable, "-m", "fhe_estimators.cli", "serve", str(server_dir), "--port", str(self.port)]
        command += ["--state-dir", str(state_dir), *options]
        env = {"OMP_NUM_THREADS": "1", **os.environ}
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited ({self.process.returncode}):\n{self.log_path.read_text()[-3000:]}")
            try:
                if call("GET", self.url + "/health", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"the server did not answer /health within {timeout} s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def model(breast_cancer):
    X_train, _, y_train, _ = breast_cancer
    return NeuralNetClassifier(**TINY, random_state=0).fit(X_train, y_train).compile()


@pytest.fixture(scope="module")
def rows(model, breast_cancer):
    """Four test rows, of both predicted classes when the model predicts both."""
    X_test = breast_cancer[1]
    predicted = model.predict(X_test, fhe="simulate")
    picks = [np.flatnonzero(predicted == label)[:2] for label in model.classes_]
    return X_test[np.sort(np.concatenate(picks))[:4]]


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory):
    return model.save(tmp_path_factory.mktemp("served") / "model")


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    """Start services with ``start(...)``; every one is killed at the end of the module."""
    started, logs = [], tmp_path_factory.mktemp("logs")

    def start(server_dir, state_dir, *options):
        service = Service(server_dir, state_dir, logs / f"server{len(started)}.log", *options)
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="module")
def service(services, saved, state_dir):
    return services(saved / "server", state_dir, "--workers", "2", "--max-body-mb", "64")


@pytest.fixture(scope="module")
def remote(service, saved):
    """A RemoteClient whose keys are uploaded."""
    client = RemoteClient(service.url, saved / "client")
    client.upload_keys()
    return client


# ---------------------------------------------------------------- end to end
@fhe
def test_health_and_info_describe_the_model(service, saved):
    status, _, body = call("GET", service.url + "/health")
    model_id = FHEClient(saved / "client").model_id
    assert status == 200 and json.loads(body)["model_id"] == model_id
    info = json.loads(call("GET", service.url + "/info")[2])
    assert info["model_id"] == model_id and info["n_features"] == 30 and info["task"] == "classifier"
    assert set(info["versions"]) == {"fhe-estimators", "concrete-ml", "concrete-python"}


@fhe
def test_remote_predictions_equal_simulation(remote, model, rows):
    np.testing.assert_array_equal(remote.predict(rows), model.predict(rows, fhe="simulate"))
    np.testing.assert_allclose(remote.predict_proba(rows[:2]), model.predict_proba(rows[:2], fhe="simulate"))
    assert remote.uploads == 1


@fhe
def test_keys_upload_is_idempotent_and_atomic(service, remote, state_dir):
    keys = remote.client.evaluation_keys()
    first, second = call("POST", service.url + "/keys", keys), call("POST", service.url + "/keys", keys)
    assert first[0] == second[0] == 201
    assert json.loads(first[2])["key_id"] == json.loads(second[2])["key_id"] == remote.key_id
    assert call("GET", f"{service.url}/keys/{remote.key_id}")[0] == 200
    assert call("GET", f"{service.url}/keys/{'f' * 64}")[0] == 404
    stored = [path.name for path in state_dir.rglob("*") if path.is_file()]
    assert stored.count(f"{remote.key_id}.keys") == 1 and not [name for name in stored if name.endswith(".tmp")]
    before = json.loads(call("GET", service.url + "/info")[2])["key_cache"]["loads"]
    remote.run(remote.client.encrypt(np.zeros((1, 30))))
    assert json.loads(call("GET", service.url + "/info")[2])["key_cache"]["loads"] == before  # deserialized once


@fhe
def test_bad_input_gets_4xx_and_the_service_keeps_answering(service, remote, saved, rows):
    keys = remote.client.evaluation_keys()
    payload = unseal("evaluation keys", remote.client.model_id, keys)
    (ciphertext,) = remote.client.encrypt(rows[:1])
    other_client = FHEClient(saved / "client")  # same model, its own key set
    predict, model_id = f"{service.url}/predict/{remote.key_id}", remote.client.model_id
    flipped = bytearray(ciphertext)
    flipped[-1] ^= 1
    cases = [
        ("/keys", b"not keys at all", 400, "Malformed evaluation keys"),
        ("/keys", keys[:-100], 400, "Truncated evaluation keys"),
        ("/keys", seal("evaluation keys", FOREIGN_MODEL, payload), 400, "belong to model"),
        ("/keys", ciphertext, 400, "Expected evaluation keys, got ciphertext"),
        ("/keys", seal("evaluation keys", model_id, b"forged"), 400, "Concrete cannot read these evaluation keys"),
        (f"/predict/{'a' * 64}", ciphertext, 404, "Unknown key id"),
        ("/predict/not-a-key-id", ciphertext, 404, "Unknown key id"),
        ("/predict/../../etc/passwd", ciphertext, 404, ""),
        (predict, b"garbage", 400, "Malformed ciphertext"),
        (predict, bytes(flipped), 400, "Corrupted ciphertext"),
        (predict, seal("ciphertext", FOREIGN_MODEL, b"x", key_set=remote.key_id), 400, "belong to model"),
        (predict, other_client.encrypt(rows[:1])[0], 400, "different key set"),
        (predict, seal("ciphertext", model_id, b"junk", key_set=remote.key_id), 400, "could not evaluate"),  # forged
        (predict + "/batch", b"FHEB\x00\x00\x00\x02", 400, "Truncated batch"),
        (predict + "/batch", ciphertext, 400, "Malformed batch"),
    ]
    for path, body, status, message in cases:
        url = path if path.startswith("http") else service.url + path
        got, _, reply = call("POST", url, body)
        assert (got, message in error_of(reply)) == (status, True), (path, reply[:300])
    assert call("GET", service.url + "/predict/x")[0] == 405  # a route exists, not for GET
    assert error_of(call("GET", service.url + "/nowhere")[2]) == "Not Found"
    assert call("GET", service.url + "/health")[0] == 200
    still_served = remote.client.decrypt([call("POST", predict, ciphertext)[2]])
    np.testing.assert_array_equal(still_served, remote.predict(rows[:1]))


@fhe
def test_body_over_the_limit_gets_413(service):
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)
    connection.putrequest("POST", "/keys")
    connection.putheader("Content-Length", str(10**12))  # declared: refused before a byte is read
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and "exceeds the limit" in error_of(response.read())
    connection.close()
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)  # streamed, no length
    connection.request("POST", "/keys", body=iter([b"x" * (1 << 20)] * 65), encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413 and "exceeds the limit" in error_of(response.read())
    connection.close()
    assert call("GET", service.url + "/health")[0] == 200


@fhe
def test_remote_client_refuses_a_server_of_another_model_or_version(service, saved, remote, tmp_path):
    foreign = tmp_path / "client"
    shutil.copytree(saved / "client", foreign)
    metadata = json.loads((foreign / "estimator.json").read_text())
    (foreign / "estimator.json").write_text(json.dumps({**metadata, "model_id": FOREIGN_MODEL}))
    with pytest.raises(ValueError, match="serves model .*, not this client's model"):
        RemoteClient(service.url, foreign)
    remote.client.metadata["versions"]["concrete-ml"] = "0.0.1"
    try:
        with pytest.raises(ValueError, match="other library versions: concrete-ml 0.0.1 here, 1.9.0 on the server"):
            remote.check_server()
    finally:
        remote.client.metadata["versions"]["concrete-ml"] = metadata["versions"]["concrete-ml"]
    with pytest.raises(ConnectionError, match="No fhe-estimators service answers"):
        RemoteClient(f"http://127.0.0.1:{free_port()}", saved / "client")


@fhe
def test_kill_9_and_restart_keep_uploaded_keys(services, saved, model, rows, tmp_path):
    state = tmp_path / "state"
    first = services(saved / "server", state)
    remote = RemoteClient(first.url, saved / "client")
    remote.upload_keys()
    first.stop(signal.SIGKILL)
    key_dir = next(state.iterdir())
    (key_dir / f".{remote.key_id}.keys.crash.tmp").write_bytes(b"half an upload")  # what a crash mid-write leaves
    second = services(saved / "server", state)
    assert call("GET", f"{second.url}/keys/{remote.key_id}")[0] == 200
    assert not list(key_dir.glob("*.tmp"))
    status, _, reply = call("POST", f"{second.url}/predict/{remote.key_id}/batch", pack(remote.client.encrypt(rows)))
    assert status == 200
    np.testing.assert_array_equal(remote.client.decrypt(unpack(reply)), model.predict(rows, fhe="simulate"))
    again = RemoteClient(second.url, saved / "client")
    again.client = remote.client  # the same keys: found on the server, not uploaded again
    np.testing.assert_array_equal(again.predict(rows[:2]), model.predict(rows[:2], fhe="simulate"))
    assert again.uploads == 0


@fhe
def test_three_concurrent_clients_all_get_their_predictions(service, saved, model, rows):
    clients = [RemoteClient(service.url, saved / "client") for _ in range(3)]
    for client in clients:
        client.upload_keys()
    expected = model.predict(rows, fhe="simulate")
    answers, failures = {}, []

    def work(index: int, client: RemoteClient) -> None:
        try:
            for request in range(2):
                row = (index + request) % len(rows)
                answers[index, request] = (row, client.predict(rows[row : row + 1])[0])
        except Exception as error:  # reported below
            failures.append(error)

    threads = [threading.Thread(target=work, args=(index, client)) for index, client in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not failures and len(answers) == 6
    assert all(label == expected[row] for row, label in answers.values())


@fhe
def test_full_queue_gets_503_with_retry_after(services, saved, state_dir, remote, model, rows):
    busy = services(saved / "server", state_dir, "--workers", "1", "--queue-size", "1")  # keys already stored
    body = pack(remote.client.encrypt(np.repeat(rows, 2, axis=0)))
    url = f"{busy.url}/predict/{remote.key_id}/batch"
    replies, gate = [], threading.Barrier(6)

    def post() -> None:
        gate.wait()
        replies.append(call("POST", url, body))

    threads = [threading.Thread(target=post) for _ in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    start = time.monotonic()
    assert call("GET", busy.url + "/health", timeout=10)[0] == 200  # the event loop is not blocked
    health_s = time.monotonic() - start
    for thread in threads:
        thread.join(timeout=300)
    statuses = sorted(status for status, _, _ in replies)
    assert statuses.count(503) >= 3 and statuses.count(200) >= 1, statuses
    for status, headers, reply in replies:
        if status == 503:
            assert int(headers["Retry-After"]) >= 1 and "queue is full" in error_of(reply)
        else:
            expected = model.predict(np.repeat(rows, 2, axis=0), fhe="simulate")
            np.testing.assert_array_equal(remote.client.decrypt(unpack(reply)), expected)
    assert health_s < 2.5, health_s
    patient = RemoteClient(busy.url, saved / "client", backoff=0.2)  # retries 503 until served
    patient.client = remote.client
    ciphertexts, results = remote.client.encrypt(rows), []
    threads = [threading.Thread(target=lambda: results.append(patient.run(ciphertexts))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert len(results) == 4 and all(len(result) == len(rows) for result in results)


# ---------------------------------------------------------------- storage, without FHE
def test_key_store_writes_atomically_and_cleans_up_after_a_crash(tmp_path, monkeypatch):
    model_id = "1" * 32
    keys = seal("evaluation keys", model_id, b"k" * 1000)
    (tmp_path / ".leftover.keys.123.tmp").write_bytes(b"half")
    store = KeyStore(tmp_path, model_id)
    assert not list(tmp_path.glob("*.tmp"))
    key_id, validated = store.put(keys, validate=len)
    assert validated == 1000 and store.put(keys, validate=len) == (key_id, None)  # stored once, validated once
    assert key_id in store and store.read(key_id) == b"k" * 1000

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    other = seal("evaluation keys", model_id, b"j" * 1000)
    with pytest.raises(OSError, match="disk full"):
        store.put(other)
    assert sorted(path.name for path in tmp_path.iterdir()) == [f"{key_id}.keys"]  # no half file, no temp
    monkeypatch.undo()
    store.path(key_id).write_bytes(keys[:-1])  # damaged on disk: dropped, reported missing (re-upload)
    with pytest.raises(KeyError):
        store.read(key_id)
    assert key_id not in store
    with pytest.raises(ValueError, match="belong to model"):
        store.put(seal("evaluation keys", "2" * 32, b"k"))


def test_key_cache_loads_once_and_evicts_least_recently_used():
    cache, loads = KeyCache(2), []

    def load(key_id):
        time.sleep(0.05)
        loads.append(key_id)
        return key_id.upper()

    threads = [threading.Thread(target=cache.get, args=("a", load)) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loads == ["a"]
    cache.get("b", load), cache.get("a", load), cache.get("c", load)  # b is the least recently used
    assert cache.get("a", load) == "A" and loads == ["a", "b", "c"]
    cache.get("b", load)
    assert loads == ["a", "b", "c", "b"] and cache.stats()["cached"] == 2
