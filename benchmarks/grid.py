"""The loop body every ablation grid shares: run one cell, record it, keep partial results.

Imported by the scripts beside it (``python benchmarks/<script>.py`` puts this folder on
``sys.path``).
"""

from __future__ import annotations

import argparse
import json
import traceback
from pathlib import Path
from typing import Callable


def record_cell(
    row: dict,
    run: Callable[[], dict],
    label: str,
    describe: Callable[[dict], str],
    results: list[dict],
    out: Path,
) -> dict:
    """Run one grid cell into ``row`` (an error is recorded, not raised: one failure must not lose
    the grid), print ``label`` with ``describe(row)`` or the error, and rewrite ``out``."""
    try:
        row.update(run())
    except Exception as error:  # noqa: BLE001
        row["error"] = f"{type(error).__name__}: {error}".splitlines()[0][:300]
        traceback.print_exc()
    results.append(row)
    print(f"{label} ERROR {row['error']}" if "error" in row else f"{label} {describe(row)}", flush=True)
    Path(out).write_text(json.dumps(results, indent=1))  # partial results survive
    return row


def parse_budget(text: str) -> tuple[int, int, int]:
    """``"3,3,10"`` -> ``(3, 3, 10)``: an ``argparse`` type for ``--budgets``."""
    values = tuple(int(v) for v in text.split(","))
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"a budget is n_w,n_a,n_accum, got {text!r}")
    return values


def failed_runs(results: list[dict], label: Callable[[dict], str]) -> list[str]:
    """Markdown lines listing the grid cells that raised (none: no lines)."""
    errors = [r for r in results if "error" in r]
    if not errors:
        return []
    return ["", "Failed runs:", ""] + [f"- {r['dataset']} {tuple(r['bits'])} {label(r)}: {r['error']}" for r in errors]


def merged_runs(paths: list[Path], order: Callable[[dict], tuple], out: Path, indent: int | None = 1) -> list[dict]:
    """The runs of several JSON files (one per process of a study split over several), in report
    order, written back to ``out`` as the study's single committed file."""
    runs = sorted((run for path in paths for run in json.loads(Path(path).read_text())), key=order)
    Path(out).write_text(json.dumps(runs, indent=indent))
    return runs


def collect_runs(
    jobs: list[tuple], capture: Callable[..., dict], out: Path, progress: Callable[[dict], str], indent: int | None = 1
) -> list[dict]:
    """``capture(*job)`` for every job, printing ``progress(run)`` and rewriting ``out`` after each
    (a study cut short keeps the runs it finished)."""
    runs: list[dict] = []
    for job in jobs:
        runs.append(capture(*job))
        print(progress(runs[-1]), flush=True)
        Path(out).write_text(json.dumps(runs, indent=indent))
    return runs


def dataset_then_seed(names: list[str]) -> Callable[[dict], tuple]:
    """Report order of per-(data set, seed) runs: the data sets as ``names`` lists them, then seeds."""
    return lambda run: (names.index(run["dataset"]), run["seed"])


def study_parser(description: str, names: list[str], out: Path, every_set_by_default: bool = True) -> argparse.ArgumentParser:
    """The command line every per-(data set, seed) study shares: which sets and seeds, where the runs
    go, or a report rebuilt from saved runs."""
    parser = argparse.ArgumentParser(description=description)
    if every_set_by_default:
        parser.add_argument("--datasets", nargs="+", choices=names, default=names)
    else:
        parser.add_argument("--datasets", nargs="+", choices=names, help="default: every eligible set")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    parser.add_argument("--out", type=Path, default=out, help="one file per process when split over several")
    parser.add_argument("--report-only", nargs="+", type=Path, help="rebuild the report from these JSON files")
    return parser
