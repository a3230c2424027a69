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

Every blob is wrapped in a short envelope (kind, model id, key set, length,
SHA-256), so a truncated or corrupted blob, keys made for another model, or a
ciphertext sent with another client's keys give a clear error before any byte
reaches Concrete. The key set is the SHA-256 of the serialized evaluation keys:
the server refuses a ciphertext whose key set is not that of the keys it was
sent with, and the client refuses to decrypt a result computed for another key
set. The checksum is no MAC: this guards against accidents (corruption,
truncation, mix-ups), not against a malicious server, which can forge envelopes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.utils import check_array

from .input_grid import clip_to_bounds
from .outputs import OutputDecoder
from .runtime import map_in_order, ready_concrete_for_this_thread
from .validation import as_dense_float32

CLIENT_DIR, SERVER_DIR, METADATA = "client", "server", "estimator.json"
#: Format of a saved model directory (``estimator.json``).
FORMAT_VERSION = 1
#: Format of the envelope around every exchanged blob. 2: the envelope names its key set.
ENVELOPE_VERSION = 2
#: Deserialized evaluation key sets an ``FHEServer`` keeps by default (least recently used goes
#: first). One key set per client: a default model's keys take 469 MB serialized, more in memory.
KEY_CACHE_SIZE = 4
_MAGIC = b"FHEE"
_KINDS = {"evaluation keys": b"K", "ciphertext": b"C", "result": b"R"}
# magic, envelope version, kind, model id, key set (sha256 of the evaluation keys), payload length, sha256
_HEADER = struct.Struct(">4sBc16s32sQ32s")


def library_versions() -> dict[str, str]:
    """Versions a saved model must be loaded with (the circuit format depends on them)."""
    from . import __version__

    return {"fhe-estimators": __version__, **{name: version(name) for name in ("concrete-ml", "concrete-python")}}


# ---------------------------------------------------------------- envelopes
def seal(kind: str, model_id: str, payload: bytes, key_set: str | None = None) -> bytes:
    """Wrap ``payload`` with its kind, model id, key set, length and checksum.

    ``key_set`` is the hex SHA-256 of the serialized evaluation keys that the
    ciphertext or result belongs to; evaluation keys name themselves (their own
    digest), so leave it out for them.
    """
    digest = hashlib.sha256(payload).digest()
    if kind == "evaluation keys":
        if key_set is not None:
            raise ValueError("Evaluation keys name their own key set (their SHA-256); do not pass key_set.")
        key_set_bytes = digest
    else:
        if key_set is None:
            raise TypeError(f"A {kind} must name the key set it belongs to: pass key_set=.")
        key_set_bytes = bytes.fromhex(key_set)
        if len(key_set_bytes) != 32:
            raise ValueError(f"key_set must be a SHA-256 in hex (64 characters), got {key_set!r}.")
    header = _HEADER.pack(
        _MAGIC, ENVELOPE_VERSION, _KINDS[kind], bytes.fromhex(model_id), key_set_bytes, len(payload), digest
    )
    return header + payload


def _open(kind: str, model_id: str, blob: bytes) -> tuple[str, memoryview]:
    """The key set (hex) and payload of ``blob``, after checking it is an intact ``kind`` made for ``model_id``.

    The payload is a view into ``blob``: hashing it costs no copy of megabytes of keys.
    """
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise TypeError(f"Expected {kind} as bytes, got {type(blob).__name__}.")
    blob = bytes(blob)  # immutable: nothing can change it between the checks and its use
    if len(blob) < _HEADER.size or blob[:4] != _MAGIC:
        raise ValueError(f"Malformed {kind}: not produced by fhe_estimators' FHEClient/FHEServer.")
    _, form, found_kind, found_id, key_set, length, digest = _HEADER.unpack_from(blob)
    if form != ENVELOPE_VERSION:
        raise ValueError(f"Malformed {kind}: envelope format {form}, this library reads {ENVELOPE_VERSION}.")
    names = {code: name for name, code in _KINDS.items()}
    if found_kind != _KINDS[kind]:
        raise ValueError(f"Expected {kind}, got {names.get(found_kind, 'unknown data')}.")
    if found_id.hex() != model_id:
        raise ValueError(
            f"These {kind} belong to model {found_id.hex()[:12]}…, not to this model ({model_id[:12]}…): "
            "keys and ciphertexts must come from the client of the same saved model."
        )
    payload = memoryview(blob)[_HEADER.size :]
    if len(payload) != length:
        raise ValueError(f"Truncated {kind}: {len(payload)} bytes of payload, expected {length}.")
    if hashlib.sha256(payload).digest() != digest:
        raise ValueError(f"Corrupted {kind}: its checksum does not match its content.")
    if kind == "evaluation keys" and key_set != digest:
        raise ValueError(f"Corrupted {kind}: the key set in its envelope is not the digest of its content.")
    return key_set.hex(), payload


def unseal(kind: str, model_id: str, blob: bytes, key_set: str | None = None) -> bytes:
    """The payload of ``blob``, after checking it is an intact ``kind`` made for ``model_id``
    and, if ``key_set`` is given, bound to that key set."""
    found, payload = _open(kind, model_id, blob)
    if key_set is not None and found != key_set:
        if kind == "result":
            raise ValueError(
                f"This result was computed under a different key set (keys {found[:12]}…) than this client's "
                f"({key_set[:12]}…): only the client whose evaluation keys the server used can decrypt it "
                "(not one whose keys were regenerated since, nor a new client without that client's key_dir)."
            )
        raise ValueError(
            f"This {kind} was encrypted under a different key set (keys {found[:12]}…) than the evaluation keys "
            f"given ({key_set[:12]}…): send the evaluation keys of the client that encrypted it."
        )
    return bytes(payload)


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
    """What the client needs to turn decrypted outputs into what ``predict`` returns
    (the ``classes`` or ``target`` entry is :meth:`OutputDecoder.to_dict`)."""
    info = {"estimator": type(estimator).__name__, "n_features_in": int(estimator.n_features_in_)}
    bounds = getattr(estimator, "input_bounds_", None)
    if bounds is not None:  # the client clips rows to them, as predict does
        info["input_bounds"] = [[float(value) for value in end] for end in bounds]
    return {**info, **OutputDecoder.from_estimator(estimator).to_dict()}


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
    """Evaluates the circuit on serialized ciphertexts; holds no secret key, ever.

    ``key_cache_size`` deserialized evaluation key sets are kept (default
    ``KEY_CACHE_SIZE``, least recently used evicted first): a client's keys are
    deserialized once (11 s for the default model), not on every request.
    """

    def __init__(self, path, *, key_cache_size: int = KEY_CACHE_SIZE):
        from concrete.ml.deployment import FHEModelServer

        if isinstance(key_cache_size, bool) or not isinstance(key_cache_size, int) or key_cache_size < 1:
            raise ValueError(f"key_cache_size must be a positive integer, got {key_cache_size!r}.")
        self.path = Path(path)
        self.model_id = read_metadata(self.path, SERVER_DIR)["model_id"]
        self._server = FHEModelServer(str(self.path))
        self.key_cache_size = key_cache_size
        self._key_cache: OrderedDict[str, object] = OrderedDict()  # key set -> deserialized EvaluationKeys
        self._key_cache_lock = threading.Lock()

    def _evaluation_keys(self, key_set: str, payload: memoryview):
        """Deserialized keys for a verified payload, from the cache when its key set is there.

        The cache is keyed by content: ``key_set`` is the SHA-256 of the payload,
        which ``_open`` has just recomputed over the bytes actually received and
        compared with the envelope, so a damaged or truncated blob never reaches
        the cache, whatever its header claims. Re-hashing on every request costs
        about 0.3 s for the default model's 469 MB (against 11 s to deserialize);
        it was preferred to comparing the blob with a cached copy, which would
        save little and keep every cached blob in memory besides its keys.

        One lock guards the cache, deserialization included: threads (``run``
        called concurrently, a threaded web server) asking for the same new keys
        wait for one deserialization instead of each doing their own.
        """
        from concrete import fhe as cfhe

        with self._key_cache_lock:
            keys = self._key_cache.get(key_set)
            if keys is None:
                keys = cfhe.EvaluationKeys.deserialize(bytes(payload))
                self._key_cache[key_set] = keys
                while len(self._key_cache) > self.key_cache_size:
                    self._key_cache.popitem(last=False)
            else:
                self._key_cache.move_to_end(key_set)
            return keys

    def run(self, ciphertext: bytes, evaluation_keys: bytes) -> bytes:
        """Evaluate one encrypted row; returns the encrypted result."""
        return self.run_many([ciphertext], evaluation_keys)[0]

    def run_many(
        self, ciphertexts: Sequence[bytes], evaluation_keys: bytes, *, n_jobs: int | None = None, verbose: bool = False
    ) -> list[bytes]:
        """Evaluate many encrypted rows, ``n_jobs`` at a time; results in input order.

        Every ciphertext must have been encrypted by the client that made
        ``evaluation_keys``; a single foreign one refuses the whole batch, before
        any evaluation.
        """
        key_set, keys_payload = _open("evaluation keys", self.model_id, evaluation_keys)
        payloads = [unseal("ciphertext", self.model_id, blob, key_set=key_set) for blob in ciphertexts]
        keys = self._evaluation_keys(key_set, keys_payload)

        def evaluate(payload: bytes) -> bytes:
            result = self._server.run(payload, keys)
            return seal("result", self.model_id, result, key_set=key_set)

        return map_in_order(evaluate, payloads, n_jobs=n_jobs, verbose=verbose, desc="FHE server")


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
        #: Decrypted outputs -> labels, probabilities or values, exactly as the estimator's ``predict``.
        self.decoder = OutputDecoder.from_dict(self.metadata)
        self._client = FHEModelClient(str(self.path), key_dir=None if key_dir is None else str(key_dir))
        self._key_set: str | None = None

    @property
    def is_classifier(self) -> bool:
        return self.decoder.is_classifier

    @property
    def n_outputs(self) -> int:
        """Outputs of the network: one logit per class, or one value per target column."""
        return self.decoder.n_outputs

    @property
    def key_set(self) -> str:
        """This client's key set: the SHA-256 (hex) of its serialized evaluation keys.

        Every ciphertext names it, so the server can refuse to evaluate it with
        another client's keys. Computed once per key generation (generating the
        keys if needed), not per row.
        """
        if self._key_set is None:
            self.generate_keys()
            self._key_set = hashlib.sha256(self._client.get_serialized_evaluation_keys()).hexdigest()
        return self._key_set

    def generate_keys(self, force: bool = False) -> None:
        """Generate the secret and evaluation keys (seconds; done once).

        ``force=True`` makes a new key set: ciphertexts and results of the old
        one can no longer be decrypted, and are refused.
        """
        ready_concrete_for_this_thread()
        if force:
            self._key_set = None
        self._client.generate_private_and_evaluation_keys(force=force)

    def evaluation_keys(self) -> bytes:
        """The public evaluation keys to send to the server (generated if needed)."""
        self.generate_keys()
        blob = seal("evaluation keys", self.model_id, self._client.get_serialized_evaluation_keys())
        self._key_set = _HEADER.unpack_from(blob)[4].hex()  # the digest seal just computed
        return blob

    def encrypt(self, X) -> list[bytes]:
        """Quantize and encrypt each row of ``X`` (clipped to the training range, as ``predict``
        reads it): one ciphertext per row."""
        X = as_dense_float32(check_array(X, accept_sparse=True, dtype=[np.float64, np.float32], force_all_finite=True))
        expected = self.metadata["n_features_in"]
        if X.shape[1] != expected:
            raise ValueError(f"X has {X.shape[1]} features, but this model is expecting {expected} features as input.")
        X = clip_to_bounds(X, self.metadata.get("input_bounds"))  # read as the estimator's predict reads it
        key_set = self.key_set  # generates the keys if needed
        return [
            seal("ciphertext", self.model_id, self._client.quantize_encrypt_serialize(row[None, :]), key_set=key_set)
            for row in X
        ]

    def decrypt_outputs(self, results: Sequence[bytes]) -> np.ndarray:
        """Decrypted, dequantized network outputs (logits / standardized values), one row per result."""
        if isinstance(results, (bytes, bytearray)):
            raise TypeError("decrypt takes a list of results (one per encrypted row), not a single bytes object.")
        results = list(results)
        if not results:
            return np.empty((0, self.n_outputs))
        key_set = self.key_set
        payloads = [unseal("result", self.model_id, blob, key_set=key_set) for blob in results]
        return np.concatenate([self._client.deserialize_decrypt_dequantize(payload) for payload in payloads])

    def decrypt(self, results: Sequence[bytes]) -> np.ndarray:
        """What the estimator's ``predict`` returns: class labels or target values."""
        return self.decoder.predictions(self.decrypt_outputs(results))

    def decrypt_proba(self, results: Sequence[bytes]) -> np.ndarray:
        """What the classifier's ``predict_proba`` returns."""
        if not self.is_classifier:
            raise AttributeError("decrypt_proba is for classifiers; this model is a regressor.")
        return self.decoder.proba(self.decrypt_outputs(results))


@dataclass
class DeployedModel:
    """A saved model loaded whole: its client and server, for local end-to-end use and tests."""

    client: FHEClient
    server: FHEServer

    def predict(self, X, *, n_jobs: int | None = None) -> np.ndarray:
        """Encrypt ``X``, evaluate on the server, decrypt: equals the estimator's ``predict``."""
        keys = self.client.evaluation_keys()  # first: it also gives the client its key set's digest
        results = self.server.run_many(self.client.encrypt(X), keys, n_jobs=n_jobs)
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
