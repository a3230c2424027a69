"""What a benchmark run reports: its log lines, the RESULTS.md tables and ratios, and where it ran."""

from __future__ import annotations

import os
import platform
from importlib import metadata

from .measure import MODELS, Measurement


def one_line(row: Measurement) -> str:
    """The row as one log line, printed while the benchmark runs."""
    text = f"{row.dataset:13s} {row.budget:9s} {row.model:22s} clear {row.clear_score:.3f}"
    if row.note:
        text += f"  simulated {row.simulated_score:.3f}  max bits {row.max_bit_width}  PBS {row.pbs_count}"
        text += f"  ({row.note})"
    elif row.latency_s is not None:
        text += (
            f"  simulated {row.simulated_score:.3f}  max bits {row.max_bit_width}  PBS {row.pbs_count}"
            f"  keys {row.evaluation_key_mb:.0f} MB  keygen {row.keygen_s:.1f} s  latency {row.latency_s:.2f} s"
            f" (predicted {_fmt(row.predicted_latency_s, '.2f')} s, floor {row.floor_s:.2f} s)"
        )
    elif row.simulated_score is not None:
        text += f"  simulated {row.simulated_score:.3f}  max bits {row.max_bit_width}  PBS {row.pbs_count}"
        text += f"  fit {row.fit_s:.1f} s"
    return text


def _fmt(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def environment() -> dict:
    libraries = ("concrete-ml", "concrete-python", "torch", "skorch", "scikit-learn")
    versions = {name: metadata.version(name) for name in libraries}
    return {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(), "versions": versions}


def describe_environment() -> str:
    """"2 CPUs (x86_64); concrete-ml 1.9.0, …": where and with what a result was measured."""
    env = environment()
    versions = ", ".join(f"{name} {version}" for name, version in env["versions"].items())
    return f"{env['cpus']} CPUs ({env['processor']}); {versions}"


def pbs_seconds_used(rows: list[Measurement]) -> dict[str, dict[str, float]]:
    """Prices of every parameter set the rows' circuits use: "N,k,level,base,n" ->
    {"per_pbs": seconds each PBS adds, "fixed": seconds once per run}."""
    used = {
        ",".join(map(str, entry["parameters"])): {
            "per_pbs": entry["seconds_per_pbs"],
            "fixed": entry.get("fixed_seconds", 0.0),
        }
        for row in rows
        for entry in row.pbs_by_parameters
    }
    return dict(sorted(used.items(), key=lambda item: item[1]["per_pbs"]))


def _find(rows: list[Measurement], dataset: str, budget: str, model: str) -> Measurement | None:
    return next((r for r in rows if r.dataset == dataset and r.budget == budget and r.model == model), None)


def _ratio(numerator, denominator) -> float | None:
    return None if numerator is None or not denominator else numerator / denominator


def comparison_markdown(rows: list[Measurement]) -> list[str]:
    """Ours against the built-in network (same budget) and against our search-off reference."""
    lines = [
        "| data set | budget | latency ours / built-in | predicted / measured | latency / floor "
        "| fit s ours / search off | score ours − search off |",
        "|---|---|---|---|---|---|---|",
    ]
    for ours in (r for r in rows if r.model == MODELS[0]):
        builtin = _find(rows, ours.dataset, ours.budget, MODELS[1])
        off = _find(rows, ours.dataset, ours.budget, MODELS[3])
        delta = None if off is None else ours.simulated_score - off.simulated_score
        lines.append(
            f"| {ours.dataset} | {ours.budget} | {_fmt(_ratio(ours.latency_s, builtin and builtin.latency_s), '.2f')} "
            f"| {_fmt(_ratio(ours.predicted_latency_s, ours.latency_s), '.2f')} "
            f"| {_fmt(_ratio(ours.latency_s, ours.floor_s), '.2f')} "
            f"| {_fmt(_ratio(ours.fit_s, off and off.fit_s), '.2f')} | {_fmt(delta, '+.3f')} |"
        )
    return lines


def results_markdown(rows: list[Measurement], costs_source: str, n_samples: int) -> str:
    lines = [
        "# Benchmark: fhe_estimators vs Concrete ML's built-in networks vs a float MLP",
        "",
        f"Measured in one run of `fhe-estimators bench` on {describe_environment()}"
        + f". Encrypted latency: median of {n_samples} samples (encrypt + run + decrypt).",
        "Scores are accuracy (R² for diabetes) on the test split. Eval keys: serialized evaluation keys "
        "(what a client uploads). Predicted latency: the cost model's, at fit, before compiling. "
        "Floor = Σ PBS × this machine's seconds per PBS for the crypto parameters Concrete chose "
        f"(PBS cost table: {costs_source}).",
        "",
        "| data set | budget (w,a,acc) | model | clear | FHE-simulated | fit s | compile s | max bits | PBS "
        "| eval keys MB | keygen s | predicted latency s | latency s | floor s | latency / floor "
        "| execute = simulate |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = None if row.latency_s is None or not row.floor_s else row.latency_s / row.floor_s
        lines.append(
            f"| {row.dataset} | {row.budget} | {row.model} | {row.clear_score:.3f} | {_fmt(row.simulated_score)} "
            f"| {row.fit_s:.1f} | {_fmt(row.compile_s, '.1f')} "
            f"| {_fmt(row.max_bit_width, 'd')} | {_fmt(row.pbs_count, 'd')} "
            f"| {_fmt(row.evaluation_key_mb, '.0f')} | {_fmt(row.keygen_s, '.1f')} "
            f"| {_fmt(row.predicted_latency_s, '.3f')} "
            f"| {_fmt(row.latency_s, '.3f')} | {_fmt(row.floor_s, '.3f')} "
            f"| {_fmt(ratio, '.2f')} | {_fmt(row.execute_matches_simulate, '')} |"
        )
    notes = [f"- {row.dataset} {row.budget} {row.model}: {row.note}" for row in rows if row.note]
    if notes:
        lines += ["", *notes]
    lines += ["", "Ratios, from the rows above (\"-\" where a row is not executed or has no search-off reference):", ""]
    lines += comparison_markdown(rows)
    lines += ["", "Cost of one PBS per crypto parameter set used (N, k, level, base log, n; from the table above):", "",
              "| parameters | ms per PBS | ms once per run |", "|---|---|---|"]
    lines += [
        f"| {key} | {price['per_pbs'] * 1000:.1f} | {price['fixed'] * 1000:.0f} |"
        for key, price in pbs_seconds_used(rows).items()
    ]
    return "\n".join(lines) + "\n"
