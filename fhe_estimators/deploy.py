"""Deploy encrypted prediction: a client that holds the keys, a server that computes on ciphertexts.

A compiled estimator is saved to a directory in Concrete ML's deployment format
(``concrete.ml.deployment``) plus a small JSON file of ours::

    model_dir/
      client/client.zip       circuit specs and quantizers (Concrete ML)      -> the data owner
      client/estimator.json   labels or target scaling, feature count, model id
      server/server.zip       the compiled circuit, no key of any kind         -> the server
      server/estimator.json   model id and versions

The exchange, all in bytes (files, sockets, object stores)::

    client: generate_keys(); keys = evaluation_keys(); cts = encrypt(X)   --keys, cts-->
    server: results = run_many(cts, keys)                                 <--results--
    client: decrypt(results) == model.predict(X)

Every blob is wrapped in a short envelope (kind, model id, length, SHA-256), so
a truncated or corrupted ciphertext, or keys made for another model, give a
clear error before any byte reaches Concrete.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.utils import check_array

from . import fhe as fhe_backend

CLIENT_DIR, SERVER_DIR, METADATA = "client", "server", "estimator.json"
FORMAT_VERSION = 1
_MAGIC = b"FHEE"
_KINDS = {"evaluation keys": b"K", "ciphertext": b"C", "result": b"R"}
_HEADER = struct.Struct(">4sBc16sQ32s")  # magic, format, kind, model id, payload length, sha256


def library_versions() -> dict[str, str]:
    """Versions a saved model must be loaded with (the circuit format depends on them)."""
    from . import __version__

    return {"fhe-estimators": __version__, **{name: version(name) for name in ("concrete-ml", "concrete-python")}}


# ---------------------------------------------------------------- envelopes
def seal(kind: str, model_id: str, payload: bytes) -> bytes:
    """Wrap ``payload`` with its kind, model id, length and checksum."""
    digest = hashlib.sha256(payload).digest()
    header = _HEADER.pack(_MAGIC, FORMAT_VERSION, _KINDS[kind], bytes.fromhex(model_id), len(payload), digest)
    return header + payload


def unseal(kind: str, model_id: str, blob: bytes) -> bytes:
    """The payload of ``blob``, after checking it is an intact ``kind`` made for ``model_id``."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise TypeError(f"Expected {kind} as bytes, got {type(blob).__name__}.")
    blob = bytes(blob)
    if len(blob) < _HEADER.size or blob[:4] != _MAGIC:
        raise ValueError(f"Malformed {kind}: not produced by fhe_estimators' FHEClient/FHEServer.")
    _, form, found_kind, found_id, length, digest = _HEADER.unpack_from(blob)
    if form != FORMAT_VERSION:
        raise ValueError(f"Malformed {kind}: envelope format {form}, this library reads {FORMAT_VERSION}.")
    names = {code: name for name, code in _KINDS.items()}
    if found_kind != _KINDS[kind]:
        raise ValueError(f"Expected {kind}, got {names.get(found_kind, 'unknown data')}.")
    if found_id.hex() != model_id:
        raise ValueError(
            f"These {kind} belong to model {found_id.hex()[:12]}…, not to this model ({model_id[:12]}…): "
            "keys and ciphertexts must come from the client of the same saved model."
        )
    payload = blob[_HEADER.size :]
    if len(payload) != length:
        raise ValueError(f"Truncated {kind}: {len(payload)} bytes of payload, expected {length}.")
    if hashlib.sha256(payload).digest() != digest:
        raise ValueError(f"Corrupted {kind}: its checksum does not match its content.")
    return payload


# ---------------------------------------------------------------- saving
def save(estimator, path) -> Path:
    """Save a compiled estimator to ``path`` (a new or empty directory); returns the path."""
    from concrete.ml.deployment import FHEModelDev

    estimator._check_fitted()
    if not hasattr(estimator, "quantized_module_"):
        raise ValueError("Compile the model before saving it: call model.compile() first.")
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise ValueError(f"{path} is not empty; save to a new or empty directory.")
    with tempfile.TemporaryDirectory() as scratch:
        FHEModelDev(scratch, estimator.quantized_module_).save()
        (path / CLIENT_DIR).mkdir(parents=True)
        (path / SERVER_DIR).mkdir()
        shutil.move(Path(scratch) / "client.zip", path / CLIENT_DIR / "client.zip")
        shutil.move(Path(scratch) / "server.zip", path / SERVER_DIR / "server.zip")
    model_id = hashlib.sha256((path / SERVER_DIR / "server.zip").read_bytes()).hexdigest()[:32]
    common = {"format": FORMAT_VERSION, "model_id": model_id, "versions": library_versions()}
    _write_json(path / SERVER_DIR / METADATA, common)
    _write_json(path / CLIENT_DIR / METADATA, {**common, **_postprocessing(estimator)})
    return path


def _postprocessing(estimator) -> dict:
    """What the client needs to turn decrypted outputs into what ``predict`` returns."""
    info = {"estimator": type(estimator).__name__, "n_features_in": int(estimator.n_features_in_)}
    if estimator._estimator_type == "classifier":
        classes = estimator.classes_
        info["classes"] = {"values": classes.tolist(), "dtype": classes.dtype.str}
    else:
        info["target"] = {
            "mean": estimator.target_mean_.tolist(),
            "scale": estimator.target_scale_.tolist(),
            "ndim": int(estimator.target_ndim_),
        }
    return info


def _write_json(file: Path, content: dict) -> None:
    file.write_text(json.dumps(content, indent=2), encoding="utf-8")


def read_metadata(directory: Path, role: str) -> dict:
    """``estimator.json`` of a client or server directory, checked for format and versions."""
    directory = Path(directory)
    for name in (METADATA, f"{role}.zip"):
        if not (directory / name).is_file():
            raise FileNotFoundError(
                f"{directory / name} is missing: {directory} is not a saved fhe_estimators {role} directory "
                "(model.save(path) writes path/client and path/server)."
            )
    try:
        metadata = json.loads((directory / METADATA).read_text(encoding="utf-8"))
        model_id, versions = metadata["model_id"], metadata["versions"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{directory / METADATA} is malformed: {error}") from None
    if metadata.get("format") != FORMAT_VERSION:
        raise ValueError(f"{directory} was saved in format {metadata.get('format')}, this library reads {FORMAT_VERSION}.")
    installed = library_versions()
    mismatched = {name: (versions.get(name), have) for name, have in installed.items() if versions.get(name) != have}
    if mismatched:
        details = ", ".join(f"{name} {saved} (installed {have})" for name, (saved, have) in mismatched.items())
        raise ValueError(f"{directory} was saved with different library versions: {details}. Save it again.")
    if not isinstance(model_id, str) or len(model_id) != 32:
        raise ValueError(f"{directory / METADATA} has an invalid model id.")
    return metadata


# ---------------------------------------------------------------- server
class FHEServer:
    """Evaluates the circuit on serialized ciphertexts; holds no secret key, ever."""

    def __init__(self, path):
        from concrete.ml.deployment import FHEModelServer

        self.path = Path(path)
        self.model_id = read_metadata(self.path, SERVER_DIR)["model_id"]
        self._server = FHEModelServer(str(self.path))
        self._keys_blob, self._keys = None, None

    def _evaluation_keys(self, evaluation_keys: bytes):
        """Deserialized keys, cached: they are megabytes, the same for a whole batch.

        The cache is keyed by the bytes object itself (a Dask worker hands every
        task the same one), so a batch checks and deserializes its keys once.
        """
        from concrete import fhe as cfhe

        if evaluation_keys is not self._keys_blob:
            payload = unseal("evaluation keys", self.model_id, evaluation_keys)
            self._keys, self._keys_blob = cfhe.EvaluationKeys.deserialize(payload), evaluation_keys
        return self._keys

    def run(self, ciphertext: bytes, evaluation_keys: bytes) -> bytes:
        """Evaluate one encrypted row; returns the encrypted result."""
        return self.run_many([ciphertext], evaluation_keys)[0]

    def run_many(
        self, ciphertexts: Sequence[bytes], evaluation_keys: bytes, *, n_jobs: int | None = None, verbose: bool = False
    ) -> list[bytes]:
        """Evaluate many encrypted rows, ``n_jobs`` at a time; results in input order."""
        keys = self._evaluation_keys(evaluation_keys)
        payloads = [unseal("ciphertext", self.model_id, blob) for blob in ciphertexts]

        def evaluate(payload: bytes) -> bytes:
            result = self._server.run(payload, keys)
            return seal("result", self.model_id, result)

        return fhe_backend.map_in_order(evaluate, payloads, n_jobs=n_jobs, verbose=verbose, desc="FHE server")


# ---------------------------------------------------------------- client
class FHEClient:
    """Generates the keys, encrypts inputs, decrypts results into what ``predict`` returns.

    The secret key never leaves this object (or ``key_dir``, if given, where
    Concrete keeps it between sessions).
    """

    def __init__(self, path, key_dir=None):
        from concrete.ml.deployment import FHEModelClient

        self.path = Path(path)
        self.metadata = read_metadata(self.path, CLIENT_DIR)
        self.model_id = self.metadata["model_id"]
        self._client = FHEModelClient(str(self.path), key_dir=None if key_dir is None else str(key_dir))

    @property
    def is_classifier(self) -> bool:
        return "classes" in self.metadata

    def generate_keys(self, force: bool = False) -> None:
        """Generate the secret and evaluation keys (seconds; done once)."""
        fhe_backend.ready_concrete_for_this_thread()
        self._client.generate_private_and_evaluation_keys(force=force)

    def evaluation_keys(self) -> bytes:
        """The public evaluation keys to send to the server (generated if needed)."""
        self.generate_keys()
        return seal("evaluation keys", self.model_id, self._client.get_serialized_evaluation_keys())

    def encrypt(self, X) -> list[bytes]:
        """Quantize and encrypt each row of ``X``: one ciphertext per row."""
        X = check_array(X, dtype=[np.float64, np.float32], force_all_finite=True).astype(np.float32)
        expected = self.metadata["n_features_in"]
        if X.shape[1] != expected:
            raise ValueError(f"X has {X.shape[1]} features, but this model is expecting {expected} features as input.")
        self.generate_keys()
        return [seal("ciphertext", self.model_id, self._client.quantize_encrypt_serialize(row[None, :])) for row in X]

    def decrypt_outputs(self, results: Sequence[bytes]) -> np.ndarray:
        """Decrypted, dequantized network outputs (logits / standardized values), one row per result."""
        if isinstance(results, (bytes, bytearray)):
            raise TypeError("decrypt takes a list of results (one per encrypted row), not a single bytes object.")
        rows = [
            self._client.deserialize_decrypt_dequantize(unseal("result", self.model_id, blob)) for blob in results
        ]
        return np.concatenate(rows) if rows else np.empty((0, 0))

    def decrypt(self, results: Sequence[bytes]) -> np.ndarray:
        """What the estimator's ``predict`` returns: class labels or target values."""
        outputs = self.decrypt_outputs(results)
        if self.is_classifier:
            classes = self.metadata["classes"]
            return np.asarray(classes["values"], dtype=np.dtype(classes["dtype"]))[np.argmax(outputs, axis=1)]
        target = self.metadata["target"]
        values = outputs * np.asarray(target["scale"]) + np.asarray(target["mean"])
        return values.ravel() if target["ndim"] == 1 else values

    def decrypt_proba(self, results: Sequence[bytes]) -> np.ndarray:
        """What the classifier's ``predict_proba`` returns."""
        if not self.is_classifier:
            raise AttributeError("decrypt_proba is for classifiers; this model is a regressor.")
        outputs = self.decrypt_outputs(results)
        shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)


@dataclass
class DeployedModel:
    """A saved model loaded whole: its client and server, for local end-to-end use and tests."""

    client: FHEClient
    server: FHEServer

    def predict(self, X, *, n_jobs: int | None = None) -> np.ndarray:
        """Encrypt ``X``, evaluate on the server, decrypt: equals the estimator's ``predict``."""
        results = self.server.run_many(self.client.encrypt(X), self.client.evaluation_keys(), n_jobs=n_jobs)
        return self.client.decrypt(results)


def load(path, key_dir=None) -> DeployedModel:
    """Load a directory written by ``model.save(path)``; client and server must be the same model."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist or is not a directory.")
    client, server = FHEClient(path / CLIENT_DIR, key_dir), FHEServer(path / SERVER_DIR)
    if client.model_id != server.model_id:
        raise ValueError(f"{path / CLIENT_DIR} and {path / SERVER_DIR} were saved from different models.")
    return DeployedModel(client, server)
