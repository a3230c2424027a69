"""``fhe-estimators bench``: us, Concrete ML's built-in networks and a float MLP, in one run.

For each data set (StandardScaler, ``test_size=0.25, random_state=0``) and bit budget, each model
is trained, compiled, simulated and run encrypted on the same split, and every number in the
report is measured in this run on this machine: scores, times, circuit size, and the cost of one
programmable bootstrapping (PBS) at each bit-width the circuits use, which gives each circuit's
latency floor ``Σ over parameter sets (fixed cost + PBS count × cost per PBS)``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
import warnings
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

DATASETS = {
    "breast_cancer": "classification",
    "iris": "classification",
    "digits": "classification",
    "diabetes": "regression",
}
#: (n_w_bits, n_a_bits, n_accum_bits); None means "each library's own defaults".
BUDGETS = {"(3,3,10)": (3, 3, 10), "(4,4,12)": (4, 4, 12), "defaults": None}
MODELS = ("fhe_estimators", "Concrete ML built-in", "float MLP (sklearn)", "fhe_estimators, search off")
#: Concrete ML's built-in network is simulated but not executed beyond this width: its 11-bit
#: default circuits need tens of minutes and over 10 GB for their keys at p_error 2^-40 on a
#: 2-core, 24 GB machine. Ours are always executed.
BUILTIN_MAX_EXECUTED_BITS = 10
#: The budget at which ours also runs with the search off (fit time and score, simulated only).
SEARCH_OFF_BUDGET = "(3,3,10)"


@dataclass
class Measurement:
    """One model on one data set and budget. FHE fields are None for the float MLP."""

    dataset: str
    budget: str
    model: str
    clear_score: float
    fit_s: float
    simulated_score: float | None = None
    compile_s: float | None = None
    max_bit_width: int | None = None
    pbs_count: int | None = None
    pbs_per_bit_width: dict = field(default_factory=dict)
    keygen_s: float | None = None
    pbs_by_parameters: list = field(default_factory=list)  # [{parameters, count, width, seconds_per_pbs}]
    evaluation_key_mb: float | None = None  # serialized evaluation keys (what a client uploads)
    predicted_latency_s: float | None = None  # the cost model's prediction, before compiling (ours only)
    latency_s: float | None = None  # median encrypt + run + decrypt, per sample
    floor_s: float | None = None  # Σ over parameter sets of fixed + PBS count × cost per PBS, this machine's
    execute_matches_simulate: bool | None = None
    note: str = ""


def load_split(name: str):
    """Scaled train/test split of a scikit-learn toy data set, as in every benchmark here."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    scaler = StandardScaler().fit(X_train)
    return (
        scaler.transform(X_train).astype(np.float32),
        scaler.transform(X_test).astype(np.float32),
        y_train,
        y_test,
    )


def _score(task: str, y_true, y_pred) -> float:
    from sklearn.metrics import accuracy_score, r2_score

    return float(accuracy_score(y_true, y_pred) if task == "classification" else r2_score(y_true, np.ravel(y_pred)))


def _encrypted_latency(quantized_module, X: np.ndarray, n_samples: int):
    """Key generation seconds, median per-sample latency, and whether execute equals simulate."""
    from . import fhe as fhe_backend

    keygen_s = fhe_backend.keygen(quantized_module)
    simulated = quantized_module.forward(X[:n_samples], fhe="simulate")
    times, matches = [], []
    for index in range(n_samples):
        run = fhe_backend.run_encrypted_steps(quantized_module, X[index : index + 1])
        times.append(run.encrypt_s + run.run_s + run.decrypt_s)
        matches.append(bool(np.allclose(run.outputs, simulated[index : index + 1])))
    return keygen_s, statistics.median(times), all(matches)


def _fhe_measurement(base: dict, quantized_module, X_test, n_samples: int, costs) -> Measurement:
    """Circuit size, keys, encrypted latency and its floor, priced with this machine's PBS table."""
    from .cost import measured_cost

    measured = measured_cost(quantized_module, costs)
    size = dict(
        max_bit_width=measured["max_bit_width"],
        pbs_count=measured["pbs_count"],
        pbs_per_bit_width=measured["pbs_by_width"],
        pbs_by_parameters=measured["pbs_by_parameters"],
        floor_s=measured["floor_s"],
    )
    if base["model"] == MODELS[1] and size["max_bit_width"] > BUILTIN_MAX_EXECUTED_BITS:
        note = f"not executed: {size['max_bit_width']}-bit circuit (> {BUILTIN_MAX_EXECUTED_BITS}, keys too slow to make here)"
        return Measurement(**base, **size, note=note)
    keygen_s, latency_s, matches = _encrypted_latency(quantized_module, X_test, n_samples)
    return Measurement(
        **base,
        **size,
        keygen_s=keygen_s,
        evaluation_key_mb=len(quantized_module.fhe_circuit.keys.evaluation.serialize()) / 1e6,
        latency_s=latency_s,
        execute_matches_simulate=matches,
    )


def parse_budget(text: str) -> tuple[int, int, int] | None:
    """A budget name of :data:`BUDGETS` or ``"n_w,n_a,n_accum"`` (e.g. ``"2,2,7"``)."""
    if text in BUDGETS:
        return BUDGETS[text]
    try:
        bits = tuple(int(part) for part in text.strip("()").split(","))
    except ValueError:
        bits = ()
    if len(bits) != 3 or min(bits) <= 0:
        raise ValueError(f"Budget {text!r} is neither one of {list(BUDGETS)} nor 'n_w,n_a,n_accum' (e.g. '3,3,10').")
    return bits


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _measure_compiled(model, model_name, dataset, task, budget, split, y_fit, compile_X, n_samples, costs) -> Measurement:
    """Fit, compile (on ``compile_X``, or the model's own choice when None), score, execute."""
    X_train, X_test, _, y_test = split
    fit_s = _timed(lambda: model.fit(X_train, y_fit))
    compile_s = _timed(lambda: model.compile() if compile_X is None else model.compile(compile_X))
    base = dict(
        dataset=dataset,
        budget=budget,
        model=model_name,
        clear_score=_score(task, y_test, model.predict(X_test, fhe="disable")),
        simulated_score=_score(task, y_test, model.predict(X_test, fhe="simulate")),
        fit_s=fit_s,
        compile_s=compile_s,
    )
    return _fhe_measurement(base, model.quantized_module_, X_test, n_samples, costs)


def measure_ours(dataset, task, budget, split, n_samples, costs) -> Measurement:
    from . import NeuralNetClassifier, NeuralNetRegressor

    bits = parse_budget(budget)
    bits = {} if bits is None else dict(zip(("n_w_bits", "n_a_bits", "n_accum_bits"), bits))
    model = (NeuralNetClassifier if task == "classification" else NeuralNetRegressor)(random_state=0, **bits)
    row = _measure_compiled(model, MODELS[0], dataset, task, budget, split, split[2], None, n_samples, costs)
    row.predicted_latency_s = float(model.fhe_cost_.latency_s)
    return row


def measure_builtin(dataset, task, budget, split, n_samples, costs, epochs: int) -> Measurement:
    """Concrete ML's own network at the same bits and epochs (its defaults for "defaults")."""
    from concrete.ml.sklearn import NeuralNetClassifier, NeuralNetRegressor

    params: dict = {"verbose": 0, "module__n_layers": 3}  # n_layers has no default; 3 as in Concrete ML's docs
    bits = parse_budget(budget)
    if bits is not None:
        n_w, n_a, n_accum = bits
        params.update(module__n_w_bits=n_w, module__n_a_bits=n_a, module__n_accum_bits=n_accum, max_epochs=epochs)
    y_fit = split[2] if task == "classification" else split[2].astype(np.float32).reshape(-1, 1)
    model = (NeuralNetClassifier if task == "classification" else NeuralNetRegressor)(**params)
    import torch

    torch.manual_seed(0)  # its weights would otherwise depend on what ran before (our fit's RNG use)
    return _measure_compiled(model, MODELS[1], dataset, task, budget, split, y_fit, split[0], n_samples, costs)


def measure_search_off(dataset, task, budget, split) -> Measurement:
    """Ours with ``tighten=False`` and Concrete's p_error (the defaults before the search):
    fit time and FHE-simulated score only, the reference for what the search costs and keeps."""
    from . import NeuralNetClassifier, NeuralNetRegressor

    bits = dict(zip(("n_w_bits", "n_a_bits", "n_accum_bits"), parse_budget(budget)))
    model = (NeuralNetClassifier if task == "classification" else NeuralNetRegressor)(
        random_state=0, tighten=False, p_error=None, **bits
    )
    X_train, X_test, y_train, y_test = split
    fit_s = _timed(lambda: model.fit(X_train, y_train))
    compile_s = _timed(model.compile)
    row = Measurement(dataset, budget, MODELS[3], _score(task, y_test, model.predict(X_test)), fit_s)
    row.simulated_score = _score(task, y_test, model.predict(X_test, fhe="simulate"))
    row.compile_s, row.pbs_count = compile_s, model.circuit_report_.pbs_count
    row.max_bit_width, row.predicted_latency_s = model.circuit_report_.max_bit_width, float(model.fhe_cost_.latency_s)
    return row


def measure_float(dataset, task, split) -> Measurement:
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    X_train, X_test, y_train, y_test = split
    model = (MLPClassifier if task == "classification" else MLPRegressor)(max_iter=2000, random_state=0)
    fit_s = _timed(lambda: model.fit(X_train, y_train))
    return Measurement(dataset, "float", MODELS[2], _score(task, y_test, model.predict(X_test)), fit_s)


def run_benchmark(datasets=tuple(DATASETS), budgets=tuple(BUDGETS), n_samples: int = 3, log=print, costs=None) -> list[Measurement]:
    """Every model on every data set and budget; floors priced with ``costs`` (default: this machine's table)."""
    from .pbs_costs import load_pbs_costs

    warnings.filterwarnings("ignore")
    costs = load_pbs_costs() if costs is None else costs
    rows: list[Measurement] = []
    for dataset in datasets:
        task = DATASETS[dataset]
        split = load_split(dataset)
        rows.append(measure_float(dataset, task, split))
        log(_one_line(rows[-1]))
        for budget in budgets:
            ours = measure_ours(dataset, task, budget, split, n_samples, costs)
            rows.append(ours)
            log(_one_line(ours))
            rows.append(measure_builtin(dataset, task, budget, split, n_samples, costs, epochs=100))
            log(_one_line(rows[-1]))
            if budget == SEARCH_OFF_BUDGET:
                rows.append(measure_search_off(dataset, task, budget, split))
                log(_one_line(rows[-1]))
    return rows


def _one_line(row: Measurement) -> str:
    text = f"{row.dataset:13s} {row.budget:9s} {row.model:22s} clear {row.clear_score:.3f}"
    if row.note:
        text += f"  simulated {row.simulated_score:.3f}  max bits {row.max_bit_width}  PBS {row.pbs_count}  ({row.note})"
    elif row.latency_s is not None:
        text += (
            f"  simulated {row.simulated_score:.3f}  max bits {row.max_bit_width}  PBS {row.pbs_count}"
            f"  keys {row.evaluation_key_mb:.0f} MB  keygen {row.keygen_s:.1f} s  latency {row.latency_s:.2f} s"
            f" (predicted {_fmt(row.predicted_latency_s, '.2f')} s, floor {row.floor_s:.2f} s)"
        )
    elif row.simulated_score is not None:
        text += f"  simulated {row.simulated_score:.3f}  max bits {row.max_bit_width}  PBS {row.pbs_count}  fit {row.fit_s:.1f} s"
    return text


def _fmt(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def environment() -> dict:
    versions = {name: metadata.version(name) for name in ("concrete-ml", "concrete-python", "torch", "skorch", "scikit-learn")}
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
        ",".join(map(str, entry["parameters"])): {"per_pbs": entry["seconds_per_pbs"], "fixed": entry.get("fixed_seconds", 0.0)}
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
            f"| {_fmt(_ratio(ours.predicted_latency_s, ours.latency_s), '.2f')} | {_fmt(_ratio(ours.latency_s, ours.floor_s), '.2f')} "
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
        "| eval keys MB | keygen s | predicted latency s | latency s | floor s | latency / floor | execute = simulate |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = None if row.latency_s is None or not row.floor_s else row.latency_s / row.floor_s
        lines.append(
            f"| {row.dataset} | {row.budget} | {row.model} | {row.clear_score:.3f} | {_fmt(row.simulated_score)} "
            f"| {row.fit_s:.1f} | {_fmt(row.compile_s, '.1f')} | {_fmt(row.max_bit_width, 'd')} | {_fmt(row.pbs_count, 'd')} "
            f"| {_fmt(row.evaluation_key_mb, '.0f')} | {_fmt(row.keygen_s, '.1f')} | {_fmt(row.predicted_latency_s, '.3f')} "
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
        f"| {key} | {price['per_pbs'] * 1000:.1f} | {price['fixed'] * 1000:.0f} |" for key, price in pbs_seconds_used(rows).items()
    ]
    return "\n".join(lines) + "\n"


def pareto_plot(rows: list[Measurement], path: Path) -> None:
    """Score against encrypted latency, one point per model, data set and budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import ScalarFormatter

    datasets = list(dict.fromkeys(row.dataset for row in rows))
    budgets = list(dict.fromkeys(row.budget for row in rows if row.latency_s is not None))
    colors = {budget: f"C{index}" for index, budget in enumerate(budgets)}
    markers = {MODELS[0]: "o", MODELS[1]: "s"}
    figure, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 4), squeeze=False)
    for axis, dataset in zip(axes[0], datasets):
        for row in rows:
            if row.dataset == dataset and row.latency_s is not None:
                axis.scatter(row.latency_s, row.simulated_score, marker=markers[row.model], color=colors[row.budget], s=50)
        ceiling = next((row.clear_score for row in rows if row.dataset == dataset and row.model == MODELS[2]), None)
        if ceiling is not None:
            axis.axhline(ceiling, color="black", linestyle="--", linewidth=0.8)
        axis.set_xscale("log")
        axis.xaxis.set_major_formatter(ScalarFormatter())
        axis.xaxis.set_minor_formatter(ScalarFormatter())
        axis.tick_params(axis="x", which="both", labelsize=7)
        axis.set_xlabel("encrypted latency per sample (s, log)")
        axis.set_ylabel("R²" if DATASETS[dataset] == "regression" else "accuracy")
        axis.set_title(f"{dataset} (FHE-simulated)")
    handles = [Line2D([], [], marker=marker, linestyle="", color="gray", label=model) for model, marker in markers.items()]
    handles += [Line2D([], [], marker="o", linestyle="", color=color, label=budget) for budget, color in colors.items()]
    handles.append(Line2D([], [], color="black", linestyle="--", label="float MLP (clear)"))
    figure.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize="small")
    figure.tight_layout(rect=(0, 0.1, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def measurements_from_json(path: str | Path) -> list[Measurement]:
    """Rows of a ``results.json`` written by :func:`bench` (to redraw or re-tabulate them)."""
    return [Measurement(**row) for row in json.loads(Path(path).read_text())["rows"]]


def bench(
    out_dir: str | Path = "benchmarks/results",
    quick: bool = False,
    datasets=None,
    samples: int | None = None,
    budgets=None,
    measure_costs: bool = False,
) -> Path:
    """Run the benchmark and write RESULTS.md, results.json and pareto.png to ``out_dir``.

    ``quick``: one encrypted sample and only the (3,3,10) budget (unless ``budgets`` says otherwise).
    ``measure_costs``: measure this machine's PBS cost table first when it has none cached
    (``make bench`` does), so floors and predictions are this machine's.
    """
    unknown = set(datasets or ()) - set(DATASETS)
    if unknown:
        raise ValueError(f"Unknown data sets {sorted(unknown)}; choose from {list(DATASETS)}.")
    budgets = tuple(budgets or (("(3,3,10)",) if quick else BUDGETS))
    for budget in budgets:
        parse_budget(budget)
    n_samples = samples or (1 if quick else 3)
    costs = _pbs_costs(measure_costs)
    rows = run_benchmark(tuple(datasets or DATASETS), budgets, n_samples, costs=costs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "RESULTS.md").write_text(results_markdown(rows, costs.source, n_samples))
    payload = {"environment": environment(), "pbs_costs": costs.source, "pbs_seconds": pbs_seconds_used(rows)}
    (out / "results.json").write_text(json.dumps({**payload, "rows": [asdict(r) for r in rows]}, indent=1))
    pareto_plot(rows, out / "pareto.png")
    return out / "RESULTS.md"


def redraw(out_dir: str | Path = "benchmarks/results", n_samples: int = 3) -> Path:
    """Rewrite RESULTS.md and pareto.png from ``out_dir/results.json`` (no measurement)."""
    out = Path(out_dir)
    rows = measurements_from_json(out / "results.json")
    source = json.loads((out / "results.json").read_text()).get("pbs_costs", "unknown")
    (out / "RESULTS.md").write_text(results_markdown(rows, source, n_samples))
    pareto_plot(rows, out / "pareto.png")
    return out / "RESULTS.md"


def _pbs_costs(measure: bool):
    """This machine's PBS cost table; with ``measure``, measured first if it has none (minutes)."""
    from .pbs_costs import load_pbs_costs, measure_pbs_costs

    costs = load_pbs_costs()
    if measure and costs.source == "fallback":
        print("Measuring this machine's PBS costs once (cached for later runs; about 10 minutes)...", flush=True)
        costs = measure_pbs_costs()
    return costs
