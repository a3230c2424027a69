"""An HTTP service for encrypted inference: ``fhe-estimators serve MODEL_DIR/server`` (extra ``[server]``).

Why a service and not just :class:`.FHEServer`: a deployment must also decide
where evaluation keys (tens to hundreds of MB) are uploaded once and kept, how
concurrent requests share the CPU, what a malformed body gets and what survives a
restart. Here: keys go to a :class:`.KeyStore` under ``--state-dir`` (atomic
writes), deserialized keys to a bounded :class:`.KeyCache`; encrypted work runs
in ``--workers`` threads (Concrete releases the GIL) off the event loop, so
``/health`` answers while rows compute; at most ``--queue-size`` requests wait,
the next get 503 with ``Retry-After``; every bad input is a 4xx ``{"error": ...}``.

Endpoints: ``GET /health``, ``GET /info``, ``POST /keys``, ``GET /keys/{key_id}``,
``POST /predict/{key_id}`` (one ciphertext) and ``POST /predict/{key_id}/batch``
(several, framed by :mod:`.wire`). See docs/deployment.md.
"""

import argparse
import asyncio
import json
import logging
import math
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import wire
from .deploy import CLIENT_DIR, KEY_CACHE_SIZE, METADATA, SERVER_DIR, read_metadata, seal, unseal
from .key_store import KeyCache, KeyStore
from .runtime import ready_concrete_for_this_thread

logger = logging.getLogger("fhe_estimators.server")


@dataclass
class ServiceConfig:
    """What ``serve`` is started with (the command line's options)."""

    server_dir: Path
    state_dir: Path | None = None  # default: MODEL_DIR/state, next to the server directory
    workers: int = 2
    queue_size: int = 16
    max_body_mb: float = 1024.0
    key_cache_size: int = KEY_CACHE_SIZE

    def __post_init__(self) -> None:
        self.server_dir = Path(self.server_dir)
        self.state_dir = Path(self.state_dir) if self.state_dir is not None else self.server_dir.parent / "state"
        for name in ("workers", "key_cache_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}.")
        if self.queue_size < 0 or self.max_body_mb <= 0:
            raise ValueError("queue-size must be >= 0 and max-body-mb > 0.")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


class EncryptedModel:
    """The compiled circuit, its stored keys and the cache of deserialized keys; called from worker threads."""

    def __init__(self, config: ServiceConfig):
        from concrete.ml.deployment import FHEModelServer

        self.model_id = read_metadata(config.server_dir, SERVER_DIR)["model_id"]
        self._server = FHEModelServer(str(config.server_dir))
        self.store = KeyStore(config.state_dir / self.model_id, self.model_id)
        self.cache = KeyCache(config.key_cache_size)
        self.info = {"model_id": self.model_id, **_describe(config.server_dir, self.model_id)}

    @staticmethod
    def _deserialize_payload(payload: bytes):
        """Concrete's evaluation keys; ``ValueError`` for bytes it cannot read (a forged envelope)."""
        from concrete import fhe

        try:
            return fhe.EvaluationKeys.deserialize(bytes(payload))
        except RuntimeError as error:
            raise ValueError(f"Concrete cannot read these evaluation keys: {error}") from None

    def _deserialize(self, key_id: str):
        try:
            return self._deserialize_payload(self.store.read(key_id))
        except ValueError:  # stored keys Concrete cannot read (only if the state dir was tampered with)
            self.store.path(key_id).unlink(missing_ok=True)
            raise KeyError(key_id) from None

    def upload(self, blob: bytes) -> tuple[str, bool]:
        """Check, deserialize (so that keys Concrete cannot read are refused, and the first request
        finds them ready), store and cache evaluation keys; returns ``(key_id, created)``."""
        ready_concrete_for_this_thread()
        key_id, keys = self.store.put(blob, validate=self._deserialize_payload)
        if keys is not None:
            self.cache.put(key_id, keys)
        return key_id, keys is not None

    def evaluate(self, key_id: str, ciphertexts: list[bytes]) -> list[bytes]:
        """Sealed results of sealed ciphertexts; ``ValueError`` for a bad one, ``KeyError`` for unknown keys.

        Every envelope is checked (model, key set ``key_id``, checksum) before
        the keys are loaded or anything runs.
        """
        ready_concrete_for_this_thread()
        payloads = [unseal("ciphertext", self.model_id, blob, key_set=key_id) for blob in ciphertexts]
        keys = self.cache.get(key_id, self._deserialize)
        results = []
        for payload in payloads:
            try:
                result = self._server.run(payload, keys)
            except RuntimeError as error:  # e.g. a forged envelope around bytes that are no ciphertext
                raise ValueError(f"Concrete could not evaluate this ciphertext: {error}") from None
            results.append(seal("result", self.model_id, result, key_set=key_id))
        return results


def _describe(server_dir: Path, model_id: str) -> dict:
    """Features and outputs from the circuit's public specs; the task from the client metadata if it is
    next to the server directory (never the labels), else None."""
    specs = json.loads(zipfile.ZipFile(server_dir / "server.zip").read("client.specs.json"))
    circuit = specs["circuits"][0]
    ends = (circuit["inputs"][0], circuit["outputs"][0])
    shape = [end["typeInfo"]["lweCiphertext"]["abstractShape"]["dimensions"] for end in ends]
    task = None
    try:
        client = json.loads((server_dir.parent / CLIENT_DIR / METADATA).read_text(encoding="utf-8"))
        if client.get("model_id") == model_id:
            task = "classifier" if "Classifier" in client.get("estimator", "") else "regressor"
    except (OSError, ValueError):
        pass
    versions = json.loads((server_dir / METADATA).read_text(encoding="utf-8"))["versions"]
    return {"versions": versions, "n_features": shape[0][-1], "n_outputs": shape[1][-1], "task": task}


class Gate:
    """Admission control, used from the event loop only: at most ``workers + queue_size`` requests inside.

    ``retry_after`` estimates when a slot frees up from the mean duration of recent requests.
    """

    def __init__(self, workers: int, queue_size: int):
        self.workers, self.capacity, self.inside, self.mean_s = workers, workers + queue_size, 0, 1.0

    def enter(self) -> bool:
        if self.inside >= self.capacity:
            return False
        self.inside += 1
        return True

    def leave(self, seconds: float) -> None:
        self.inside -= 1
        self.mean_s = 0.8 * self.mean_s + 0.2 * seconds

    def retry_after(self) -> int:
        return max(1, min(60, math.ceil(self.mean_s * self.inside / self.workers)))


def create_app(config: ServiceConfig):
    """The FastAPI application serving ``config.server_dir`` (loads the circuit now)."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse, Response
        from starlette.exceptions import HTTPException
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ImportError("The service needs FastAPI and uvicorn: pip install 'fhe-estimators[server]'") from None
    from . import __version__

    model = EncryptedModel(config)
    pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="fhe-worker")
    gate = Gate(config.workers, config.queue_size)
    app = FastAPI(title="fhe-estimators encrypted inference", version=__version__)
    app.state.model, app.state.gate = model, gate
    app.router.on_shutdown.append(lambda: pool.shutdown(wait=False, cancel_futures=True))

    def error(status: int, message: str, headers: dict | None = None) -> HTTPException:
        return HTTPException(status, message, headers)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc):
        return JSONResponse({"error": f"Invalid request: {exc.errors()}"}, status_code=400)

    @app.exception_handler(Exception)
    async def internal_error(request, exc: Exception):  # a bug, never bad input: logged with its traceback
        logger.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": f"Internal error: {type(exc).__name__}: {exc}"}, status_code=500)

    async def read_body(request: Request) -> bytes:
        """The body, refused with 413 as soon as it exceeds the limit (declared or streamed)."""
        limit = config.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise error(413, f"Body of {int(declared)} bytes exceeds the limit of {limit} bytes (--max-body-mb).")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise error(413, f"Body exceeds the limit of {limit} bytes (--max-body-mb).")
        return bytes(body)

    async def in_pool(request: Request, work):
        """Read the body and run ``work(body)`` in the worker pool, once admitted (else 503)."""
        if not gate.enter():
            busy = "Server busy: the request queue is full; retry later."
            raise error(503, busy, {"Retry-After": str(gate.retry_after())})
        start = time.perf_counter()
        try:
            body = await read_body(request)
            return await asyncio.get_running_loop().run_in_executor(pool, work, body)
        except ValueError as bad:  # the envelope's or the batch framing's message
            raise error(400, " ".join(str(bad).split())) from None
        except KeyError as missing:
            raise error(404, f"Unknown key id {missing.args[0]}: upload the evaluation keys (POST /keys).") from None
        finally:
            gate.leave(time.perf_counter() - start)

    def known(key_id: str) -> str:
        if key_id not in model.store:
            raise error(404, f"Unknown key id {key_id}: upload the evaluation keys (POST /keys).")
        return key_id

    @app.get("/health")
    async def health():
        return {"status": "ok", "model_id": model.model_id, "busy": gate.inside}

    @app.get("/info")
    async def info():
        limits = {"workers": config.workers, "queue_size": config.queue_size, "max_body_bytes": config.max_body_bytes}
        stored = len(model.store.key_ids())
        return {**model.info, "limits": limits, "key_cache": model.cache.stats(), "stored_keys": stored}

    @app.post("/keys", status_code=201)
    async def upload_keys(request: Request):
        key_id, created = await in_pool(request, model.upload)
        return JSONResponse({"key_id": key_id, "created": created}, status_code=201)

    @app.get("/keys/{key_id}")
    async def has_keys(key_id: str):
        try:
            return {"key_id": key_id, "bytes": model.store.path(key_id).stat().st_size}
        except (KeyError, OSError):
            raise error(404, f"Unknown key id {key_id}: upload the evaluation keys (POST /keys).") from None

    @app.post("/predict/{key_id}")
    async def predict(key_id: str, request: Request):
        known(key_id)
        (result,) = await in_pool(request, lambda body: model.evaluate(key_id, [body]))
        return Response(result, media_type=wire.OCTET_STREAM)

    @app.post("/predict/{key_id}/batch")
    async def predict_batch(key_id: str, request: Request):
        known(key_id)
        results = await in_pool(request, lambda body: wire.pack(model.evaluate(key_id, wire.unpack(body))))
        return Response(results, media_type=wire.OCTET_STREAM)

    return app


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` subcommand's options (kept here so cli.py stays small)."""
    parser.add_argument("server_dir", type=Path, help="MODEL_DIR/server, as written by model.save(MODEL_DIR)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--state-dir", type=Path, help="where uploaded keys are kept (default: MODEL_DIR/state)")
    parser.add_argument("--workers", type=int, default=2, help="threads running encrypted work (default 2)")
    parser.add_argument("--queue-size", type=int, default=16, help="requests waiting beyond those running; then 503")
    parser.add_argument("--max-body-mb", type=float, default=1024.0, help="largest request body (keys!), else 413")
    parser.add_argument("--key-cache-size", type=int, default=KEY_CACHE_SIZE, help="deserialized key sets kept (LRU)")


def serve(args: argparse.Namespace) -> int:
    """Run the service until interrupted (SIGINT/SIGTERM); returns the exit status."""
    import uvicorn

    config = ServiceConfig(
        args.server_dir, args.state_dir, args.workers, args.queue_size, args.max_body_mb, args.key_cache_size
    )
    app = create_app(config)
    print(
        f"fhe-estimators serve: model {app.state.model.model_id} on http://{args.host}:{args.port}, "
        f"keys in {app.state.model.store.directory}, {config.workers} workers, queue {config.queue_size}",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=5)
    return 0
