"""``RemoteClient``: predict through an ``fhe-estimators serve`` service as if the model were local.

The client keeps the secret key (through :class:`.FHEClient`), uploads its
evaluation keys once, then sends ciphertexts and decrypts results. It speaks
HTTP with the standard library only (``urllib``), so a data owner needs no web
framework. Its ``key_id`` is its key set (the SHA-256 of its evaluation keys),
the id the server stores them under: a client restarted on the same ``key_dir``
finds its keys still there and uploads nothing.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Sequence

import numpy as np

from . import wire
from .deploy import FHEClient
from .runtime import ready_concrete_for_this_thread


class ServerError(RuntimeError):
    """The service answered with an error status (its JSON message is in the text)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message


class RemoteClient:
    """Encrypt here, evaluate on the service at ``url``, decrypt here.

    ``predict(X)`` / ``predict_proba(X)`` return exactly what the estimator's
    ``predict`` / ``predict_proba`` return. A 503 (server busy) is retried up to
    ``retries`` times with exponential back-off (``Retry-After`` if longer);
    a 404 for the keys (the server lost its state) triggers one re-upload.
    """

    def __init__(
        self,
        url: str,
        client_dir,
        *,
        key_dir=None,
        timeout: float = 600.0,
        retries: int = 6,
        backoff: float = 0.5,
        batch_size: int = 16,
    ):
        self.url = url.rstrip("/")
        self.client = FHEClient(client_dir, key_dir)
        self.timeout, self.retries, self.backoff, self.batch_size = timeout, retries, backoff, batch_size
        self.key_id: str | None = None
        self.uploads = 0  # key uploads this client made (0 when the server already had its keys)
        self.server_info = self.check_server()

    # ------------------------------------------------------------ HTTP
    def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """Status and body, retrying 503 with back-off; ``ServerError`` for any other error status."""
        limit = getattr(self, "server_info", {}).get("limits", {}).get("max_body_bytes")
        if body is not None and limit is not None and len(body) > limit:
            raise ValueError(
                f"This request ({len(body)} bytes) exceeds the server's body limit of {limit} bytes: "
                "lower batch_size, or start the server with a larger --max-body-mb."
            )
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.url + path, data=body, method=method)
            if body is not None:
                request.add_header("Content-Type", wire.OCTET_STREAM)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return response.status, response.read()
            except urllib.error.HTTPError as error:
                status, content, retry_after = error.code, error.read(), error.headers.get("Retry-After", "")
            except urllib.error.URLError as error:
                raise ConnectionError(f"No fhe-estimators service answers at {self.url}: {error.reason}") from None
            if status != 503 or attempt == self.retries:
                break
            delay = self.backoff * 2**attempt
            time.sleep(max(delay, float(retry_after)) if retry_after.isdigit() else delay)
        try:
            message = json.loads(content)["error"]
        except (ValueError, KeyError, TypeError):
            message = content[:200].decode("utf-8", "replace")
        if status == 503:
            message = f"{message} (still busy after {self.retries} retries)"
        raise ServerError(status, message)

    def _json(self, method: str, path: str, body: bytes | None = None) -> dict:
        return json.loads(self._request(method, path, body)[1])

    # ------------------------------------------------------------ checks and keys
    def check_server(self) -> dict:
        """The server's ``/info``, after checking it serves this client's model with the same library versions."""
        info = self._json("GET", "/info")
        mine = self.client.metadata
        if info.get("model_id") != self.client.model_id:
            raise ValueError(
                f"The server at {self.url} serves model {str(info.get('model_id'))[:12]}…, not this client's model "
                f"({self.client.model_id[:12]}…): point the client at the service of the model it was saved with."
            )
        theirs = info.get("versions", {})
        different = [name for name, have in mine["versions"].items() if theirs.get(name) != have]
        if different:
            here = mine["versions"]
            details = ", ".join(f"{name} {here[name]} here, {theirs.get(name)} on the server" for name in different)
            raise ValueError(f"The server at {self.url} runs other library versions: {details}.")
        if info.get("n_features") not in (None, mine["n_features_in"]):
            raise ValueError(
                f"The server's model takes {info['n_features']} features, this client's {mine['n_features_in']}."
            )
        task = "classifier" if self.client.is_classifier else "regressor"
        if info.get("task") not in (None, task):
            raise ValueError(f"The server serves a {info['task']}, this client's model is a {task}.")
        return info

    def upload_keys(self, force: bool = False) -> str:
        """Make sure the server holds this client's evaluation keys; returns the key id.

        Asks first (``GET /keys/{key_set}``): keys uploaded before (by this
        client, or by another process on the same ``key_dir``) are not sent again.
        """
        key_set = self.client.key_set  # generates the keys if needed
        if not force:
            try:
                self._request("GET", f"/keys/{key_set}")
                self.key_id = key_set
                return key_set
            except ServerError as error:
                if error.status != 404:
                    raise
        key_id = self._json("POST", "/keys", self.client.evaluation_keys())["key_id"]
        if key_id != self.client.key_set:
            raise RuntimeError(f"The server stored the keys as {key_id}, expected their key set {self.client.key_set}.")
        self.key_id, self.uploads = key_id, self.uploads + 1
        return key_id

    # ------------------------------------------------------------ prediction
    def run(self, ciphertexts: Sequence[bytes]) -> list[bytes]:
        """Encrypted results of ciphertexts (from ``self.client.encrypt``), ``batch_size`` per request."""
        if self.key_id is None:
            self.upload_keys()
        results: list[bytes] = []
        for start in range(0, len(ciphertexts), self.batch_size):
            body = wire.pack(ciphertexts[start : start + self.batch_size])
            try:
                reply = self._request("POST", f"/predict/{self.key_id}/batch", body)[1]
            except ServerError as error:
                if error.status != 404:
                    raise
                self.upload_keys(force=True)  # the server lost our keys (new state dir, deleted): once more
                reply = self._request("POST", f"/predict/{self.key_id}/batch", body)[1]
            results += wire.unpack(reply)
        return results

    def _outputs(self, X) -> list[bytes]:
        ready_concrete_for_this_thread()  # RemoteClients may run in threads (one per concurrent caller)
        return self.run(self.client.encrypt(X))

    def predict(self, X) -> np.ndarray:
        """Class labels or target values, exactly as the estimator's ``predict``."""
        return self.client.decrypt(self._outputs(X))

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, exactly as the classifier's ``predict_proba``."""
        if not self.client.is_classifier:
            raise AttributeError("predict_proba is for classifiers; this model is a regressor.")
        return self.client.decrypt_proba(self._outputs(X))
