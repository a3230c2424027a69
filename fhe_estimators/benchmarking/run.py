"""``fhe-estimators bench``: us, Concrete ML's built-in networks and a float MLP, in one run.

For each data set (StandardScaler, ``test_size=0.25, random_state=0``) and bit budget, each model
is trained, compiled, simulated and run encrypted on the same split, and every number in the
report is measured in this run on this machine: scores, times, circuit size, and the cost of one
programmable bootstrapping (PBS) at each bit-width the circuits use, which gives each circuit's
latency floor ``Σ over parameter sets (fixed cost + PBS count × cost per PBS)``.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict
from pathlib import Path

from .datasets import BUDGETS, DATASETS, load_split, parse_budget
from .measure import SEARCH_OFF_BUDGET, Measurement, measure_builtin, measure_float, measure_ours, measure_search_off
from .plots import pareto_plot
from .report import environment, one_line, pbs_seconds_used, results_markdown


def run_benchmark(
    datasets=tuple(DATASETS), budgets=tuple(BUDGETS), n_samples: int = 3, log=print, costs=None
) -> list[Measurement]:
    """Every model on every data set and budget; floors priced with ``costs`` (default: this machine's table)."""
    from ..pbs_costs import load_pbs_costs

    warnings.filterwarnings("ignore")
    costs = load_pbs_costs() if costs is None else costs
    rows: list[Measurement] = []
    for dataset in datasets:
        task = DATASETS[dataset]
        split = load_split(dataset)
        rows.append(measure_float(dataset, task, split))
        log(one_line(rows[-1]))
        for budget in budgets:
            ours = measure_ours(dataset, task, budget, split, n_samples, costs)
            rows.append(ours)
            log(one_line(ours))
            rows.append(measure_builtin(dataset, task, budget, split, n_samples, costs, epochs=100))
            log(one_line(rows[-1]))
            if budget == SEARCH_OFF_BUDGET:
                rows.append(measure_search_off(dataset, task, budget, split))
                log(one_line(rows[-1]))
    return rows


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
    from ..pbs_costs import load_pbs_costs, measure_pbs_costs

    costs = load_pbs_costs()
    if measure and costs.source == "fallback":
        print("Measuring this machine's PBS costs once (cached for later runs; about 10 minutes)...", flush=True)
        costs = measure_pbs_costs()
    return costs
