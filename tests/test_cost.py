"""The FHE cost model: exact PBS counts against compiled circuits, the PBS cost cache, speed."""

import json
import time

import numpy as np
import pytest

from fhe_estimators import NeuralNetClassifier
from fhe_estimators import cost as cost_model
from fhe_estimators import compilation
from fhe_estimators import pbs_costs
from fhe_estimators.cost import (
    FHECost,
    estimate_cost,
    fallback_costs,
    load_pbs_costs,
    measure_pbs_costs,
    measured_cost,
)


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    """Every test sees an empty cache directory: the fallback table, unless it measures."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def one_layer(iris):
    X_train, _, y_train, _ = iris
    return NeuralNetClassifier(hidden_layer_sizes=(8,), max_epochs=8, random_state=0).fit(X_train, y_train)


@pytest.fixture(scope="module")
def two_layers(breast_cancer):
    X_train, _, y_train, _ = breast_cancer
    model = NeuralNetClassifier(
        hidden_layer_sizes=(8, 6), n_w_bits=2, n_a_bits=2, n_accum_bits=9, max_epochs=8, random_state=0
    )
    return model.fit(X_train, y_train)


def _compile(model, rounding):
    """Compile as ``model.compile`` does, with any form of ``rounding_threshold_bits``."""
    calibration = np.concatenate([model.calibration_X_, model.module_.extreme_inputs()])
    weights = [layer.weights for layer in model.module_.integer_layers()]
    return compilation.compile_module(
        model.module_, calibration, weights, model.accumulator_ranges_, rounding_threshold_bits=rounding
    )


@pytest.mark.parametrize(
    "fixture, rounding",
    [
        ("one_layer", None),
        ("one_layer", {"n_bits": 4, "method": "approximate"}),
        ("two_layers", None),
        ("two_layers", 6),
        ("two_layers", {"n_bits": 4, "method": "exact"}),
        ("two_layers", {"n_bits": 5, "method": "approximate"}),
    ],
)
def test_predicted_pbs_count_equals_the_compiled_circuit(request, fixture, rounding):
    model = request.getfixturevalue(fixture)
    predicted = estimate_cost(model, rounding_threshold_bits=rounding)
    quantized_module = _compile(model, rounding)
    measured = measured_cost(quantized_module)
    assert predicted.pbs_count == measured["pbs_count"] == quantized_module.fhe_circuit.statistics["programmable_bootstrap_count"]
    assert predicted.pbs_count == sum(predicted.pbs_by_width.values())
    assert predicted.max_bit_width == measured["max_bit_width"]
    assert predicted.accumulator_bits == measured["accumulator_bits"]
    ops = compilation.gemm_ops(quantized_module)
    assert predicted.lsbs_removed == [op.lsbs_to_remove.get("matmul", 0) if isinstance(op.lsbs_to_remove, dict) else 0 for op in ops]


def test_the_pbs_law(two_layers):
    """Exact rounding: one TLU plus one PBS per removed bit per hidden neuron; approximate: one TLU."""
    sizes = two_layers.module_.hidden_sizes()
    exact = estimate_cost(two_layers, rounding_threshold_bits={"n_bits": 3, "method": "exact"})
    approximate = estimate_cost(two_layers, rounding_threshold_bits={"n_bits": 3, "method": "approximate"})
    assert approximate.pbs_count == sum(sizes)
    assert exact.pbs_count == sum(n * (1 + r) for n, r in zip(sizes, exact.lsbs_removed))
    assert exact.lsbs_removed == approximate.lsbs_removed and max(exact.lsbs_removed) > 0
    assert approximate.latency_s < exact.latency_s
    assert estimate_cost(two_layers, rounding_threshold_bits=3).pbs_count == exact.pbs_count  # int means exact


def test_more_hidden_neurons_cost_more(iris):
    X_train, _, y_train, _ = iris
    costs = [
        estimate_cost(NeuralNetClassifier(hidden_layer_sizes=(n,), max_epochs=3, random_state=0).fit(X_train, y_train))
        for n in (4, 16)
    ]
    assert costs[0].pbs_count < costs[1].pbs_count
    for cost in costs:  # latency: the per-sample overhead, every PBS at its partition's price, and
        # each parameter set's fixed seconds once (partitions sharing a set share them)
        table = load_pbs_costs()
        fixed = {part.parameters: part.fixed_seconds for part in cost.partitions}
        assert all(value > 0 for value in fixed.values())
        expected = table.overhead_s + sum(g.count * g.seconds_per_pbs for g in cost.groups) + sum(fixed.values())
        assert cost.latency_s == pytest.approx(expected)


def test_estimate_is_fast_and_complete(two_layers):
    estimate_cost(two_layers)  # first call loads the table
    start = time.perf_counter()
    for _ in range(5):
        cost = estimate_cost(two_layers)
    assert (time.perf_counter() - start) / 5 < 0.5
    assert isinstance(cost, FHECost) and cost.source == "fallback"
    assert cost.latency_s > 0 and cost.keygen_s > 0 and cost.evaluation_key_mb > 0
    assert {group.partition for group in cost.groups} == {part.name for part in cost.partitions}
    json.dumps(cost.as_dict(), default=str)  # reportable


def test_overrides_and_a_bare_module(two_layers):
    cheap = estimate_cost(two_layers, p_error=0.01)
    default = estimate_cost(two_layers)
    assert cheap.pbs_count == default.pbs_count and cheap.p_error == 0.01
    sizes = {part.name: part.parameters[0] for part in default.partitions}
    assert all(part.parameters[0] <= sizes[part.name] for part in cheap.partitions)  # a looser p_error: smaller polynomials
    unknown = estimate_cost(two_layers, p_error=0.05)  # not in the table: the safer 0.01 is used, and said
    assert unknown.latency_s == cheap.latency_s and any("p_error" in note for note in unknown.notes)
    bare = estimate_cost(two_layers.module_)  # worst-case ranges: what the estimator checked
    unrounded = estimate_cost(two_layers, rounding_threshold_bits=None)  # a bare module has no rounding
    assert bare.accumulator_bits == unrounded.accumulator_bits and bare.pbs_count == unrounded.pbs_count
    with pytest.raises(ValueError, match="rounding_threshold_bits"):
        estimate_cost(two_layers, rounding_threshold_bits={"n_bits": 5, "method": "sometimes"})
    with pytest.raises(TypeError):
        estimate_cost("not a model")


def test_fallback_until_measured_then_the_cache(tmp_path):
    assert load_pbs_costs().source == "fallback"
    info = fallback_costs().info
    assert info["concrete_python"] and info["cpus"] and info["measured_at"]
    # A small real measurement: the 1-bit staircase, timing only its cheapest parameter sets.
    measured = measure_pbs_costs(widths=(1,), max_measured_complexity=3.3e7)
    path = cost_model.cache_path()
    assert path.is_file() and str(tmp_path / "cache" / "fhe_estimators") in str(path)
    assert measured.source == str(path)
    loaded = load_pbs_costs()
    assert loaded.source == str(path)
    assert loaded.to_json() == measured.to_json()
    assert any(p.measured for p in loaded.parameters) and all(p.seconds > 0 for p in loaded.parameters)
    # Two probe sizes split a run into seconds per PBS and seconds once per parameter set.
    assert all(p.fixed_seconds is not None and p.fixed_seconds >= 0 for p in loaded.parameters)
    assert loaded.info["probe_sizes"] == list(pbs_costs.PROBE_SIZES)
    path.write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable"):
        assert load_pbs_costs().source == "fallback"
    # A table in an older format is not misread: the warning says to measure again.
    path.write_text(json.dumps({**measured.to_json(), "format": 1}))
    with pytest.warns(UserWarning, match="measure it again"):
        assert load_pbs_costs().source == "fallback"
