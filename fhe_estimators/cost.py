"""FHE cost model: what a fitted network's Concrete circuit will cost, before compiling it.

:func:`estimate_cost` reads a fitted estimator (or a bare :class:`~fhe_estimators.module.QuantMLP`)
and predicts, in milliseconds and without compiling:

* the number of programmable bootstrappings (PBS) per table-lookup bit-width, exactly
  (the law below is read off Concrete ML's and Concrete's sources and checked against
  compiled circuits in ``tests/test_cost.py``);
* the crypto parameter set of each PBS, by mimicking how Concrete's optimizer partitions
  a circuit (see "Which parameters" below; an approximation);
* from those, the encrypted latency per sample, the key generation time and the size of
  the evaluation keys, using a per-machine table of measured PBS costs
  (:func:`measure_pbs_costs`, cached; :data:`FALLBACK_PATH` until then).

PBS count law (Concrete ML 1.9.0, concrete-python 2.10.0). Only hidden layers cost PBS:
the model input is quantized in the clear and the output Gemm returns its integer
accumulator (``QuantizedGemm.q_impl`` returns before rounding when
``produces_graph_output``). A hidden neuron's accumulator goes through
``cnp_round`` (``fhe.round_bit_pattern(lsbs_to_remove=r, overflow_protection=False)``)
and then one table lookup (bias, ReLU and the next quantizer fused into one TLU)::

    PBS = Σ_hidden layers  n_neurons × (1 + r)     exact rounding (the default)
    PBS = Σ_hidden layers  n_neurons               approximate rounding

because exact rounding is lowered by ``RoundEintOpPattern`` (FHEToTFHEScalar.cpp) into one
bit-isolating PBS per removed bit, while approximate rounding without overflow protection is
a mere reinterpretation (``Context.round_bit_pattern``). ``r`` is, per hidden layer:

* ``rounding_threshold_bits=None``: Concrete ML's power-of-two pass
  (``PowerOfTwoScalingRoundPBSAdapter``): ``r = log2(s_out / (s_in · s_w))`` when > 0;
* ``rounding_threshold_bits=n`` (or ``{"n_bits": n, ...}``): ``r = max(0, b - n)`` where ``b``
  is the width of that layer's accumulator over the calibration set
  (``BaseQuantizedOp.cnp_round``), which this module reproduces in numpy.

The TLU then reads ``a - r`` bits, where ``a`` is the accumulator width in the circuit:
:func:`fhe_estimators.compilation.compile_module` hints every accumulator to its exact worst case
(plus the rounding's headroom), which is always at least the calibrated width, so
``a = signed_bit_width(low, high + 2^(r-1))`` of the estimator's ``accumulator_ranges_``.

Which parameters. Concrete's optimizer puts all PBS whose input has the same precision in
one partition with one parameter set (the bit-isolating PBS of exact rounding are 1-bit
lookups: one more partition). A partition's polynomial size follows the precision it reads;
its decomposition level grows with how much noise its *outputs* may carry: a TLU output
is summed by the next layer's weights (noise × ``M = max_row ‖w‖₂``) and must then be
read at that layer's precision. This module gives each partition a *demand*
``D ≈ precision read downstream + log2 M`` and looks up, for the partition's width, the
parameter set that Concrete chooses for a proxy circuit "w-bit lookup, output × c" whose
demand is the smallest at least ``D`` (its output has ``p`` bits and noise × ``c``:
``D = p + log2 c``). The table of those proxies (a "staircase" per width) is built once
per machine with the PBS timings. On 160 compiled circuits (1-2 hidden layers, 2-4 bit
weights, 7-12 bit budgets, rounding None / 4 / 6 / 6-approximate) the rule picked the
TLU parameter sets of 154 (the rounding ones, cheap either way, of 136); see
``docs/cost_model.md`` for the measured accuracy of counts, latency and keys.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from .circuit_plan import LayerPlan, concrete_bits, parse_rounding, plan_circuit  # noqa: F401  (importable from here)
from .pbs_costs import (  # noqa: F401  (the calibration API, importable from here too)
    CONCRETE_P_ERROR,
    FALLBACK_PATH,
    MB,
    ParameterCost,
    PBSCosts,
    cache_path,
    fallback_costs,
    load_pbs_costs,
    measure_pbs_costs,
)

# Demand rule, calibrated on 160 compiled circuits (see the module docstring).
#: Downstream is the next layer's exact rounding (bit isolation at the accumulator's width).
ROUNDING_CONSUMER_MARGIN = -0.5
#: Downstream is the next layer's TLU directly (no rounding PBS in between): it also
#: absorbs the keyswitch and modulus-switch noise of the reading PBS.
TLU_CONSUMER_MARGIN = 0.5
#: Downstream is the circuit output (the output layer's accumulator, decrypted).
OUTPUT_MARGIN = -0.5
#: Above this demand the proxy is stricter than real circuits; the excess counts this much less.
DEMAND_KNEE, DEMAND_SLOPE = 11.0, 0.2
#: The bit-isolating PBS of exact rounding: demand = accumulator width + this.
ROUNDING_PARTITION_MARGIN = -1.5


# ---------------------------------------------------------------------------------------------
# From the plan to partitions, parameter sets and costs
# ---------------------------------------------------------------------------------------------
@dataclass
class PBSGroup:
    """PBS of one kind in one layer: the hidden neurons' TLUs, or their rounding bits."""

    layer: int
    kind: str  # "tlu" or "rounding"
    count: int
    width: int  # bits the lookup reads (1 for the bit-isolating PBS of exact rounding)
    partition: str  # "w<width>" for TLUs, "rounding" for rounding bits
    seconds_per_pbs: float = 0.0


@dataclass
class Partition:
    """A set of PBS Concrete gives one crypto parameter set, as predicted."""

    name: str
    width: int
    count: int
    demand: float
    parameters: tuple[int, int, int, int, int]  # (N, k, level, base_log, n) of the proxy chosen
    seconds_per_pbs: float
    keygen_s: float
    evaluation_key_mb: float
    measured: bool
    #: Seconds a run spends once for this parameter set (see ``ParameterCost.fixed_seconds``).
    fixed_seconds: float = 0.0


@dataclass
class FHECost:
    """Predicted cost of a model's Concrete circuit (see :func:`estimate_cost`)."""

    #: PBS per bit-width of the lookup as the circuit runs it: each TLU at the bits it reads
    #: (accumulator bits minus rounded lsbs), the PBS of exact rounding as 1-bit lookups.
    pbs_by_width: dict[int, int]
    pbs_count: int
    #: Widest encrypted integer of the circuit (``circuit.graph.maximum_integer_bit_width()``).
    max_bit_width: int
    #: Encrypt + run + decrypt of one sample, seconds.
    latency_s: float
    #: Key generation, seconds: one base (secret keys) plus each predicted parameter set's keys.
    keygen_s: float
    #: Serialized (compressed) evaluation keys, MB: the sum over the predicted parameter sets.
    evaluation_key_mb: float
    #: PBS cost table used: its cache file, or "fallback" (constants in this module).
    source: str
    accumulator_bits: list[int] = field(default_factory=list)
    lsbs_removed: list[int] = field(default_factory=list)
    rounding_threshold_bits: Any = None
    p_error: float = CONCRETE_P_ERROR
    groups: list[PBSGroup] = field(default_factory=list)
    partitions: list[Partition] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _demand_after(plan: Sequence[LayerPlan], index: int, exact: bool) -> float:
    """How little noise layer ``index``'s TLU outputs may carry, in bits (see module doc)."""
    consumer = plan[index + 1]
    gain = math.log2(max(consumer.noise_gain, 1.0))
    if not consumer.hidden:
        demand = consumer.accumulator_bits + gain + OUTPUT_MARGIN
    elif exact and consumer.lsbs_removed > 0:
        demand = consumer.accumulator_bits + gain + ROUNDING_CONSUMER_MARGIN
    else:
        demand = consumer.tlu_bits + gain + TLU_CONSUMER_MARGIN
    return demand - DEMAND_SLOPE * max(0.0, demand - DEMAND_KNEE)


def _table_for(costs: PBSCosts, p_error: float, notes: list[str]) -> dict[int, list[tuple[float, int]]]:
    if p_error in costs.staircases:
        return costs.staircases[p_error]
    available = costs.p_errors()
    safer = [p for p in available if p <= p_error]  # a smaller p_error is dearer: an upper bound
    chosen = max(safer) if safer else min(available)
    notes.append(f"p_error {p_error:.3g} not in the PBS cost table; used its {chosen:.3g} (measure_pbs_costs(p_errors=...) adds it)")
    return costs.staircases[chosen]


def _lookup(costs: PBSCosts, table, width: int, demand: float, notes: list[str]) -> tuple[ParameterCost, float]:
    """The parameter set of a ``width``-bit partition with this demand, and a time factor
    (1 unless the width is beyond the table)."""
    factor = 1.0
    if width not in table:
        widest = max(table)
        if width < min(table):
            width = min(table)
        else:
            # Each bit beyond the table about doubles a PBS (measured 2.2-2.3× at 7-9 bits).
            factor = 2.25 ** (width - widest)
            notes.append(f"{width}-bit lookups are beyond the PBS cost table (max {widest}); extrapolated ×{factor:.1f}")
            width = widest
    steps = table[width]
    for step_demand, index in steps:
        if step_demand >= demand - 1e-9:
            return costs.parameters[index], factor
    notes.append(f"demand {demand:.1f} bits beyond the {width}-bit staircase (max {steps[-1][0]:.1f}); its last step used")
    return costs.parameters[steps[-1][1]], factor


def _model_parts(model_or_module):
    """(module, accumulator ranges, calibration data, rounding, p_error) of an estimator or module."""
    if hasattr(model_or_module, "module_"):
        model = model_or_module
        if hasattr(model, "__sklearn_is_fitted__") and not model.__sklearn_is_fitted__():
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(f"This {type(model).__name__} instance is not fitted yet; estimate_cost needs a fitted model.")
        module = model.module_
        calibration = getattr(model, "calibration_X_", None)
        if calibration is not None:
            calibration = np.concatenate([calibration, module.extreme_inputs()])  # as compile() does
        rounding = getattr(model, "rounding_threshold_bits_", getattr(model, "rounding_threshold_bits", None))
        return module, getattr(model, "accumulator_ranges_", None), calibration, rounding, getattr(model, "p_error", None)
    if hasattr(model_or_module, "integer_layers"):
        return model_or_module, None, None, None, None
    raise TypeError(f"estimate_cost needs a fitted estimator or a QuantMLP, got {type(model_or_module).__name__}.")


_UNSET = object()


def estimate_cost(
    model_or_module,
    *,
    rounding_threshold_bits=_UNSET,
    p_error=_UNSET,
    costs: PBSCosts | None = None,
    X: np.ndarray | None = None,
) -> FHECost:
    """Predict what compiling ``model_or_module`` will give, without compiling (milliseconds).

    ``model_or_module``: a fitted estimator (its ``module_``, ``accumulator_ranges_``,
    ``calibration_X_``, rounding and ``p_error``), or a bare ``QuantMLP`` (worst-case
    accumulators, no calibration data). ``rounding_threshold_bits`` (None, an int, or
    ``{"n_bits": n, "method": "exact" | "approximate"}``) and ``p_error`` override the
    model's. ``X`` replaces the calibration data (as ``compile(X)`` would). ``costs``: a
    :class:`PBSCosts` table (default: :func:`load_pbs_costs`).
    """
    module, ranges, calibration, rounding, model_p_error = _model_parts(model_or_module)
    if rounding_threshold_bits is not _UNSET:
        rounding = rounding_threshold_bits
    if p_error is not _UNSET:
        model_p_error = p_error
    if X is not None:
        calibration = np.concatenate([np.asarray(X, dtype=np.float32), module.extreme_inputs()])
    p = CONCRETE_P_ERROR if model_p_error is None else float(model_p_error)
    costs = load_pbs_costs() if costs is None else costs
    notes: list[str] = []
    plan = plan_circuit(module, ranges, rounding_threshold_bits=rounding, calibration=calibration, notes=notes)
    _, exact = parse_rounding(rounding)
    table = _table_for(costs, p, notes)

    groups: list[PBSGroup] = []
    demands: dict[str, tuple[int, float]] = {}  # partition -> (width, demand)
    for index, layer in enumerate(plan):
        if not layer.hidden:
            continue
        name = f"w{layer.tlu_bits}"
        groups.append(PBSGroup(index, "tlu", layer.neurons, layer.tlu_bits, name))
        demand = _demand_after(plan, index, exact)
        demands[name] = (layer.tlu_bits, max(demand, demands.get(name, (0, -math.inf))[1]))
        if exact and layer.lsbs_removed:
            groups.append(PBSGroup(index, "rounding", layer.neurons * layer.lsbs_removed, 1, "rounding"))
            demand = layer.accumulator_bits + ROUNDING_PARTITION_MARGIN
            demands["rounding"] = (1, max(demand, demands.get("rounding", (0, -math.inf))[1]))

    partitions: list[Partition] = []
    for name, (width, demand) in sorted(demands.items()):
        parameter, factor = _lookup(costs, table, width, demand, notes)
        count = sum(g.count for g in groups if g.partition == name)
        partitions.append(
            Partition(name, width, count, round(demand, 3), parameter.key, parameter.seconds * factor,
                      parameter.keygen_s * factor, parameter.evaluation_key_mb * factor, parameter.measured,
                      parameter.fixed_seconds * factor)
        )
    seconds = {part.name: part.seconds_per_pbs for part in partitions}
    for group in groups:
        group.seconds_per_pbs = seconds[group.partition]
    by_width: dict[int, int] = {}
    for group in groups:
        by_width[group.width] = by_width.get(group.width, 0) + group.count
    # Partitions sharing one parameter set share its keys.
    distinct = {part.parameters: part for part in partitions}.values()
    return FHECost(
        pbs_by_width=dict(sorted(by_width.items())),
        pbs_count=sum(g.count for g in groups),
        max_bit_width=max(layer.accumulator_bits for layer in plan),
        latency_s=costs.overhead_s
        + sum(g.count * g.seconds_per_pbs for g in groups)
        + sum(part.fixed_seconds for part in distinct),
        keygen_s=costs.keygen_base_s + sum(max(0.0, part.keygen_s - costs.keygen_base_s) for part in distinct),
        evaluation_key_mb=sum(part.evaluation_key_mb for part in distinct),
        source=costs.source,
        accumulator_bits=[layer.accumulator_bits for layer in plan],
        lsbs_removed=[layer.lsbs_removed for layer in plan],
        rounding_threshold_bits=rounding,
        p_error=p,
        groups=groups,
        partitions=partitions,
        notes=notes,
    )


# ---------------------------------------------------------------------------------------------
# What a compiled circuit actually has
# ---------------------------------------------------------------------------------------------
def equivalent_width(key: Sequence[int], costs: PBSCosts | None = None, p_error: float = CONCRETE_P_ERROR) -> int:
    """The lookup width a parameter set serves: the narrowest staircase holding it
    (same polynomial size, GLWE dimension, level and base; else same N and k; else closest
    complexity). The bit-isolating PBS of exact rounding come out as 1."""
    costs = load_pbs_costs() if costs is None else costs
    available = costs.p_errors()
    table = costs.staircases[min(available, key=lambda p: abs(math.log(p / p_error)))]
    key = tuple(int(v) for v in key)
    for size in (4, 2):
        for width in sorted(table):
            if any(costs.parameters[index].key[:size] == key[:size] for _, index in table[width]):
                return width
    polynomial_size, glwe_dimension = key[0], key[1]
    return max(1, int(round(math.log2(polynomial_size * glwe_dimension))) - 7)


def _priced_like(key: Sequence[int], costs: PBSCosts) -> tuple[ParameterCost, float]:
    """The table's set that prices parameters ``key`` (N, k, level, base_log, n), and the factor
    to scale its times by: the same key (1), else its family (same N, k, level, base_log) scaled
    by the LWE dimension, else the set closest in (N·k, level) scaled by that size."""
    key = tuple(int(v) for v in key)
    for parameter in costs.parameters:
        if parameter.key == key:
            return parameter, 1.0
    family = [p for p in costs.parameters if p.key[:4] == key[:4]]
    if family:
        closest = min(family, key=lambda p: abs(p.key[4] - key[4]))
        return closest, key[4] / closest.key[4]
    size = key[0] * key[1] * key[2]
    closest = min(costs.parameters, key=lambda p: abs(math.log(p.key[0] * p.key[1] * p.key[2] / size)))
    return closest, size / (closest.key[0] * closest.key[1] * closest.key[2])


def seconds_per_pbs(key: Sequence[int], costs: PBSCosts) -> float:
    """Seconds each PBS with parameters ``key`` adds to a run, on the table's machine."""
    parameter, factor = _priced_like(key, costs)
    return parameter.seconds * factor


def fixed_seconds(key: Sequence[int], costs: PBSCosts) -> float:
    """Seconds a run spends once for having parameters ``key`` in the circuit."""
    parameter, factor = _priced_like(key, costs)
    return parameter.fixed_seconds * factor


def measured_cost(quantized_module, costs: PBSCosts | None = None) -> dict:
    """What the compiled circuit of ``quantized_module`` has: PBS by parameter set and by
    equivalent width, key sizes (uncompressed, MB, from ``circuit.statistics``), widths."""
    from .compilation import compiled_accumulator_bits

    circuit = quantized_module.fhe_circuit
    stats = circuit.statistics
    requested = getattr(getattr(circuit, "configuration", None), "p_error", None)
    p_error = CONCRETE_P_ERROR if requested is None else float(requested)
    costs = load_pbs_costs() if costs is None else costs
    per_parameter, by_width = [], {}
    for param, count in stats.get("programmable_bootstrap_count_per_parameter", {}).items():
        key = tuple(
            int(v() if callable(v) else v)
            for v in (param.polynomial_size, param.glwe_dimension, param.level, param.base_log, param.input_lwe_dimension)
        )
        width = equivalent_width(key, costs, p_error)
        per_parameter.append(
            {
                "parameters": key,
                "count": int(count),
                "width": width,
                "seconds_per_pbs": seconds_per_pbs(key, costs),
                "fixed_seconds": fixed_seconds(key, costs),
            }
        )
        by_width[width] = by_width.get(width, 0) + int(count)
    return {
        "pbs_count": int(stats.get("programmable_bootstrap_count", 0)),
        "pbs_by_parameters": per_parameter,
        "pbs_by_width": dict(sorted(by_width.items())),
        "max_bit_width": int(circuit.graph.maximum_integer_bit_width()),
        "accumulator_bits": compiled_accumulator_bits(quantized_module),
        "bootstrap_key_mb": float(stats.get("size_of_bootstrap_keys", 0)) / MB,
        "keyswitch_key_mb": float(stats.get("size_of_keyswitch_keys", 0)) / MB,
        "complexity": float(stats.get("complexity", 0.0)),
        # Σ over parameter sets of (fixed + PBS × seconds per PBS) from the table: what the
        # circuit's PBS cannot run faster than.
        "floor_s": sum(entry["fixed_seconds"] + entry["count"] * entry["seconds_per_pbs"] for entry in per_parameter),
        "table": costs.source,
        "p_error": p_error,  # as requested (the circuit's achieved one is circuit.p_error)
    }


