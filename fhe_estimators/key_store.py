"""Where an encrypted-inference service keeps evaluation keys: on disk, atomically, and in a bounded LRU.

Evaluation keys are large (tens to hundreds of MB) and are uploaded once per
client, so they must survive a restart, and a crash (``kill -9``) during an
upload must never leave a half-written file that a later request would trust.
:class:`KeyStore` writes each key set to a temporary file in the same directory,
fsyncs it, then ``os.replace``-s it under its final name (atomic on POSIX) and
fsyncs the directory; leftover temporary files are deleted at start-up.

Keys are stored sealed (the envelope of :mod:`.deploy`), under their key id: the
SHA-256 of the serialized evaluation keys, i.e. the key set every ciphertext of
that client names. The same keys uploaded twice get the same id and one file.

:class:`KeyCache` keeps the *deserialized* keys of the most recently used key
sets, so a key set is deserialized once (seconds for a large model), not on
every request; concurrent requests for the same new key set wait for one load.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

from .deploy import unseal

_KEY_ID = re.compile(r"^[0-9a-f]{64}$")
_SUFFIX, _TEMP_SUFFIX = ".keys", ".tmp"


def is_key_id(key_id: str) -> bool:
    """Whether ``key_id`` looks like a key id (64 lowercase hex digits): nothing else touches the disk."""
    return isinstance(key_id, str) and bool(_KEY_ID.match(key_id))


class KeyStore:
    """Sealed evaluation keys of one model, one file per key set, under ``directory``.

    Every key set is checked with the model's envelope (:func:`.deploy.unseal`:
    kind, model id, length, checksum) before it is stored, and again when it is
    read back, so neither a bad upload nor a damaged file reaches Concrete.
    """

    def __init__(self, directory, model_id: str):
        self.directory = Path(directory)
        self.model_id = model_id
        self.directory.mkdir(parents=True, exist_ok=True)
        for leftover in self.directory.glob(f".*{_TEMP_SUFFIX}"):  # an upload a crash interrupted
            leftover.unlink(missing_ok=True)

    def path(self, key_id: str) -> Path:
        if not is_key_id(key_id):
            raise KeyError(key_id)
        return self.directory / f"{key_id}{_SUFFIX}"

    def __contains__(self, key_id: str) -> bool:
        return is_key_id(key_id) and self.path(key_id).is_file()

    def key_ids(self) -> list[str]:
        return sorted(path.stem for path in self.directory.glob(f"*{_SUFFIX}") if is_key_id(path.stem))

    def put(self, blob: bytes, validate: Callable[[bytes], Any] | None = None) -> tuple[str, Any]:
        """Check and store sealed evaluation keys; returns ``(key_id, validated)``.

        Raises ``ValueError``/``TypeError`` (the envelope's message) for a blob
        that is not intact evaluation keys of this model. ``validate(payload)``,
        if given, runs before anything is written (it raises to refuse the keys)
        and its value is returned; it is None when the keys were already stored:
        idempotent, the same keys are neither validated nor written again.
        """
        payload = unseal("evaluation keys", self.model_id, blob)
        key_id = hashlib.sha256(payload).hexdigest()
        target = self.path(key_id)
        if target.is_file():
            return key_id, None
        validated = validate(payload) if validate is not None else True
        del payload
        atomic_write(target, blob)
        return key_id, validated

    def read(self, key_id: str) -> bytes:
        """The verified serialized keys (payload) of ``key_id``; ``KeyError`` if not stored.

        A stored file that fails the envelope check (a disk error: writes are
        atomic) is deleted and reported as missing, so the client uploads again.
        """
        path = self.path(key_id)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise KeyError(key_id) from None
        try:
            payload = unseal("evaluation keys", self.model_id, blob)
        except ValueError:
            path.unlink(missing_ok=True)
            raise KeyError(key_id) from None
        if hashlib.sha256(payload).hexdigest() != key_id:  # renamed or swapped on disk
            path.unlink(missing_ok=True)
            raise KeyError(key_id)
        return payload


def atomic_write(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` so that ``target`` is either absent or complete, even after a crash."""
    descriptor, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=_TEMP_SUFFIX)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)


class KeyCache:
    """A bounded LRU of deserialized evaluation keys, keyed by key id, safe to use from many threads.

    ``get(key_id, load)`` returns the cached keys or calls ``load(key_id)`` once
    (other threads asking for the same key id meanwhile wait for that load;
    loads of different key ids run in parallel). A failed load caches nothing.
    """

    def __init__(self, size: int):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"The key cache size must be a positive integer, got {size!r}.")
        self.size = size
        self.loads = self.hits = 0
        self._entries: OrderedDict[str, Any] = OrderedDict()
        self._loading: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def _lookup(self, key_id: str):
        """The cached keys or None; call with ``self._lock`` held."""
        keys = self._entries.get(key_id)
        if keys is not None:
            self._entries.move_to_end(key_id)
            self.hits += 1
        return keys

    def put(self, key_id: str, keys) -> None:
        """Cache keys deserialized elsewhere (at upload: the first request then finds them ready)."""
        with self._lock:
            self._entries[key_id] = keys
            self._entries.move_to_end(key_id)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def get(self, key_id: str, load: Callable[[str], Any]):
        with self._lock:
            keys = self._lookup(key_id)
            if keys is not None:
                return keys
            loading = self._loading.setdefault(key_id, threading.Lock())
        with loading:
            with self._lock:
                keys = self._lookup(key_id)
            if keys is not None:
                return keys
            try:
                keys = load(key_id)
            except BaseException:
                with self._lock:
                    self._loading.pop(key_id, None)
                raise
            with self._lock:  # cache and release in one step: no thread starts a second load in between
                self.loads += 1
                self._entries[key_id] = keys
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
                self._loading.pop(key_id, None)
            return keys

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"size": self.size, "cached": len(self._entries), "loads": self.loads, "hits": self.hits}
