"""Run compiled circuits: in the clear, simulated or encrypted, on threads, with step timings.

Compilation lives in :mod:`.compilation`; this module only runs what it made.
Concrete's runtime releases the GIL while it computes, so encrypted rows run
in parallel on threads; each thread first gets the thread-local state Concrete
sets only in the thread that imported it (:func:`ready_concrete_for_this_thread`).
"""

from __future__ import annotations

import importlib
import numbers
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import joblib
import numpy as np

FHE_MODES = ("disable", "simulate", "execute")


def ready_concrete_for_this_thread() -> None:
    """Give this thread the thread-local state Concrete sets only in the thread importing it.

    ``concrete.fhe.extensions`` initializes three ``threading.local`` objects at
    import; compiling or simulating from any other thread (joblib's threads,
    unpickling in a result thread, a web server) then fails with
    "'_thread._local' object has no attribute 'stack'".
    """
    extensions = "concrete.fhe.extensions."
    tag_context = importlib.import_module(extensions + "tag").tag_context
    if not hasattr(tag_context, "stack"):
        tag_context.stack = []
    for name in ("round_bit_pattern", "truncate_bit_pattern"):
        local = importlib.import_module(extensions + name).local
        if not hasattr(local, "_is_adjusting"):
            local._is_adjusting = False


def check_fhe_mode(fhe: str) -> str:
    """Return ``fhe`` if it is a valid mode, else raise a clear error."""
    if not isinstance(fhe, str) or fhe not in FHE_MODES:
        raise ValueError(f"fhe must be one of {', '.join(repr(m) for m in FHE_MODES)}; got {fhe!r}.")
    return fhe


def check_n_jobs(n_jobs: int | None, n_items: int) -> int:
    """Threads to use, with joblib's meaning of ``n_jobs`` (None -> 1, -1 -> all cores,
    -2 -> all but one, ...), and never more than there are items."""
    if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0):
        raise ValueError(
            f"n_jobs must be None, a positive integer, or a negative one counted from the number of cores "
            f"(-1: all, -2: all but one), as in joblib; got {n_jobs!r}."
        )
    workers = 1 if n_jobs is None else joblib.effective_n_jobs(int(n_jobs))
    return max(1, min(workers, n_items))


def map_in_order(
    function: Callable[[Any], Any], items: Sequence, *, n_jobs: int | None = None, verbose: bool = False, desc: str = ""
) -> list:
    """``[function(item) for item in items]``, ``n_jobs`` threads at a time, results in input order.

    Concrete's runtime releases the GIL while it computes, so threads run
    encrypted rows in parallel; each thread gets Concrete's thread-local state
    first. ``verbose`` shows a tqdm progress bar.
    """
    from tqdm.auto import tqdm

    workers = check_n_jobs(n_jobs, len(items))
    with tqdm(total=len(items), desc=desc, disable=not verbose, unit="row") as progress:

        def tracked(item):
            ready_concrete_for_this_thread()  # a pool thread is not the one that imported Concrete
            result = function(item)
            progress.update(1)
            return result

        if workers == 1:
            return [tracked(item) for item in items]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(tracked, items))  # map keeps the input order


def run(quantized_module, X: np.ndarray, fhe: str, *, n_jobs: int | None = None, verbose: bool = False) -> np.ndarray:
    """Outputs of the quantized network on ``X`` in the clear, simulated or encrypted.

    Encrypted execution runs one row at a time (``n_jobs`` rows in parallel).
    """
    ready_concrete_for_this_thread()
    X = np.asarray(X, dtype=np.float32)
    if fhe == "simulate":
        return simulate(quantized_module, X)
    if fhe != "execute":
        return quantized_module.forward(X, fhe=fhe)
    quantized_module.fhe_circuit.keygen(force=False)  # keys are made on first use

    def execute(row: np.ndarray) -> np.ndarray:
        return quantized_module.forward(row[None, :], fhe="execute")

    rows = map_in_order(execute, list(X), n_jobs=n_jobs, verbose=verbose, desc="FHE execute")
    return np.concatenate(rows)


def simulate(quantized_module, X: np.ndarray) -> np.ndarray:
    """``quantized_module.forward(X, fhe="simulate")``, the same outputs about 35 times faster.

    Concrete ML 1.9's loop reads the circuit's ``statistics`` before simulating each row, and Concrete
    recomputes them on every read: three quarters of the time of simulating 1,875 rows of a
    64-neuron network (14 of 19 s). Here they are read once. Concrete's ``circuit.simulate`` then
    still spends most of each row on work that depends only on the circuit, which
    :func:`_row_simulator` does once per batch: 2,000 rows of a 64-neuron, 10-class network take
    0.46 ms each instead of 3.2 (Concrete ML's ``forward``: 18 ms), nearly all of it Concrete's
    simulation proper. A circuit with CRT-encoded lookups (a non-zero ``packing_key_switch_count``)
    takes Concrete ML's own path, its virtual library.
    """
    from concrete.ml.common.utils import to_tuple

    circuit = quantized_module.fhe_circuit
    if circuit.statistics["packing_key_switch_count"] != 0:
        return quantized_module.forward(X, fhe="simulate")
    (q_x,) = to_tuple(quantized_module.quantize_input(*quantized_module.pre_processing(X)))
    try:
        simulate_row = _row_simulator(circuit, q_x)
    except (AttributeError, ImportError):  # Concrete's internals moved: its public, per-row path

        def simulate_row(q_row: np.ndarray) -> tuple:
            return to_tuple(circuit.simulate(q_row))

    q_rows = [simulate_row(q_x[[row]]) for row in range(len(q_x))]
    q_y = [np.concatenate(outputs, axis=0) for outputs in zip(*q_rows)]
    return quantized_module.dequantize_output(*q_y)


def _row_simulator(circuit, q_x: np.ndarray) -> Callable[[np.ndarray], tuple]:
    """``circuit.simulate`` of one row of ``q_x`` (a tuple of outputs), with its setup done once.

    Per row, Concrete 2.10's ``simulate_encrypt`` checks the input against the circuit's specification
    by serializing that to JSON and parsing it back (1.6 ms), and it, ``Server.run`` and
    ``simulate_decrypt`` each build a simulated client or server program (0.3 to 0.5 ms each) around
    the simulation itself (0.1 to 0.4 ms). Here the batch is checked once, by Concrete's own
    ``validate_input_args`` (integer type, range, shape) on its column-wise minima and maxima (every
    row passes if and only if they do; a row out of range raises Concrete's ``ValueError``), and the
    programs are built once. Simulation noise comes from Concrete's random generators either way:
    with a realistic ``p_error`` the outputs are the same. Relies on Concrete's internals: on
    another version this raises AttributeError or ImportError, and :func:`simulate` falls back.
    """
    from concrete.compiler import ClientProgram, ServerProgram
    from concrete.compiler import Value as RawValue
    from concrete.fhe.compilation.utils import validate_input_args

    function = circuit._function
    client_specs = function.simulation_runtime.val.client._client_specs
    library = function.simulation_runtime.val.server._library
    for extremes in (q_x.min(axis=0, keepdims=True), q_x.max(axis=0, keepdims=True)):
        validate_input_args(client_specs, extremes, function_name=function.name)
    client = ClientProgram.create_simulated(client_specs.program_info).get_client_circuit(function.name)
    server = ServerProgram(library, True).get_server_circuit(function.name)  # True: simulated

    def simulate_row(q_row: np.ndarray) -> tuple:
        results = server.simulate([client.simulate_prepare_input(RawValue(q_row.astype(np.int64)), 0)])
        outputs = [client.simulate_process_output(result, index).to_py_val() for index, result in enumerate(results)]
        return tuple(out.astype(np.int64) if isinstance(out, np.ndarray) else out for out in outputs)

    return simulate_row


# ---------------------------------------------------------------- timed steps (demo, benchmarks)
@dataclass
class EncryptedRun:
    """One encrypted prediction, step by step, with the time each step took (seconds)."""

    outputs: np.ndarray
    encrypt_s: float
    run_s: float
    decrypt_s: float


def keygen(quantized_module) -> float:
    """Generate the circuit's keys (if not already there); returns the seconds it took."""
    start = time.perf_counter()
    quantized_module.fhe_circuit.keygen(force=False)
    return time.perf_counter() - start


def run_encrypted_steps(quantized_module, row: np.ndarray) -> EncryptedRun:
    """Quantize and encrypt one sample, run the circuit on it, decrypt and dequantize."""
    circuit = quantized_module.fhe_circuit
    q_x = quantized_module.quantize_input(np.asarray(row, dtype=np.float32).reshape(1, -1))
    start = time.perf_counter()
    encrypted = circuit.encrypt(q_x)
    encrypted_at = time.perf_counter()
    result = circuit.run(encrypted)
    ran_at = time.perf_counter()
    q_y = circuit.decrypt(result)
    decrypted_at = time.perf_counter()
    outputs = quantized_module.post_processing(quantized_module.dequantize_output(q_y))
    return EncryptedRun(outputs, encrypted_at - start, ran_at - encrypted_at, decrypted_at - ran_at)
