"""Encrypted batch scoring on a Dask distributed cluster (optional extra: ``pip install fhe-estimators[dask]``).

The server directory and the evaluation keys go to every worker once
(``scatter(broadcast=True)``); each worker loads the circuit once and keeps it;
ciphertext rows are then mapped over the cluster and the encrypted results
come back in input order. Workers never see a secret key: only the server
artifact, evaluation keys and ciphertexts travel.

    from dask.distributed import Client
    with Client("tcp://scheduler:8786") as cluster:      # or Client(LocalCluster(...))
        results = run_on_dask(cluster, "model/server", ciphertexts, evaluation_keys)
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

from .deploy import METADATA, SERVER_DIR, FHEServer, read_metadata

#: Per worker process: model id -> loaded server (the circuit is loaded once per worker).
_WORKER_SERVERS: dict[str, FHEServer] = {}


def _server_files(server_path: Path) -> dict[str, bytes]:
    """The server directory as bytes, to ship to workers (it holds no key)."""
    read_metadata(server_path, SERVER_DIR)  # clear error if it is not a server directory
    return {name: (server_path / name).read_bytes() for name in (METADATA, "server.zip")}


def _worker_server(files: dict[str, bytes]) -> FHEServer:
    """This worker's server for the shipped files, loaded on first use."""
    import json

    model_id = json.loads(files[METADATA])["model_id"]
    if model_id not in _WORKER_SERVERS:
        directory = Path(tempfile.mkdtemp(prefix="fhe_estimators_server_"))
        for name, content in files.items():
            (directory / name).write_bytes(content)
        _WORKER_SERVERS[model_id] = FHEServer(directory)
    return _WORKER_SERVERS[model_id]


def _run_rows(ciphertexts: Sequence[bytes], files: dict[str, bytes], evaluation_keys: bytes) -> list[bytes]:
    return _worker_server(files).run_many(ciphertexts, evaluation_keys)


def run_on_dask(
    client, server_path, ciphertexts: Sequence[bytes], evaluation_keys: bytes, *, rows_per_task: int = 1
) -> list[bytes]:
    """Evaluate encrypted rows on the workers of a ``dask.distributed.Client``; results in input order.

    ``rows_per_task`` groups rows into tasks (more rows per task, less scheduling
    overhead; 1 balances best when rows are few).
    """
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ImportError("run_on_dask needs Dask: pip install 'fhe-estimators[dask]'") from None
    if not isinstance(client, Client):
        raise TypeError(f"client must be a dask.distributed.Client, got {type(client).__name__}.")
    if isinstance(rows_per_task, bool) or not isinstance(rows_per_task, int) or rows_per_task < 1:
        raise ValueError(f"rows_per_task must be a positive integer, got {rows_per_task!r}.")
    if isinstance(ciphertexts, (bytes, bytearray)):
        raise TypeError("ciphertexts must be a list of ciphertexts (one per row), not a single bytes object.")
    ciphertexts = list(ciphertexts)
    if not ciphertexts:
        return []
    # Lists of one: scatter would otherwise split a dict into one future per entry.
    [files] = client.scatter([_server_files(Path(server_path))], broadcast=True, hash=False)
    [keys] = client.scatter([evaluation_keys], broadcast=True, hash=False)
    chunks = [ciphertexts[start : start + rows_per_task] for start in range(0, len(ciphertexts), rows_per_task)]
    futures = client.map(_run_rows, chunks, files=files, evaluation_keys=keys, pure=False)
    return [result for chunk in client.gather(futures) for result in chunk]
