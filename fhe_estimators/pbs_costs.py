"""Per-machine table of what one PBS costs, for the cost model (:mod:`fhe_estimators.cost`).

:func:`measure_pbs_costs` compiles lone table lookups (and "proxy" circuits whose outputs
are scaled, to learn which crypto parameters Concrete picks for a given noise demand),
times them on this machine, and caches the table in the user's cache directory
(:func:`cache_path`). :func:`load_pbs_costs` returns that table, or :data:`FALLBACK_PATH`
(measured on the development machine) until one exists.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import statistics
import time
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np



#: Concrete ML's default p_error (``p_error=None``).
CONCRETE_P_ERROR = 2.0**-40
#: What :func:`measure_pbs_costs` calibrates by default: Concrete ML's default, the
#: estimators' default (``fhe.DEFAULT_P_ERROR``) and a permissive 0.01.
MEASURED_P_ERRORS = (None, 1e-6, 0.01)

#: Proxy multipliers ``c``: each gives one demand point of a width's staircase.
PROXY_MULTIPLIERS = (1, 2, 3, 4, 5, 6, 8, 11, 16, 23, 32, 45, 64, 91, 128, 181, 256, 362, 512)
#: Staircases stop at this demand (bits); beyond it the last step is used (and noted).
MAX_DEMAND = 20.0
#: Widths whose staircase is compiled by default (compiling is cheap; measuring is not).
DEFAULT_WIDTHS = tuple(range(1, 10))
#: Parameter sets whose optimizer complexity per PBS exceeds this are not keyed and timed
#: by default (a 16384-polynomial level-3 key takes minutes and GBs to make on 2 cores);
#: their costs are scaled from the closest measured set by complexity and key size.
DEFAULT_MAX_MEASURED_COMPLEXITY = 1.8e9
#: PBS per timed run of the two proxies of a parameter set, and timed runs (median). Two sizes
#: separate what a run costs per PBS from what it costs once for the parameter set (measured
#: on 4 to 64 lookups: 11 ms for a 256-coefficient set, 60-110 ms at 2048-4096, 1.5 s at
#: 32768): one size alone overprices circuits with many PBS of one set (2x on a digits model
#: with 128 rounding PBS) and underprices those with few.
PROBE_SIZES, PROBE_RUNS = (8, 32), 3

CACHE_FORMAT = 2
MB = 1e6  # sizes are in decimal megabytes


# ---------------------------------------------------------------------------------------------
# The per-machine table of PBS costs
# ---------------------------------------------------------------------------------------------
@dataclass
class ParameterCost:
    """One crypto parameter set (as Concrete's optimizer picks them) and what it costs here."""

    polynomial_size: int
    glwe_dimension: int
    level: int
    base_log: int
    lwe_dimension: int
    #: Concrete's optimizer complexity of one keyswitch + PBS (machine independent).
    complexity: float
    #: Uncompressed key sizes of the lone proxy circuit (``circuit.statistics``), MB.
    bootstrap_key_mb: float
    keyswitch_key_mb: float
    #: Seconds each further PBS adds to a run, key generation seconds, and serialized
    #: (compressed, as Concrete ML makes them) evaluation keys in MB, of a proxy using this set.
    seconds: float | None = None
    keygen_s: float | None = None
    evaluation_key_mb: float | None = None
    #: Seconds a run spends once for having this set in the circuit, whatever its PBS count.
    fixed_seconds: float | None = None
    #: True when timed on this machine; False when scaled from a measured set (one of the
    #: same family differing only in n, else the closest in complexity).
    measured: bool = False

    @property
    def key(self) -> tuple[int, int, int, int, int]:
        return (self.polynomial_size, self.glwe_dimension, self.level, self.base_log, self.lwe_dimension)


@dataclass
class PBSCosts:
    """Staircases (per p_error and width) pointing into a list of measured parameter sets."""

    #: ``{p_error: {width: [(demand, parameter index), ...]}}``, demands ascending.
    staircases: dict[float, dict[int, list[tuple[float, int]]]]
    parameters: list[ParameterCost]
    #: Per-sample seconds outside the PBS (encrypt, decrypt, levelled ops, runtime).
    overhead_s: float
    #: Key generation seconds of a circuit without PBS (secret keys and runtime setup): every
    #: lone proxy's key generation includes it once, a circuit's too.
    keygen_base_s: float
    #: Where the table comes from: a cache file path or "fallback".
    source: str
    info: dict = field(default_factory=dict)

    def p_errors(self) -> list[float]:
        return sorted(self.staircases)

    def to_json(self) -> dict:
        return {
            "format": CACHE_FORMAT,
            "info": self.info,
            "overhead_s": self.overhead_s,
            "keygen_base_s": self.keygen_base_s,
            "parameters": [asdict(p) for p in self.parameters],
            "staircases": {
                repr(float(p)): {str(w): [list(step) for step in steps] for w, steps in widths.items()}
                for p, widths in self.staircases.items()
            },
        }

    @classmethod
    def from_json(cls, data: dict, source: str) -> "PBSCosts":
        if data.get("format") != CACHE_FORMAT:
            raise ValueError(
                f"the table has format {data.get('format')!r} and this version reads format {CACHE_FORMAT}: "
                "measure it again with fhe_estimators.cost.measure_pbs_costs()"
            )
        staircases = {
            float(p): {int(w): [(float(d), int(i)) for d, i in steps] for w, steps in widths.items()}
            for p, widths in data["staircases"].items()
        }
        parameters = [ParameterCost(**p) for p in data["parameters"]]
        return cls(
            staircases, parameters, float(data["overhead_s"]), float(data["keygen_base_s"]), source, dict(data.get("info", {}))
        )


def _environment() -> dict:
    return {
        "concrete_python": metadata.version("concrete-python"),
        "concrete_ml": metadata.version("concrete-ml"),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def cache_path() -> Path:
    """Where :func:`measure_pbs_costs` saves this machine's table.

    ``$XDG_CACHE_HOME/fhe_estimators/`` (else ``~/.cache/fhe_estimators/``), one file per
    concrete-python version and CPU count: a new Concrete or another machine size measures anew.
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    env = _environment()
    return Path(base) / "fhe_estimators" / f"pbs_costs-concrete-python-{env['concrete_python']}-cpus{env['cpus']}.json"


_loaded: dict[str, tuple[float, PBSCosts]] = {}  # path -> (modification time, table)


def load_pbs_costs(path: str | Path | None = None) -> PBSCosts:
    """This machine's measured table (from :func:`cache_path`), else :data:`FALLBACK_PATH`.

    Read once per process (again when the file changes); treat the result as read-only.
    """
    path = Path(path) if path is not None else cache_path()
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return fallback_costs()
    cached = _loaded.get(str(path))
    if cached is not None and cached[0] == mtime:
        return cached[1]
    try:
        costs = PBSCosts.from_json(json.loads(path.read_text()), str(path))
    except (ValueError, KeyError, TypeError) as error:
        warnings.warn(f"Ignoring the unreadable PBS cost table {path}: {error}", stacklevel=2)
        return fallback_costs()
    _loaded[str(path)] = (mtime, costs)
    return costs


def _proxy_circuit(width: int, multiplier: int, p_error: float, size: int):
    """A ``width``-bit table lookup whose output is multiplied by ``multiplier``, compiled
    with the options Concrete ML uses (multi-precision, compressed keys and inputs)."""
    from concrete import fhe

    modulus = 2**width

    @fhe.compiler({"x": "encrypted"})
    def proxy(x):
        return fhe.univariate(lambda v: (v * 5 + 3) % modulus)(x) * multiplier

    inputset = [np.zeros(size, dtype=np.int64), np.full(size, modulus - 1), np.arange(size) % modulus]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return proxy.compile(
            inputset,
            p_error=p_error,
            global_p_error=None,
            single_precision=False,
            compress_evaluation_keys=True,
            compress_input_ciphertexts=True,
        )


def proxy_demand(width: int, multiplier: int) -> float:
    """Demand of the proxy: its output's bits plus log2 of the noise amplification."""
    return int((2**width - 1) * multiplier).bit_length() + math.log2(multiplier)


def _parameter_of(circuit) -> tuple[tuple[int, ...], int]:
    """(N, k, level, base_log, n) of a one-partition circuit's PBS, and their count."""
    (param, count), *rest = circuit.statistics["programmable_bootstrap_count_per_parameter"].items()
    if rest:
        raise RuntimeError("A proxy circuit should have a single PBS parameter set.")
    key = (param.polynomial_size, param.glwe_dimension, param.level, param.base_log, param.input_lwe_dimension)
    return tuple(int(v() if callable(v) else v) for v in key), int(count)


def _run_seconds(circuit, width: int, size: int, runs: int) -> float:
    """Median seconds of ``circuit.run`` on ``size`` encrypted lookups (after a warm-up run,
    which decompresses the evaluation keys)."""
    encrypted = circuit.encrypt(np.random.default_rng(1).integers(0, 2**width, size))
    circuit.run(encrypted)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        circuit.run(encrypted)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _time_parameter(width: int, multiplier: int, p_error: float, runs: int) -> tuple[float, float, float, float]:
    """Key generation seconds, seconds per further PBS, fixed seconds per run, and serialized
    evaluation key MB of the proxies of one parameter set, from runs at both
    :data:`PROBE_SIZES`: ``run = fixed + size x per PBS``."""
    small, large = PROBE_SIZES
    circuit = _proxy_circuit(width, multiplier, p_error, large)
    start = time.perf_counter()
    circuit.keygen(force=True)
    keygen_s = time.perf_counter() - start
    evaluation_mb = len(circuit.keys.evaluation.serialize()) / MB
    large_s = _run_seconds(circuit, width, large, runs)
    key = _parameter_of(circuit)[0]
    del circuit
    circuit = _proxy_circuit(width, multiplier, p_error, small)
    if _parameter_of(circuit)[0] != key:  # never seen; without a pair, price every PBS alike
        return keygen_s, large_s / large, 0.0, evaluation_mb
    circuit.keygen(force=True)
    small_s = _run_seconds(circuit, width, small, runs)
    per_pbs = max((large_s - small_s) / (large - small), large_s / large / 2)  # timing noise must not zero it
    return keygen_s, per_pbs, max(0.0, large_s - large * per_pbs), evaluation_mb


def _overhead_seconds(runs: int = 5) -> tuple[float, float]:
    """A circuit with no PBS at all: its key generation, and encrypt + run + decrypt seconds."""
    from concrete import fhe

    @fhe.compiler({"x": "encrypted"})
    def levelled(x):
        return x * 3 + 1

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        circuit = levelled.compile([np.zeros(32, dtype=np.int64), np.full(32, 15)], compress_input_ciphertexts=True)
    start = time.perf_counter()
    circuit.keygen()
    keygen_s = time.perf_counter() - start
    sample = np.arange(32) % 16
    circuit.run(circuit.encrypt(sample))  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        circuit.decrypt(circuit.run(circuit.encrypt(sample)))
        times.append(time.perf_counter() - start)
    return keygen_s, statistics.median(times)


def measure_pbs_costs(
    widths: Iterable[int] = DEFAULT_WIDTHS,
    p_errors: Iterable[float | None] = MEASURED_P_ERRORS,
    *,
    max_measured_complexity: float = DEFAULT_MAX_MEASURED_COMPLEXITY,
    save: bool = True,
    path: str | Path | None = None,
    verbose: bool = False,
) -> PBSCosts:
    """Measure this machine's PBS costs and (with ``save``) cache them for :func:`load_pbs_costs`.

    For each ``p_error`` (None: Concrete ML's default 2^-40) and width, proxy circuits
    (a ``width``-bit lookup whose output is multiplied by each of :data:`PROXY_MULTIPLIERS`)
    are compiled to learn which parameter set Concrete picks at each demand: the width's
    staircase. Every distinct parameter set whose optimizer complexity is at most
    ``max_measured_complexity`` is then keyed and timed (seconds per PBS of a lone lookup,
    key generation seconds, serialized evaluation key size); larger ones are scaled from the
    closest measured set (by complexity for time, by key size for keys) and marked
    ``measured=False``. Takes minutes (the default: 7-10 on the 2-core development machine).
    Timings follow the machine's load: measure when it is as busy as when circuits will run.
    """
    log = print if verbose else (lambda *args, **kwargs: None)
    widths = sorted({int(w) for w in widths})
    staircases: dict[float, dict[int, list[tuple[float, int]]]] = {}
    parameters: list[ParameterCost] = []
    index_of: dict[tuple, int] = {}
    example: dict[int, tuple[int, int, float]] = {}  # parameter index -> (width, multiplier, p_error)
    for p_error in p_errors:
        p = CONCRETE_P_ERROR if p_error is None else float(p_error)
        staircases[p] = {}
        for width in widths:
            steps = []
            for multiplier in PROXY_MULTIPLIERS:
                demand = proxy_demand(width, multiplier)
                if demand > MAX_DEMAND:
                    break
                try:
                    circuit = _proxy_circuit(width, multiplier, p, 8)
                except Exception:  # noqa: BLE001  (no parameters for this demand: the staircase ends)
                    break
                key, count = _parameter_of(circuit)
                if key not in index_of:
                    stats = circuit.statistics
                    index_of[key] = len(parameters)
                    example[len(parameters)] = (width, multiplier, p)
                    parameters.append(
                        ParameterCost(
                            *key,
                            complexity=float(stats["complexity"]) / count,
                            bootstrap_key_mb=float(stats["size_of_bootstrap_keys"]) / MB,
                            keyswitch_key_mb=float(stats["size_of_keyswitch_keys"]) / MB,
                        )
                    )
                steps.append((round(demand, 3), index_of[key]))
            staircases[p][width] = steps
            log(f"p_error={p:.3g} width {width}: {[(d, parameters[i].key[:4]) for d, i in steps]}")

    # Time one member per family (N, k, level, base_log); its siblings differ only in the LWE
    # dimension n, which a PBS's time and keys scale with.
    families: dict[tuple, list[int]] = {}
    for index, parameter in enumerate(parameters):
        families.setdefault(parameter.key[:4], []).append(index)
    for members in sorted(families.values(), key=lambda m: min(parameters[i].complexity for i in m)):
        representative = parameters[members[0]]
        if representative.complexity > max_measured_complexity:
            continue
        width, multiplier, p = example[members[0]]
        (
            representative.keygen_s,
            representative.seconds,
            representative.fixed_seconds,
            representative.evaluation_key_mb,
        ) = _time_parameter(width, multiplier, p, PROBE_RUNS)
        representative.measured = True
        log(f"{representative.key}: {representative.seconds * 1000:.1f} ms/PBS + {representative.fixed_seconds * 1000:.0f} ms "
            f"per run, keygen {representative.keygen_s:.1f} s, keys {representative.evaluation_key_mb:.1f} MB")
        for index in members[1:]:
            _scale_from(parameters[index], representative)
    _fill_unmeasured(parameters)
    info = {**_environment(), "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "widths": widths, "probe_sizes": list(PROBE_SIZES), "probe_runs": PROBE_RUNS}
    target = Path(path) if path is not None else cache_path()
    keygen_base_s, overhead_s = _overhead_seconds()
    costs = PBSCosts(staircases, parameters, overhead_s, keygen_base_s, str(target) if save else "measured (not saved)", info)
    if save:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_suffix(".tmp")
        temporary.write_text(json.dumps(costs.to_json(), indent=1))
        temporary.replace(target)
    return costs


def _scale_from(parameter: ParameterCost, reference: ParameterCost) -> None:
    """Costs of ``parameter`` from a measured ``reference``: time by optimizer complexity,
    key generation by uncompressed key size, evaluation keys by compressed key size."""
    keys = (parameter.bootstrap_key_mb + parameter.keyswitch_key_mb) / (reference.bootstrap_key_mb + reference.keyswitch_key_mb)
    parameter.seconds = reference.seconds * parameter.complexity / reference.complexity
    parameter.fixed_seconds = reference.fixed_seconds * parameter.complexity / reference.complexity
    parameter.keygen_s = reference.keygen_s * keys
    parameter.evaluation_key_mb = reference.evaluation_key_mb * _compressed_key_bytes(parameter) / _compressed_key_bytes(reference)


def _compressed_key_bytes(parameter: ParameterCost) -> float:
    """Bootstrap key as Concrete serializes it compressed (one body polynomial per GLWE row
    and a seed): n (k+1) N level 8 bytes; matches the measured sizes within 1%."""
    return parameter.lwe_dimension * (parameter.glwe_dimension + 1) * parameter.polynomial_size * parameter.level * 8.0


def _fill_unmeasured(parameters: Sequence[ParameterCost]) -> None:
    """Scale each set left unmeasured from the measured one closest in complexity (log scale)."""
    measured = [p for p in parameters if p.measured]
    if not measured:
        raise ValueError("No parameter set was measured: raise max_measured_complexity.")
    for parameter in parameters:
        if parameter.seconds is None:
            _scale_from(parameter, min(measured, key=lambda m: abs(math.log(parameter.complexity / m.complexity))))


#: The table used until this machine measures its own: measured on the development machine
#: (2 CPUs, x86_64) by ``benchmarks/measure_pbs_costs.py``, which rewrites it. Another
#: machine or load can be several times faster or slower: measure_pbs_costs() there.
FALLBACK_PATH = Path(__file__).with_name("pbs_costs_fallback.json")


@functools.lru_cache(maxsize=1)
def fallback_costs() -> PBSCosts:
    """The table of :data:`FALLBACK_PATH` (read-only, shared); ``source`` says "fallback"."""
    return PBSCosts.from_json(json.loads(FALLBACK_PATH.read_text()), "fallback")
