"""The HTTP protocol shared by the encrypted-inference service and :class:`.RemoteClient`.

Bodies are raw bytes (``application/octet-stream``): one sealed blob, or for a
batch several of them framed as ``b"FHEB"``, a 4-byte count, then for each blob
an 8-byte length and the blob (all big-endian). Errors are JSON ``{"error": ...}``.
Kept free of any web framework, so the client needs only the standard library.
"""

from __future__ import annotations

import struct
from typing import Sequence

OCTET_STREAM = "application/octet-stream"
_BATCH_MAGIC = b"FHEB"
_COUNT, _LENGTH = struct.Struct(">I"), struct.Struct(">Q")


def pack(blobs: Sequence[bytes]) -> bytes:
    """Frame several blobs into one body."""
    parts = [_BATCH_MAGIC, _COUNT.pack(len(blobs))]
    for blob in blobs:
        parts += [_LENGTH.pack(len(blob)), bytes(blob)]
    return b"".join(parts)


def unpack(body: bytes) -> list[bytes]:
    """The blobs of a body made by :func:`pack`; ``ValueError`` naming what is wrong otherwise."""
    if body[:4] != _BATCH_MAGIC or len(body) < 8:
        raise ValueError("Malformed batch: expected a body framed by fhe_estimators (RemoteClient / wire.pack).")
    (count,), offset, blobs = _COUNT.unpack_from(body, 4), 8, []
    for index in range(count):
        if offset + _LENGTH.size > len(body):
            raise ValueError(f"Truncated batch: it announces {count} blobs, the body ends in blob {index}.")
        (length,) = _LENGTH.unpack_from(body, offset)
        offset += _LENGTH.size
        if offset + length > len(body):
            raise ValueError(f"Truncated batch: blob {index} announces {length} bytes, {len(body) - offset} remain.")
        blobs.append(bytes(body[offset : offset + length]))
        offset += length
    if offset != len(body):
        raise ValueError(f"Malformed batch: {len(body) - offset} bytes after its {count} blobs.")
    return blobs
