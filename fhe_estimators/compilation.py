"""Compile the fitted network to a Concrete circuit (the only module that compiles).

Concrete sizes each encrypted value from the calibration set it is given, not
from what inputs *could* do. FHE arithmetic wraps around silently, so an input
far from the calibration data could overflow an accumulator and give a wrong
answer with no error. :func:`compile_module` therefore hints Concrete
(``fhe.hint``) so that every layer's accumulator is at least as wide as its
exact worst case over all in-range inputs, computed on the integer weights.

Running the compiled circuit (clear, simulated, encrypted, threads) is in :mod:`.runtime`.
"""

from __future__ import annotations

import contextlib
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from concrete import fhe as cfhe
from concrete.fhe.compilation.configuration import MAXIMUM_TLU_BIT_WIDTH
from concrete.ml.quantization.quantized_ops import QuantizedGemm
from concrete.ml.torch.compile import compile_brevitas_qat_model

from .budget import CONCRETE_MAX_BITS, signed_bit_width
from .circuit_plan import hint_bits
from .runtime import ready_concrete_for_this_thread

#: Our default probability of error per programmable bootstrapping (Concrete ML's is 2^-40).
#: At 1e-6 Concrete picks much cheaper parameters (default breast-cancer model: key generation
#: 18 → 9 s, evaluation keys 232 → 125 MB, latency 3.6 → 2.1 s in benchmarks/p_error_study.py),
#: while a wrong lookup stays rare enough (at most a few hundred PBS: under 1e-3 per prediction)
#: that encrypted predictions equal simulated ones on every benchmark sample (docs/cost_model.md).
DEFAULT_P_ERROR = 1e-6


ROUNDING_METHODS = ("exact", "approximate")


def check_rounding_threshold_bits(value):
    """``rounding_threshold_bits`` in Concrete ML's forms, validated: None, a positive int
    (exact rounding), or ``{"n_bits": int, "method": "exact" | "approximate"}``.

    Returns None, an int, or a dict with both keys (method lower-case).
    """
    if value is None:
        return None
    if isinstance(value, dict):
        unknown = set(value) - {"n_bits", "method"}
        if unknown or "n_bits" not in value:
            raise ValueError(
                'rounding_threshold_bits as a dict needs "n_bits" and may have "method" '
                f'("exact" or "approximate"); got {value!r}.'
            )
        method = value.get("method", "exact")
        method = getattr(method, "name", method)  # concrete.fhe.Exactness members
        if not isinstance(method, str) or method.lower() not in ROUNDING_METHODS:
            raise ValueError(f'rounding_threshold_bits["method"] must be "exact" or "approximate", got {method!r}.')
        return {"n_bits": _rounding_bits(value["n_bits"]), "method": method.lower()}
    return _rounding_bits(value)


def _rounding_bits(n_bits) -> int:
    if isinstance(n_bits, bool) or not isinstance(n_bits, numbers.Integral) or not 1 <= n_bits <= MAXIMUM_TLU_BIT_WIDTH:
        raise ValueError(
            f"rounding_threshold_bits must be a positive integer (at most {MAXIMUM_TLU_BIT_WIDTH}) or a dict "
            f'{{"n_bits": int, "method": "exact" | "approximate"}}; got n_bits={n_bits!r}.'
        )
    return int(n_bits)


@dataclass
class CircuitReport:
    """What the compiled circuit looks like, for reports and benchmarks."""

    max_bit_width: int
    pbs_count: int
    accumulator_bits: list[int] = field(default_factory=list)  # per linear layer, as compiled
    #: PBS per crypto parameter set: {"parameters": (polynomial size, GLWE dim, level, base log,
    #: LWE dim), "count", "width": the lone-lookup bit-width with the same parameters}.
    pbs_by_parameters: list[dict] = field(default_factory=list)
    #: Bootstrap + keyswitch keys as Concrete sizes them (uncompressed), MB.
    evaluation_key_mb: float = 0.0


def gemm_ops(quantized_module) -> list[QuantizedGemm]:
    """The linear layers of a compiled module, in order."""
    return [op for _, op in quantized_module.quant_layers_dict.values() if isinstance(op, QuantizedGemm)]



def _install_hints(ops: Sequence[QuantizedGemm], bits: Sequence[int]) -> None:
    """Make each Gemm hint its integer accumulator to ``bits`` while being traced.

    Hidden Gemms pass their accumulator through ``cnp_round`` (rounding before
    the table lookup); the output Gemm hands it to
    ``make_output_quant_parameters``. Both are wrapped on the op instance only.
    """
    for op, width in zip(ops, bits):
        round_method, output_method = op.cnp_round, op.make_output_quant_parameters

        def cnp_round(x, calibrate_rounding, rounding_operation_id="single_rounding_op", *, _w=width, _f=round_method):
            if rounding_operation_id == "matmul":
                x = cfhe.hint(x, bit_width=_w)
            return _f(x, calibrate_rounding, rounding_operation_id=rounding_operation_id)

        def make_output_quant_parameters(q_values, *args, _w=width, _f=output_method, **kwargs):
            return _f(cfhe.hint(q_values, bit_width=_w), *args, **kwargs)

        op.cnp_round = cnp_round
        op.make_output_quant_parameters = make_output_quant_parameters


def _remove_hints(ops: Sequence[QuantizedGemm]) -> None:
    """Drop the instance wrappers: they only matter while tracing, and do not pickle."""
    for op in ops:
        vars(op).pop("cnp_round", None)
        vars(op).pop("make_output_quant_parameters", None)


def compiled_accumulator_bits(quantized_module) -> list[int]:
    """Bit-width Concrete gave each Gemm's integer accumulator in the circuit."""
    graph = quantized_module.fhe_circuit.graph
    widths = []
    for op in gemm_ops(quantized_module):
        tag = op.op_instance_name + ".matmul"
        nodes = [
            node
            for node in graph.graph.nodes
            if node.tag == tag and node.output.is_encrypted and node.operation.name != "Constant"
        ]
        widths.append(max(node.output.dtype.bit_width for node in nodes))
    return widths


def circuit_report(quantized_module) -> CircuitReport:
    """The compiled circuit's measured figures (the cost model's predictions are in ``fhe_cost_``)."""
    from .cost import measured_cost

    measured = measured_cost(quantized_module)
    return CircuitReport(
        max_bit_width=measured["max_bit_width"],
        pbs_count=measured["pbs_count"],
        accumulator_bits=measured["accumulator_bits"],
        pbs_by_parameters=measured["pbs_by_parameters"],
        evaluation_key_mb=measured["bootstrap_key_mb"] + measured["keyswitch_key_mb"],
    )


def compile_module(
    torch_module: torch.nn.Module,
    calibration: np.ndarray,
    integer_weights: Sequence[np.ndarray],
    accumulator_ranges: Sequence[tuple[int, int]],
    *,
    rounding_threshold_bits: int | None = None,
    p_error: float | None = None,
    configuration: cfhe.Configuration | None = None,
    verbose: bool = False,
):
    """Compile ``torch_module`` so every accumulator covers its exact worst case.

    ``integer_weights`` and ``accumulator_ranges`` (per linear layer, from
    the estimator's exact check) are what the guarantee is built on; the
    weights are compared with Concrete ML's own quantization so a mismatch can
    never go unnoticed. Returns the compiled ``QuantizedModule``.
    """
    ready_concrete_for_this_thread()
    _check_within_concrete_limit(max(int(signed_bit_width(low, high)) for low, high in accumulator_ranges))
    calibration = np.asarray(calibration, dtype=np.float32)
    kwargs = dict(rounding_threshold_bits=rounding_threshold_bits, p_error=p_error, configuration=configuration)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch_module = torch_module.cpu().eval()
        exporting = getattr(torch_module, "exporting", contextlib.nullcontext)
        with exporting():
            quantized_module = _compile_or_explain(torch_module, calibration, verbose=verbose, **kwargs)

    ops = gemm_ops(quantized_module)
    if len(ops) != len(integer_weights):
        raise RuntimeError(f"Expected {len(integer_weights)} linear layers in the circuit, found {len(ops)}.")
    for index, (op, weights) in enumerate(zip(ops, integer_weights)):
        compiled = np.asarray(op.constant_inputs[1].qvalues)  # (out, in), like torch's weight
        if not np.array_equal(compiled, weights):
            raise RuntimeError(
                f"Concrete ML quantized layer {index} differently from the checked integer weights; "
                "the accumulator guarantee would not hold."
            )

    needed = [
        hint_bits(low, high, op.lsbs_to_remove.get("matmul", 0) if isinstance(op.lsbs_to_remove, dict) else 0)
        for op, (low, high) in zip(ops, accumulator_ranges)
    ]
    _check_within_concrete_limit(max(needed))
    if any(have < need for have, need in zip(compiled_accumulator_bits(quantized_module), needed)):
        _install_hints(ops, needed)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantized_module.compile(calibration, configuration, p_error=p_error, verbose=verbose)
        finally:
            _remove_hints(ops)
    return quantized_module


def _check_within_concrete_limit(bits: int) -> None:
    if bits > CONCRETE_MAX_BITS:
        raise ValueError(
            f"The worst-case accumulator needs {bits} bits, over Concrete's limit of "
            f"{CONCRETE_MAX_BITS}. Lower n_accum_bits (or n_w_bits / n_a_bits) and fit again."
        )


#: What Concrete says when a table lookup is wider than it supports (concrete/fhe/mlir/converter.py).
_TLU_TOO_WIDE = f"only up to {MAXIMUM_TLU_BIT_WIDTH}-bit table lookups are supported"


def _compile_or_explain(torch_module, calibration, **kwargs):
    """Run Concrete ML's compile, turning the failures we can diagnose into actionable errors.

    Each diagnosis reads what Concrete reported (its message, or the failing
    check and its operands); anything else propagates unchanged. The original
    error is always chained.
    """
    try:
        return compile_brevitas_qat_model(torch_module, calibration, **kwargs)
    except RuntimeError as error:
        if str(error).strip() == "NoParametersFound":
            raise ValueError(
                "Concrete found no cryptographic parameters for this circuit: its table lookups are too "
                "wide for the requested error probability. Lower n_accum_bits, set "
                "rounding_threshold_bits (e.g. 6), or allow a larger p_error."
            ) from error
        if _TLU_TOO_WIDE in str(error):
            raise ValueError(
                f"Concrete could not compile the circuit: it needs table lookups wider than "
                f"{MAXIMUM_TLU_BIT_WIDTH} bits. Lower n_accum_bits, or set rounding_threshold_bits (e.g. 6). "
                f"Concrete said: {error}"
            ) from error
        raise
    except AssertionError as error:  # concrete.fhe's own consistency checks carry no message
        rounding = _failed_rounding(error)
        if rounding is None:
            raise
        bits, lsbs = rounding
        raise ValueError(
            f"Concrete could not compile this network: a rounding step would remove {lsbs} bits from a "
            f"{bits}-bit accumulator, more bits than it has. The layer's quantization scales are degenerate, which "
            "happens when the training inputs were (nearly) constant; fit on varied, scaled features "
            "(e.g. StandardScaler)."
        ) from error


def _failed_rounding(error: AssertionError) -> tuple[int, int] | None:
    """(accumulator bits, bits to remove) if ``error`` is Concrete's round_bit_pattern check, else None.

    concrete/fhe/mlir/context.py asserts ``x.bit_width > lsbs_to_remove`` in
    ``Context.round_bit_pattern``; the failing frame holds both operands.
    """
    traceback = error.__traceback__
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    frame = traceback.tb_frame
    if frame.f_code.co_name != "round_bit_pattern" or not frame.f_code.co_filename.endswith("context.py"):
        return None
    operand, lsbs = frame.f_locals.get("x"), frame.f_locals.get("lsbs_to_remove")
    if operand is None or lsbs is None:
        return None
    return int(operand.bit_width), int(lsbs)
