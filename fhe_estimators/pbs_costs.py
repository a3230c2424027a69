"""Per-machine table of what one PBS costs, for the cost model (:mod:`fhe_estimators.cost`).

:func:`measure_pbs_costs` compiles lone table lookups (and "proxy" circuits whose outputs
are scaled, to learn which crypto parameters Concrete picks for a given noise demand),
times them on this machine, and caches the table in the user's cache directory
(:func:`cache_path`). :func:`load_pbs_costs` returns that table, or :data:`FALLBACK_COSTS`
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



DEFAULT_P_ERROR = 2.0**-40

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
#: PBS per timed run of a proxy, and timed runs (median).
PROBE_SIZE, PROBE_RUNS = 16, 3

CACHE_FORMAT = 1
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
    #: Seconds per PBS, key generation seconds, and serialized (compressed, as Concrete ML
    #: makes them) evaluation keys in MB, of a lone proxy circuit using this set.
    seconds: float | None = None
    keygen_s: float | None = None
    evaluation_key_mb: float | None = None
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
            raise ValueError(f"Unsupported PBS cost table format {data.get('format')!r}.")
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
    """This machine's measured table (from :func:`cache_path`), else :data:`FALLBACK_COSTS`.

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


def _time_parameter(circuit, width: int, size: int, runs: int) -> tuple[float, float, float]:
    """Key generation seconds, seconds per PBS and serialized evaluation key MB of a proxy."""
    start = time.perf_counter()
    circuit.keygen(force=True)
    keygen_s = time.perf_counter() - start
    evaluation_mb = len(circuit.keys.evaluation.serialize()) / MB
    encrypted = circuit.encrypt(np.random.default_rng(1).integers(0, 2**width, size))
    circuit.run(encrypted)  # warm-up: the first run decompresses the evaluation keys
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        circuit.run(encrypted)
        times.append(time.perf_counter() - start)
    return keygen_s, statistics.median(times) / size, evaluation_mb


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
    p_errors: Iterable[float | None] = (None,),
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
        p = DEFAULT_P_ERROR if p_error is None else float(p_error)
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
        circuit = _proxy_circuit(width, multiplier, p, PROBE_SIZE)
        representative.keygen_s, representative.seconds, representative.evaluation_key_mb = _time_parameter(
            circuit, width, PROBE_SIZE, PROBE_RUNS
        )
        representative.measured = True
        del circuit
        log(f"{representative.key}: {representative.seconds * 1000:.1f} ms/PBS, keygen {representative.keygen_s:.1f} s, "
            f"keys {representative.evaluation_key_mb:.1f} MB")
        for index in members[1:]:
            _scale_from(parameters[index], representative)
    _fill_unmeasured(parameters)
    info = {**_environment(), "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "widths": widths, "probe_size": PROBE_SIZE, "probe_runs": PROBE_RUNS}
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


# ---------------------------------------------------------------------------------------------
# Fallback table (measured on the development machine; replaced by measure_pbs_costs())
# ---------------------------------------------------------------------------------------------
#: Measured with ``measure_pbs_costs(p_errors=(None, 0.01))`` on the development machine
#: (2 CPUs, x86_64, shared with other jobs; load 0.3-1.6 while measured), 2026-11-22,
#: concrete-python 2.10.0: used until this machine measures its own (a
#: different machine or load can be several times faster or slower).
FALLBACK_COSTS: dict = {
    "format": 1,
    "info": {"concrete_python": "2.10.0", "concrete_ml": "1.9.0", "cpus": 2, "processor": "x86_64", "measured_at": "2026-11-22T21:10:36+00:00", "widths": [1, 2, 3, 4, 5, 6, 7, 8, 9], "probe_size": 16, "probe_runs": 3},
    "overhead_s": 0.007173,
    "keygen_base_s": 8.082e-05,
    # polynomial_size, glwe_dimension, level, base_log, lwe_dimension, complexity, bootstrap_key_mb, keyswitch_key_mb, seconds, keygen_s, evaluation_key_mb, measured
    "parameter_rows": [
        (256, 5, 1, 15, 698, 2.931e+07, 257.3, 14.32, 0.01068, 0.6401, 8.598, True),
        (256, 6, 1, 18, 706, 3.597e+07, 425.1, 17.38, 0.01136, 0.7716, 10.15, True),
        (256, 6, 1, 18, 636, 3.633e+07, 382.9, 31.31, 0.01147, 0.7224, 9.14, False),
        (256, 5, 2, 10, 608, 4.422e+07, 448.3, 31.18, 0.01415, 1.061, 14.99, True),
        (512, 4, 1, 23, 703, 5.076e+07, 287.9, 23.07, 0.01361, 0.992, 14.43, True),
        (256, 6, 2, 12, 615, 5.465e+07, 740.6, 37.85, 0.01997, 1.312, 17.7, True),
        (256, 6, 3, 9, 615, 7.229e+07, 1111, 37.85, 0.028, 2.022, 26.51, True),
        (512, 4, 2, 16, 614, 7.548e+07, 503, 50.38, 0.01893, 1.852, 25.23, True),
        (512, 4, 3, 12, 614, 9.906e+07, 754.5, 50.38, 0.02911, 2.54, 37.81, True),
        (512, 3, 1, 18, 709, 4.14e+07, 139.4, 26.17, 0.008785, 0.754, 11.65, True),
        (512, 4, 1, 23, 718, 5.479e+07, 294.1, 35.34, 0.01469, 1.051, 14.74, False),
        (512, 3, 3, 9, 678, 8.055e+07, 399.9, 33.37, 0.02215, 1.695, 33.37, True),
        (512, 4, 2, 16, 687, 8.163e+07, 562.8, 45.09, 0.02047, 2.034, 28.23, False),
        (512, 4, 2, 16, 650, 9.858e+07, 532.5, 128, 0.02472, 2.21, 26.71, False),
        (512, 4, 3, 12, 687, 1.08e+08, 844.2, 45.09, 0.03174, 2.807, 42.3, False),
        (1024, 2, 1, 23, 771, 6.87e+07, 113.7, 37.95, 0.01222, 0.945, 19, True),
        (1024, 2, 2, 15, 740, 1.008e+08, 218.2, 48.56, 0.01851, 1.851, 36.44, True),
        (1024, 2, 3, 12, 740, 1.326e+08, 327.4, 48.56, 0.02524, 2.498, 54.62, True),
        (2048, 1, 1, 23, 771, 9.793e+07, 50.53, 63.24, 0.01168, 1.237, 25.35, True),
        (2048, 1, 2, 15, 771, 1.421e+08, 101.1, 63.24, 0.01716, 2.14, 50.61, True),
        (2048, 1, 3, 11, 771, 1.864e+08, 151.6, 63.24, 0.02749, 2.716, 75.87, True),
        (4096, 1, 1, 22, 864, 2.265e+08, 113.2, 113.4, 0.02849, 2.843, 56.75, True),
        (4096, 1, 2, 15, 838, 3.296e+08, 219.7, 137.5, 0.03748, 4.839, 110, True),
        (4096, 1, 3, 11, 838, 4.325e+08, 329.5, 137.5, 0.05204, 6.793, 164.9, True),
        (8192, 1, 1, 22, 944, 5.26e+08, 247.5, 247.7, 0.06035, 6.925, 124, True),
        (8192, 1, 2, 15, 896, 7.635e+08, 469.8, 352.7, 0.09677, 13.21, 235.3, True),
        (8192, 1, 3, 11, 896, 9.984e+08, 704.6, 352.7, 0.1282, 17.41, 352.7, True),
        (8192, 1, 4, 9, 896, 1.233e+09, 939.5, 352.7, 0.2875, 23.83, 470.2, True),
        (16384, 1, 1, 22, 990, 1.201e+09, 519, 649.5, 0.1413, 19.06, 260.2, True),
        (16384, 1, 2, 15, 964, 1.738e+09, 1011, 758.9, 0.1809, 44.49, 506.2, True),
        (16384, 1, 3, 11, 964, 2.275e+09, 1516, 758.9, 0.2368, 57.19, 759.3, False),
        (16384, 1, 4, 9, 964, 2.812e+09, 2022, 758.9, 0.2927, 69.9, 1012, False),
        (32768, 1, 2, 15, 1054, 3.938e+09, 2210, 1383, 0.41, 90.33, 1107, False),
        (32768, 1, 3, 11, 1021, 5.153e+09, 3212, 1875, 0.5365, 127.9, 1608, False),
        (32768, 1, 4, 9, 1021, 6.357e+09, 4282, 1875, 0.6619, 154.8, 2145, False),
        (32768, 1, 5, 7, 1021, 7.562e+09, 5353, 1875, 0.7873, 181.7, 2681, False),
        (65536, 1, 2, 14, 1091, 8.867e+09, 4576, 4008, 0.9232, 215.8, 2292, False),
        (65536, 1, 3, 11, 1091, 1.158e+10, 6864, 4008, 1.206, 273.3, 3437, False),
        (65536, 1, 4, 9, 1091, 1.43e+10, 9152, 4008, 1.489, 330.8, 4583, False),
        (65536, 1, 5, 7, 1091, 1.702e+10, 1.144e+04, 4008, 1.772, 388.3, 5729, False),
        (256, 5, 1, 15, 558, 2.487e+07, 205.7, 17.17, 0.009063, 0.5252, 6.873, False),
        (256, 6, 1, 18, 563, 3.042e+07, 339, 20.79, 0.009605, 0.6274, 8.091, False),
        (256, 5, 2, 10, 558, 3.772e+07, 411.4, 17.17, 0.01207, 0.9485, 13.76, False),
        (512, 4, 1, 23, 572, 4.365e+07, 234.3, 28.16, 0.01171, 0.8371, 11.74, False),
        (256, 6, 3, 9, 563, 6.271e+07, 1017, 20.79, 0.02429, 1.826, 24.27, False),
        (512, 4, 2, 16, 572, 6.562e+07, 468.6, 28.16, 0.01646, 1.663, 23.51, False),
        (256, 5, 1, 15, 613, 2.732e+07, 226, 18.86, 0.009956, 0.577, 7.551, False),
        (256, 6, 1, 18, 623, 3.367e+07, 375.1, 23, 0.01063, 0.6942, 8.953, False),
        (256, 5, 2, 10, 613, 4.144e+07, 452, 18.86, 0.01326, 1.042, 15.12, False),
        (512, 4, 1, 23, 632, 4.823e+07, 258.9, 31.11, 0.01293, 0.9249, 12.97, False),
        (256, 6, 3, 9, 584, 6.864e+07, 1055, 35.94, 0.02659, 1.92, 25.18, False),
        (512, 4, 2, 16, 632, 7.25e+07, 517.7, 31.11, 0.01818, 1.837, 25.97, False),
        (512, 4, 3, 12, 590, 9.519e+07, 725, 48.41, 0.02797, 2.441, 36.33, False),
        (256, 5, 1, 15, 715, 3.186e+07, 263.6, 22, 0.01161, 0.673, 8.807, False),
        (256, 6, 1, 18, 721, 3.896e+07, 434.1, 26.62, 0.0123, 0.8034, 10.36, False),
        (256, 5, 2, 10, 680, 4.771e+07, 501.4, 27.89, 0.01527, 1.171, 16.77, False),
        (512, 4, 1, 23, 690, 5.266e+07, 282.6, 33.96, 0.01412, 1.01, 14.16, False),
        (512, 3, 3, 9, 651, 7.735e+07, 384, 32.05, 0.02127, 1.628, 32.05, False),
        (512, 4, 2, 16, 660, 7.842e+07, 540.7, 43.32, 0.01967, 1.955, 27.12, False),
        (512, 3, 1, 18, 755, 4.64e+07, 148.4, 37.16, 0.009848, 0.8452, 12.41, False),
        (512, 4, 1, 23, 824, 6.288e+07, 337.5, 40.55, 0.01686, 1.206, 16.91, False),
        (512, 3, 2, 12, 755, 6.805e+07, 296.9, 37.16, 0.01307, 1.406, 24.79, True),
        (512, 3, 3, 9, 735, 8.959e+07, 433.5, 45.22, 0.02463, 1.873, 36.18, False),
        (512, 4, 2, 16, 745, 9.158e+07, 610.3, 61.11, 0.02296, 2.247, 30.62, False),
        (512, 4, 3, 12, 745, 1.202e+08, 915.5, 61.11, 0.03532, 3.082, 45.87, False),
        (1024, 2, 1, 23, 794, 7.727e+07, 117.1, 65.13, 0.01374, 1.136, 19.56, False),
        (1024, 2, 2, 15, 794, 1.114e+08, 234.2, 65.13, 0.02046, 2.076, 39.1, False),
        (1024, 2, 3, 12, 794, 1.456e+08, 351.2, 65.13, 0.02771, 2.767, 58.61, False),
        (2048, 1, 1, 23, 854, 1.12e+08, 55.97, 84.05, 0.01336, 1.522, 28.08, False),
        (2048, 1, 2, 15, 815, 1.603e+08, 106.8, 107, 0.01935, 2.784, 53.5, False),
        (2048, 1, 3, 11, 815, 2.07e+08, 160.2, 107, 0.03054, 3.378, 80.2, False),
        (8192, 1, 1, 22, 899, 5.009e+08, 235.7, 235.9, 0.05747, 6.596, 118.1, False),
        (8192, 1, 2, 15, 899, 7.366e+08, 471.3, 235.9, 0.09336, 11.36, 236.1, False),
        (8192, 1, 3, 11, 867, 9.661e+08, 681.8, 341.3, 0.124, 16.84, 341.3, False),
        (16384, 1, 1, 22, 928, 1.156e+09, 486.5, 730.6, 0.1361, 19.85, 243.9, False),
        (16384, 1, 2, 15, 928, 1.673e+09, 973.1, 730.6, 0.1742, 42.83, 487.3, False),
        (16384, 1, 3, 11, 928, 2.19e+09, 1460, 730.6, 0.228, 55.06, 730.9, False),
        (16384, 1, 4, 9, 928, 2.707e+09, 1946, 730.6, 0.2818, 67.29, 974.6, False),
        (32768, 1, 2, 15, 1019, 3.807e+09, 2137, 1337, 0.3963, 87.33, 1070, False),
        (32768, 1, 3, 11, 989, 4.991e+09, 3111, 1817, 0.5197, 123.9, 1558, False),
        (32768, 1, 4, 9, 989, 6.158e+09, 4148, 1817, 0.6411, 149.9, 2077, False),
    ],
    # {p_error: {width: [(demand, parameter row), ...]}}
    "staircases": {
        "9.094947017729282e-13": {
            "1": [(1, 0), (3, 1), (3.585, 1), (5, 1), (5.322, 2), (5.585, 3), (7, 4), (7.459, 4), (9, 4), (9.524, 4), (11, 5), (11.49, 6), (13, 6), (13.51, 6), (15, 7), (15.5, 7), (17, 7), (17.5, 7), (19, 8)],
            "2": [(2, 9), (4, 9), (5.585, 10), (6, 10), (6.322, 10), (7.585, 10), (8, 10), (9.459, 10), (10, 10), (11.52, 11), (12, 11), (13.49, 11), (14, 12), (15.51, 12), (16, 12), (17.5, 12), (18, 13), (19.5, 14), (20, 14)],
            "3": [(3, 15), (5, 15), (6.585, 15), (7, 15), (8.322, 15), (8.585, 15), (9, 15), (10.46, 16), (11, 16), (12.52, 16), (13, 16), (14.49, 16), (15, 16), (16.51, 16), (17, 16), (18.5, 17), (19, 17)],
            "4": [(4, 18), (6, 18), (7.585, 18), (8, 18), (9.322, 18), (9.585, 18), (10, 19), (11.46, 19), (12, 19), (13.52, 19), (14, 19), (15.49, 19), (16, 19), (17.51, 20), (18, 20), (19.5, 20), (20, 20)],
            "5": [(5, 21), (7, 21), (8.585, 21), (9, 22), (10.32, 22), (10.59, 22), (11, 22), (12.46, 22), (13, 22), (14.52, 22), (15, 22), (16.49, 23), (17, 23), (18.51, 23), (19, 23)],
            "6": [(6, 24), (8, 24), (9.585, 25), (10, 25), (11.32, 25), (11.59, 25), (12, 25), (13.46, 25), (14, 25), (15.52, 26), (16, 26), (17.49, 26), (18, 26), (19.51, 27), (20, 27)],
            "7": [(7, 28), (9, 29), (10.59, 29), (11, 29), (12.32, 29), (12.59, 29), (13, 29), (14.46, 30), (15, 30), (16.52, 30), (17, 30), (18.49, 31), (19, 31)],
            "8": [(8, 32), (10, 32), (11.59, 32), (12, 32), (13.32, 32), (13.59, 33), (14, 33), (15.46, 33), (16, 33), (17.52, 34), (18, 34), (19.49, 35), (20, 35)],
            "9": [(9, 36), (11, 36), (12.59, 36), (13, 37), (14.32, 37), (14.59, 37), (15, 37), (16.46, 38), (17, 38), (18.52, 39), (19, 39)],
        },
        "0.01": {
            "1": [(1, 40), (3, 40), (3.585, 40), (5, 41), (5.322, 41), (5.585, 41), (7, 42), (7.459, 42), (9, 43), (9.524, 43), (11, 43), (11.49, 43), (13, 44), (13.51, 44), (15, 44), (15.5, 45), (17, 45), (17.5, 45), (19, 45)],
            "2": [(2, 46), (4, 47), (5.585, 47), (6, 47), (6.322, 47), (7.585, 48), (8, 48), (9.459, 49), (10, 49), (11.52, 49), (12, 49), (13.49, 50), (14, 50), (15.51, 51), (16, 51), (17.5, 51), (18, 51), (19.5, 51), (20, 52)],
            "3": [(3, 53), (5, 54), (6.585, 54), (7, 55), (8.322, 56), (8.585, 56), (9, 56), (10.46, 56), (11, 56), (12.52, 57), (13, 57), (14.49, 57), (15, 57), (16.51, 58), (17, 58), (18.5, 58), (19, 58)],
            "4": [(4, 59), (6, 59), (7.585, 60), (8, 60), (9.322, 60), (9.585, 60), (10, 60), (11.46, 60), (12, 61), (13.52, 62), (14, 62), (15.49, 63), (16, 63), (17.51, 63), (18, 63), (19.5, 64), (20, 64)],
            "5": [(5, 65), (7, 65), (8.585, 65), (9, 65), (10.32, 65), (10.59, 65), (11, 65), (12.46, 66), (13, 66), (14.52, 66), (15, 66), (16.49, 66), (17, 66), (18.51, 66), (19, 67)],
            "6": [(6, 68), (8, 68), (9.585, 68), (10, 68), (11.32, 69), (11.59, 69), (12, 69), (13.46, 69), (14, 69), (15.52, 69), (16, 69), (17.49, 69), (18, 69), (19.51, 70), (20, 70)],
            "7": [(7, 71), (9, 71), (10.59, 72), (11, 72), (12.32, 72), (12.59, 72), (13, 72), (14.46, 72), (15, 72), (16.52, 72), (17, 73), (18.49, 73), (19, 73)],
            "8": [(8, 74), (10, 75), (11.59, 75), (12, 75), (13.32, 75), (13.59, 75), (14, 75), (15.46, 75), (16, 76), (17.52, 76), (18, 76), (19.49, 76), (20, 77)],
            "9": [(9, 78), (11, 78), (12.59, 78), (13, 78), (14.32, 78), (14.59, 78), (15, 79), (16.46, 79), (17, 79), (18.52, 79), (19, 80)],
        },
    },
}
_PARAMETER_FIELDS = ("polynomial_size", "glwe_dimension", "level", "base_log", "lwe_dimension", "complexity", "bootstrap_key_mb", "keyswitch_key_mb", "seconds", "keygen_s", "evaluation_key_mb", "measured")



@functools.lru_cache(maxsize=1)
def fallback_costs() -> PBSCosts:
    """:data:`FALLBACK_COSTS` as a table (read-only, shared); ``source`` says "fallback"."""
    data = {key: value for key, value in FALLBACK_COSTS.items() if key != "parameter_rows"}
    data["parameters"] = [dict(zip(_PARAMETER_FIELDS, row)) for row in FALLBACK_COSTS["parameter_rows"]]
    return PBSCosts.from_json(data, "fallback")
