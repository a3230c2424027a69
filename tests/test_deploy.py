"""Deployment: save/load, the client/server exchange through bytes, batches, Dask, bad input."""

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fhe_estimators import (
    FHEClient,
    FHEServer,
    NeuralNetClassifier,
    NeuralNetRegressor,
    load,
)
from fhe_estimators.deploy import seal

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
def other_model(diabetes, tmp_path_factory):
    """A different saved model (a regressor), with its own client and keys."""
    X_train, X_test, y_train, _ = diabetes
    regressor = NeuralNetRegressor(**TINY_FHE, random_state=0, optimizer__weight_decay=0.1)
    regressor.fit(X_train, y_train).compile()
    path = regressor.save(tmp_path_factory.mktemp("deploy") / "diabetes")
    return regressor, load(path), X_test


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


def test_server_directory_holds_no_secret_key(saved, deployed):
    model, _ = deployed
    server_dir = saved / "server"
    assert sorted(path.name for path in server_dir.iterdir()) == ["estimator.json", "server.zip"]
    with zipfile.ZipFile(server_dir / "server.zip") as archive:
        names = archive.namelist()
    assert not [name for name in names if "key" in name.lower()], names
    # The client's secret keys exist (keygen ran), live only in the client, and never came near the server.
    client_keys = model.client._client.client.keys
    assert client_keys.are_generated
    assert len(client_keys.serialize()) > len(client_keys.evaluation.serialize())  # secret part present
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


def test_forged_envelope_with_wrong_id_is_refused(deployed):
    model, _ = deployed
    forged = seal("evaluation keys", "0" * 32, b"payload")
    with pytest.raises(ValueError, match="not to this model"):
        model.server.run(seal("ciphertext", model.server.model_id, b"x"), forged)
