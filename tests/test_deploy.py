"""Deployment: save/load, the client/server exchange through bytes, batches, Dask, bad input."""

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

from fhe_estimators import (
    FHEClient,
    FHEServer,
    NeuralNetClassifier,
    NeuralNetRegressor,
    load,
)
from fhe_estimators.deploy import seal, unseal

# 6-bit accumulators: a narrow circuit, so keys take seconds and rows milliseconds.
TINY_FHE = {"hidden_layer_sizes": (5,), "n_w_bits": 2, "n_a_bits": 2, "n_accum_bits": 6, "max_epochs": 30}
pytestmark = pytest.mark.fhe_execute


@pytest.fixture(scope="module")
def iris_labels(iris):
    X_train, X_test, y_train, _ = iris
    names = np.array(["setosa", "versicolor", "virginica"])
    return X_train, X_test, names[y_train]


@pytest.fixture(scope="module")
def classifier(iris_labels):
    X_train, _, labels = iris_labels
    return NeuralNetClassifier(**TINY_FHE, random_state=0).fit(X_train, labels).compile()


@pytest.fixture(scope="module")
def saved(classifier, tmp_path_factory):
    return classifier.save(tmp_path_factory.mktemp("deploy") / "iris")


@pytest.fixture(scope="module")
def deployed(saved, tmp_path_factory):
    model = load(saved, key_dir=tmp_path_factory.mktemp("client_keys"))
    return model, model.client.evaluation_keys()


@pytest.fixture(scope="module")
def second_client(saved):
    """Another client of the same saved model, with its own keys (not yet sent anywhere)."""
    return FHEClient(saved / "client")


@pytest.fixture(scope="module")
def other_model(diabetes, tmp_path_factory):
    """A different saved model (a regressor), with its own client and keys."""
    X_train, X_test, y_train, _ = diabetes
    regressor = NeuralNetRegressor(**TINY_FHE, random_state=0, optimizer__weight_decay=0.1)
    regressor.fit(X_train, y_train).compile()
    path = regressor.save(tmp_path_factory.mktemp("deploy") / "diabetes")
    return regressor, load(path), X_test


def test_client_encrypts_a_sparse_row_like_its_dense_copy(classifier, deployed, iris_labels):
    # A scipy sparse row (what a ColumnTransformer with one-hot columns hands over) is densified.
    model, keys = deployed
    _, X_test, _ = iris_labels
    [result] = model.server.run_many(model.client.encrypt(sparse.csr_matrix(X_test[:1])), keys)
    np.testing.assert_array_equal(model.client.decrypt([result]), classifier.predict(X_test[:1], fhe="simulate"))


def test_client_reads_values_beyond_the_training_range_as_predict_does(classifier, deployed, iris_labels):
    # Rows are clipped to the training range before they are quantized, by the client as by predict:
    # the accumulator guarantee counts each column by that range.
    model, keys = deployed
    _, X_test, _ = iris_labels
    assert model.client.metadata["input_bounds"] == [list(end) for end in classifier.input_bounds_]
    far = X_test[:2] * 0 + np.array([50.0, -50.0, 50.0, -50.0])
    results = model.server.run_many(model.client.encrypt(far), keys)
    np.testing.assert_array_equal(model.client.decrypt(results), classifier.predict(far, fhe="simulate"))


def test_client_server_exchange_through_bytes_on_disk_equals_simulation(classifier, deployed, iris_labels, tmp_path):
    model, keys = deployed
    _, X_test, _ = iris_labels
    rows = X_test[:4]
    # Client -> disk -> server -> disk -> client, as two parties would.
    (tmp_path / "keys.bin").write_bytes(keys)
    for index, ciphertext in enumerate(model.client.encrypt(rows)):
        (tmp_path / f"row{index}.bin").write_bytes(ciphertext)
    server = FHEServer(model.server.path)
    received = [(tmp_path / f"row{index}.bin").read_bytes() for index in range(len(rows))]
    results = server.run_many(received, (tmp_path / "keys.bin").read_bytes())
    np.testing.assert_array_equal(model.client.decrypt(results), classifier.predict(rows, fhe="simulate"))
    np.testing.assert_allclose(model.client.decrypt_proba(results), classifier.predict_proba(rows, fhe="simulate"))
    assert model.client.decrypt(results).dtype == classifier.classes_.dtype  # labels come back as labels


def test_regressor_round_trip_equals_simulation(other_model):
    regressor, model, X_test = other_model
    predicted = model.predict(X_test[:2])
    np.testing.assert_allclose(predicted, regressor.predict(X_test[:2], fhe="simulate"))
    assert predicted.shape == (2,)


def _server_bytes(server_dir: Path) -> dict[str, bytes]:
    """Every byte string the server directory holds: its files, and each member of server.zip decompressed."""
    blobs = {path.name: path.read_bytes() for path in server_dir.iterdir()}
    with zipfile.ZipFile(server_dir / "server.zip") as archive:
        blobs.update({f"server.zip:{name}": archive.read(name) for name in archive.namelist()})
    return blobs


def _secret_key_encodings(secret_key) -> list[bytes]:
    """A Concrete LWE secret key's binary coefficients, in every encoding a file could plausibly hold them.

    ``LweSecretKey.serialize()`` is a versioned header followed by the
    coefficients as little-endian u64 words, each 0 or 1.
    """
    dimension = secret_key.param.dimension()
    words = np.frombuffer(secret_key.serialize()[-8 * dimension :], dtype="<u8")
    assert set(np.unique(words)) <= {0, 1}, "not a binary key: the encoding assumption is wrong"
    bits = words.astype(np.uint8)
    packed = [np.packbits(bits, bitorder=order).tobytes() for order in ("big", "little")]
    return [words.tobytes(), bits.tobytes(), *packed]


def test_server_directory_cannot_decrypt(saved, deployed, iris_labels):
    """Nothing the server directory holds is, or contains, the client's secret key.

    Each check has a positive control run on the client's real keys, so a check
    that could never fire does not pass vacuously.
    """
    from concrete import fhe as cfhe
    from concrete.ml.deployment import FHEModelClient

    model, keys = deployed
    _, X_test, _ = iris_labels
    server_dir = saved / "server"
    assert sorted(path.name for path in server_dir.iterdir()) == ["estimator.json", "server.zip"]
    [result] = model.server.run_many(model.client.encrypt(X_test[:1]), keys)  # what a server could try to read

    # The client's key set: its serialization loads as a Concrete keyset holding LWE secret keys.
    client_keys = model.client._client.client.keys
    keyset_bytes = client_keys.serialize()
    secret_keys = cfhe.Keys.deserialize(keyset_bytes)._keyset.get_client_keys().get_secret_keys()
    assert secret_keys  # positive control: a real keyset deserializes and carries secret keys
    fingerprints = [encoding for key in secret_keys for encoding in _secret_key_encodings(key)]
    assert all(_secret_key_encodings(key)[0] in keyset_bytes for key in secret_keys)  # control: u64 words found

    for name, blob in _server_bytes(server_dir).items():
        # 1. No file or zip member is a Concrete keyset (the only container of secret keys Concrete
        #    deserializes safely: LweSecretKey.deserialize aborts the process on foreign bytes).
        with pytest.raises(RuntimeError, match="Failed to deserialize keyset"):
            cfhe.Keys.deserialize(blob)
        # 2. No file or zip member contains a secret key's coefficients, or the tag Concrete writes
        #    at the start of every serialized LweSecretKey.
        assert b"LweSecretKey" not in blob, name
        assert not [index for index, encoding in enumerate(fingerprints) if encoding in blob], name
    assert all(b"LweSecretKey" in key.serialize() for key in secret_keys)  # control for the tag

    # 3. No client can be built from the server directory: client.zip (and estimator.json's
    #    post-processing) are not there, so nothing on the server side can call decrypt on `result`.
    with pytest.raises(FileNotFoundError, match="client.zip is missing"):
        FHEClient(server_dir)
    with pytest.raises(OSError, match="client.zip is not a zip file"):  # Concrete ML's own client
        FHEModelClient(str(server_dir)).deserialize_decrypt_dequantize(unseal("result", model.server.model_id, result))
    assert not Path(model.client._client.key_dir).is_relative_to(saved)


def test_parallel_batches_keep_the_input_order(classifier, deployed, iris_labels):
    model, keys = deployed
    _, X_test, _ = iris_labels
    rows = X_test[:6]
    results = model.server.run_many(model.client.encrypt(rows), keys, n_jobs=2)
    np.testing.assert_allclose(
        model.client.decrypt_outputs(results), classifier.quantized_module_.forward(rows.astype(np.float32), fhe="simulate")
    )


def test_estimator_execute_in_parallel_with_a_progress_bar(classifier, iris_labels, capsys):
    _, X_test, _ = iris_labels
    rows = X_test[:4]
    classifier.set_params(n_jobs=2, verbose=1)
    try:
        executed = classifier.predict(rows, fhe="execute")
    finally:
        classifier.set_params(n_jobs=None, verbose=0)
    np.testing.assert_array_equal(executed, classifier.predict(rows, fhe="simulate"))
    assert "FHE execute" in capsys.readouterr().err  # tqdm writes to stderr


def test_dask_local_cluster_scores_in_order(classifier, saved, deployed, iris_labels):
    import distributed  # the 'dask' extra is part of the test extra

    from fhe_estimators.scale_out import run_on_dask

    model, keys = deployed
    _, X_test, _ = iris_labels
    rows = X_test[:5]
    ciphertexts = model.client.encrypt(rows)
    cluster_options = {"n_workers": 2, "threads_per_worker": 1, "processes": True, "host": "127.0.0.1"}
    with (
        distributed.LocalCluster(dashboard_address=None, **cluster_options) as cluster,
        distributed.Client(cluster) as dask_client,
    ):
        one_per_task = run_on_dask(dask_client, saved / "server", ciphertexts, keys)
        two_per_task = run_on_dask(dask_client, saved / "server", ciphertexts, keys, rows_per_task=2)
    expected = classifier.predict(rows, fhe="simulate")
    np.testing.assert_array_equal(model.client.decrypt(one_per_task), expected)
    np.testing.assert_array_equal(model.client.decrypt(two_per_task), expected)


# ---------------------------------------------------------------- bad input
def test_truncated_corrupted_or_misplaced_ciphertexts(deployed, iris_labels):
    model, keys = deployed
    _, X_test, _ = iris_labels
    [ciphertext] = model.client.encrypt(X_test[:1])
    with pytest.raises(ValueError, match="Truncated ciphertext"):
        model.server.run(ciphertext[:-10], keys)
    corrupted = bytearray(ciphertext)
    corrupted[-5] ^= 0xFF
    with pytest.raises(ValueError, match="Corrupted ciphertext"):
        model.server.run(bytes(corrupted), keys)
    with pytest.raises(ValueError, match="Malformed ciphertext"):
        model.server.run(b"definitely not a ciphertext", keys)
    with pytest.raises(ValueError, match="Expected ciphertext, got evaluation keys"):
        model.server.run(keys, keys)
    with pytest.raises(TypeError, match="Expected ciphertext as bytes"):
        model.server.run(X_test[0], keys)
    relabeled = bytearray(keys)
    relabeled[22] ^= 0xFF  # first byte of the key set the envelope names: no longer the keys' own digest
    with pytest.raises(ValueError, match="Corrupted evaluation keys: the key set in its envelope"):
        model.server.run(ciphertext, bytes(relabeled))
    [result] = model.server.run_many([ciphertext], keys)
    with pytest.raises(ValueError, match="Truncated result"):
        model.client.decrypt([result[:100]])


def test_keys_and_ciphertexts_of_another_model(deployed, other_model, iris_labels):
    model, keys = deployed
    _, other, X_other = other_model
    _, X_test, _ = iris_labels
    [ciphertext] = model.client.encrypt(X_test[:1])
    with pytest.raises(ValueError, match="evaluation keys belong to model .* not to this model"):
        model.server.run(ciphertext, other.client.evaluation_keys())
    [other_ciphertext] = other.client.encrypt(X_other[:1])
    with pytest.raises(ValueError, match="ciphertext belong to model .* not to this model"):
        model.server.run(other_ciphertext, keys)


def test_bad_model_directories(saved, other_model, tmp_path):
    _, other, _ = other_model
    mixed = tmp_path / "mixed"
    shutil.copytree(saved / "client", mixed / "client")
    shutil.copytree(other.server.path, mixed / "server")
    with pytest.raises(ValueError, match="saved from different models"):
        load(mixed)

    missing = tmp_path / "missing"
    shutil.copytree(saved, missing)
    (missing / "server" / "server.zip").unlink()
    with pytest.raises(FileNotFoundError, match="server.zip is missing"):
        load(missing)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load(tmp_path / "nowhere")

    old = tmp_path / "old"
    shutil.copytree(saved, old)
    metadata = json.loads((old / "client" / "estimator.json").read_text())
    metadata["versions"]["concrete-ml"] = "1.4.0"
    (old / "client" / "estimator.json").write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match=r"different library versions: concrete-ml 1.4.0 \(installed 1.9.0\)"):
        FHEClient(old / "client")

    broken = tmp_path / "broken"
    shutil.copytree(saved, broken)
    (broken / "server" / "estimator.json").write_text("{not json")
    with pytest.raises(ValueError, match="estimator.json is malformed"):
        FHEServer(broken / "server")


def test_save_needs_a_compiled_model_and_an_empty_directory(classifier, saved, iris_labels):
    X_train, _, labels = iris_labels
    fitted = NeuralNetClassifier(**TINY_FHE, random_state=0).fit(X_train, labels)
    with pytest.raises(ValueError, match="Compile the model before saving"):
        fitted.save(saved.parent / "not_compiled")
    with pytest.raises(ValueError, match="is not empty"):
        classifier.save(saved)


def test_ciphertexts_are_bound_to_the_keys_of_the_client_that_made_them(
    classifier, deployed, second_client, iris_labels
):
    """Same model, two clients, two key sets: a mix-up is an error, never labels decrypted from garbage."""
    model, keys = deployed
    _, X_test, _ = iris_labels
    rows = X_test[:3]
    ciphertexts = model.client.encrypt(rows)
    other_keys = second_client.evaluation_keys()
    refusal = r"encrypted under a different key set \(keys [0-9a-f]{12}…\) than the evaluation keys given"
    with pytest.raises(ValueError, match=refusal):
        model.server.run_many(ciphertexts, other_keys)
    # One foreign row in a batch refuses the whole batch, before any row is evaluated.
    mixed = ciphertexts[:1] + second_client.encrypt(rows[:1])
    with pytest.raises(ValueError, match="different key set"):
        model.server.run_many(mixed, keys)
    # The right keys still give the simulated labels; a result goes back only to its own client.
    results = model.server.run_many(ciphertexts, keys)
    np.testing.assert_array_equal(model.client.decrypt(results), classifier.predict(rows, fhe="simulate"))
    with pytest.raises(ValueError, match="computed under a different key set"):
        second_client.decrypt(results)
    own = model.server.run_many(second_client.encrypt(rows), other_keys)
    np.testing.assert_array_equal(second_client.decrypt(own), classifier.predict(rows, fhe="simulate"))


def test_client_computes_its_key_digest_once_not_per_row(saved, deployed, iris_labels, monkeypatch):
    model, keys = deployed
    _, X_test, _ = iris_labels
    # A new session of the deployed client: same key_dir, so Concrete loads its keys instead of generating.
    client = FHEClient(saved / "client", key_dir=model.client._client.key_dir)
    serialized = []
    original = client._client.get_serialized_evaluation_keys
    monkeypatch.setattr(client._client, "get_serialized_evaluation_keys", lambda: serialized.append(1) or original())
    client.encrypt(X_test[:4])  # keygen, then one serialization to learn the key set's digest
    assert len(serialized) == 1
    client.encrypt(X_test[:4])
    assert client.evaluation_keys() == keys  # serializes the keys it returns, nothing more
    assert len(serialized) == 2
    # Same keys, same key set: results computed before the restart still decrypt.
    assert client.key_set == model.client.key_set
    results = model.server.run_many(model.client.encrypt(X_test[:2]), keys)
    np.testing.assert_array_equal(client.decrypt(results), model.client.decrypt(results))


def test_server_caches_evaluation_keys_by_content(saved, deployed, second_client, iris_labels, monkeypatch):
    from concrete import fhe as cfhe

    model, keys = deployed
    _, X_test, _ = iris_labels
    deserialized = []
    original = cfhe.EvaluationKeys.deserialize

    def counting(buffer):
        deserialized.append(len(buffer))
        return original(buffer)

    monkeypatch.setattr(cfhe.EvaluationKeys, "deserialize", staticmethod(counting))
    [ciphertext] = model.client.encrypt(X_test[:1])
    server = FHEServer(saved / "server")
    # Equal bytes in distinct objects, as every request over a network brings them: deserialized once.
    first = server.run(ciphertext, bytes(bytearray(keys)))
    second = server.run(ciphertext, bytes(bytearray(keys)))
    assert len(deserialized) == 1
    np.testing.assert_array_equal(model.client.decrypt([first]), model.client.decrypt([second]))
    # A hit is still checked: the same header over a damaged payload is refused, not served from cache.
    damaged = bytearray(keys)
    damaged[-5] ^= 0xFF
    with pytest.raises(ValueError, match="Corrupted evaluation keys"):
        server.run(ciphertext, bytes(damaged))
    # Another key set is deserialized on its own; both stay cached (default bound: 4).
    # (An empty batch still checks and caches its keys, without paying for a row.)
    other_keys = second_client.evaluation_keys()
    server.run_many([], other_keys)
    server.run_many([], keys)
    assert len(deserialized) == 2 and len(server._key_cache) == 2
    # The bound holds: with room for one key set, alternating key sets evict each other.
    small = FHEServer(saved / "server", key_cache_size=1)
    for blob in (keys, other_keys, keys):
        small.run_many([], blob)
        assert len(small._key_cache) == 1
    assert len(deserialized) == 5
    assert list(small._key_cache) == [model.client.key_set]
    with pytest.raises(ValueError, match="key_cache_size"):
        FHEServer(saved / "server", key_cache_size=0)


def test_concurrent_requests_with_the_same_keys_deserialize_them_once(saved, deployed, iris_labels, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from concrete import fhe as cfhe

    model, keys = deployed
    _, X_test, _ = iris_labels
    deserialized = []
    original = cfhe.EvaluationKeys.deserialize
    counting = staticmethod(lambda buffer: deserialized.append(1) or original(buffer))
    monkeypatch.setattr(cfhe.EvaluationKeys, "deserialize", counting)
    ciphertexts = model.client.encrypt(X_test[:4])
    server = FHEServer(saved / "server")
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda row: server.run(row, bytes(bytearray(keys))), ciphertexts))
    assert len(deserialized) == 1
    assert model.client.decrypt(results).shape == (4,)


def test_decrypt_nothing(deployed, other_model, tmp_path):
    model, _ = deployed
    _, regressor, _ = other_model
    labels = model.client.decrypt([])
    assert labels.shape == (0,) and labels.dtype == np.dtype(model.client.metadata["classes"]["dtype"])
    assert model.client.decrypt_proba([]).shape == (0, 3)
    assert model.client.decrypt_outputs([]).shape == (0, 3)
    assert regressor.client.decrypt([]).shape == (0,)
    assert regressor.client.decrypt([]).dtype == np.float64
    # A regressor fitted on a 2-D target decrypts nothing to (0, n_outputs).
    two_d = tmp_path / "client"
    shutil.copytree(regressor.client.path, two_d)
    metadata = json.loads((two_d / "estimator.json").read_text())
    metadata["target"]["ndim"] = 2
    (two_d / "estimator.json").write_text(json.dumps(metadata))
    assert FHEClient(two_d).decrypt([]).shape == (0, 1)


def test_forged_envelope_with_wrong_id_is_refused(deployed):
    model, _ = deployed
    forged = seal("evaluation keys", "0" * 32, b"payload")
    with pytest.raises(ValueError, match="not to this model"):
        model.server.run(seal("ciphertext", model.server.model_id, b"x", key_set="0" * 64), forged)
