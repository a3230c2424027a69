"""When the hold-out should give the model input 5 bits (sets ``holdout.FINER_INPUT_STANDARD_ERRORS``).

The width rule (``budget.default_input_bits``) gives the model input the bits the first layer fits
unpruned: 3 for 20 dense inputs at (3,3,10). With a hold-out of 100+ rows, ``fit`` then trains the
setting the hold-out chose once more with 5-bit inputs (``regularization.finer_input``) and keeps it
when it beats the first by more than ``FINER_INPUT_STANDARD_ERRORS`` paired standard errors. This
study records, for every data set of ``generalization.py`` and several seeds, both networks' hold-out
rows and test scores (in the clear: plain fits on the train part of the internal split, before the
search and the final fit on all the rows), and the report applies the rule at several numbers of
standard errors, with the library's own ``holdout.prefers_finer_input``.

Offline and a proxy, as ``sparse_rule_study.py``: the search and the final fit move end-to-end
scores by a point or two either way.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/input_width_rule_study.py [--seeds 0 1 2 3] [--datasets clf_3class ...]
      [--out PATH]   (one file per process when split over several)
      .venv/bin/python benchmarks/input_width_rule_study.py --report-only PATH [PATH ...]
      OMP_NUM_THREADS=1 .venv/bin/python benchmarks/input_width_rule_study.py --end-to-end 1.0
          (the fits whose choice differs between that rule and the default, fitted end to end both
          ways, search on, FHE-simulated: input_width_rule_end_to_end.json, then the report again)
Writes benchmarks/results/input_width_rule_study.json (after every run) and input_width_rule_study.md.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# First: generalization sets one torch/BLAS thread before numpy is imported.
from generalization import BASE_PARAMS, CLS, DATASETS, load, ours  # noqa: E402
from grid import collect_runs, dataset_then_seed, merged_runs, study_parser  # noqa: E402

import numpy as np  # noqa: E402

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor, holdout, regularization  # noqa: E402
from fhe_estimators.budget import MAX_FREE_INPUT_BITS  # noqa: E402

warnings.filterwarnings("ignore")

RESULTS = Path("benchmarks/results")
OUT = RESULTS / "input_width_rule_study.json"
END_TO_END = RESULTS / "input_width_rule_end_to_end.json"
#: Negative: the 5-bit network is kept unless it loses by more than that many standard errors.
STANDARD_ERRORS = (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5)


class _Captured(Exception):
    """Raised once both networks are recorded: the rest of the fit is not needed."""


def capture(name: str, seed: int) -> dict:
    """Both networks the input-width choice compares in a default fit of ``name`` at ``seed``
    (``networks`` is empty when the choice is not made: small hold-out, or 5 bits already)."""
    X_train, X_test, y_train, y_test = load(name)
    estimator_class = NeuralNetClassifier if DATASETS[name].task == CLS else NeuralNetRegressor
    record = {"dataset": name, "seed": seed, "networks": []}
    fit_on_rows, prefers = regularization.fit_on_rows, regularization.prefers_finer_input
    fitted = []

    def fit_spy(*args, **kwargs):
        fitted.append(fit_on_rows(*args, **kwargs))
        return fitted[-1]

    def prefers_spy(finer_rows, first_rows):
        finer = fitted[-1]  # finer_input's last fit is the challenger
        first = next(model for model in fitted if model.n_input_bits_ != MAX_FREE_INPUT_BITS and _same_setting(model, finer))
        for model, rows in ((first, first_rows), (finer, finer_rows)):
            record["networks"].append(
                {
                    "input_bits": int(model.n_input_bits_),
                    "weight_decay": float(model.weight_decay_),
                    "first_layer_density": float(model.first_layer_density_),
                    "test_score": float(model.score(X_test, y_test)),
                    "holdout_rows": {"score": rows.score.tolist(), "log_likelihood": rows.log_likelihood.tolist()},
                }
            )
        raise _Captured

    regularization.fit_on_rows, regularization.prefers_finer_input = fit_spy, prefers_spy
    try:
        estimator_class(**{**BASE_PARAMS, "random_state": seed, "tighten": False}).fit(X_train, y_train)
    except _Captured:
        pass
    finally:
        regularization.fit_on_rows, regularization.prefers_finer_input = fit_on_rows, prefers
    return record


def _same_setting(model, other) -> bool:
    return (model.weight_decay_, model.first_layer_density_, model.initialization_) == (
        other.weight_decay_,
        other.first_layer_density_,
        other.initialization_,
    )


def choose(record: dict, standard_errors: float) -> dict:
    """The network the rule keeps at ``standard_errors``, with the library's function."""
    first, finer = record["networks"]
    rows = [holdout.HoldoutRows(np.asarray(n["holdout_rows"]["score"]), np.asarray(n["holdout_rows"]["score"]),
                                np.asarray(n["holdout_rows"]["log_likelihood"])) for n in (first, finer)]
    saved = holdout.FINER_INPUT_STANDARD_ERRORS
    holdout.FINER_INPUT_STANDARD_ERRORS = standard_errors
    try:
        return finer if holdout.prefers_finer_input(rows[1], rows[0]) else first
    finally:
        holdout.FINER_INPUT_STANDARD_ERRORS = saved


def end_to_end(runs: list[dict], other: float) -> list[dict]:
    """The fits whose network the rule at ``other`` standard errors and the default choose apart,
    each fitted as ``fit`` does (search on) under both rules: test score (FHE-simulated) and
    predicted latency. The rule's constant is set for the fit's duration and restored."""
    default = holdout.FINER_INPUT_STANDARD_ERRORS
    rows = []
    for run in runs:
        if not run["networks"] or choose(run, other) is choose(run, default):
            continue
        for standard_errors in (other, default):
            holdout.FINER_INPUT_STANDARD_ERRORS = standard_errors
            try:
                result = ours(DATASETS[run["dataset"]].task, {**BASE_PARAMS, "random_state": run["seed"]}, load(run["dataset"]))
            finally:
                holdout.FINER_INPUT_STANDARD_ERRORS = default
            rows.append({"dataset": run["dataset"], "seed": run["seed"], "standard_errors": standard_errors,
                         "test_score": result["simulated_score"], "predicted_latency_s": result["predicted_latency_s"]})
            print(json.dumps(rows[-1]), flush=True)
            END_TO_END.write_text(json.dumps(rows, indent=1))
    return rows


def end_to_end_lines(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    other = next(row["standard_errors"] for row in rows)
    default = holdout.FINER_INPUT_STANDARD_ERRORS
    lines = ["", f"End to end (`--end-to-end`): the fits whose choice differs between {other:g} standard error(s) and the "
             f"default ({default:g}), fitted as `fit` does (search on) under each rule; test score FHE-simulated, "
             "predicted latency per sample:", "",
             f"| data set | seed | {other:g} SE: test, latency | {default:g} SE (default): test, latency | change |",
             "|---|---|---|---|---|"]
    pairs = {}
    for row in rows:
        pairs.setdefault((row["dataset"], row["seed"]), {})[row["standard_errors"]] = row
    for (name, seed), pair in pairs.items():
        before, after = pair[other], pair[default]
        lines.append(f"| {name} | {seed} | {before['test_score']:.3f}, {before['predicted_latency_s']:.2f} s "
                     f"| {after['test_score']:.3f}, {after['predicted_latency_s']:.2f} s "
                     f"| {after['test_score'] - before['test_score']:+.3f} |")
    return lines


def report(runs: list[dict], end_to_end_rows: list[dict] | None = None) -> str:
    compared = [run for run in runs if run["networks"]]
    default = holdout.FINER_INPUT_STANDARD_ERRORS
    lines = [
        "# When the hold-out gives the model input 5 bits",
        "",
        f"Generated by `benchmarks/input_width_rule_study.py` from {len(runs)} fits (the sets of `generalization.py`, "
        f"(3,3,10), defaults, seeds {', '.join(map(str, sorted({r['seed'] for r in runs})))}); {len(compared)} of them "
        "compared a 5-bit input with the width rule's (the others: a hold-out under 100 rows, or 5 bits already). "
        "Test scores in the clear of plain fits on the train part of the internal split (before the search). "
        f"The default is {default:g} standard error(s) (`holdout.FINER_INPUT_STANDARD_ERRORS`).",
        "",
        "| rule | mean test score (compared fits) | 5-bit chosen | changes vs the default | gained > 0.01 | lost > 0.01 |",
        "|---|---|---|---|---|---|",
    ]
    chosen_default = [choose(run, default) for run in compared]
    for k in STANDARD_ERRORS:
        chosen = [choose(run, k) for run in compared]
        deltas = [c["test_score"] - d["test_score"] for c, d in zip(chosen, chosen_default)]
        marker = " (default)" if k == default else ""
        rule = f"beat by > {k:g} SE" if k >= 0 else f"not beaten by > {-k:g} SE"
        lines.append(
            f"| {rule}{marker} | {np.mean([c['test_score'] for c in chosen]):.4f} "
            f"| {sum(c['input_bits'] == MAX_FREE_INPUT_BITS for c in chosen)} / {len(compared)} "
            f"| {sum(c is not d for c, d in zip(chosen, chosen_default))} | {sum(d > 0.01 for d in deltas)} "
            f"| {sum(d < -0.01 for d in deltas)} |"
        )
    lines += ["", "Per fit: hold-out score and test score of the width rule's network and of the 5-bit one, and the "
              "paired standard error of the hold-out difference:", ""]
    lines += ["| data set | seed | setting | width rule: bits, hold-out, test | 5 bits: hold-out, test | difference / SE |",
              "|---|---|---|---|---|---|"]
    for run in compared:
        first, finer = run["networks"]
        gap, se = holdout.paired_gap(np.asarray(finer["holdout_rows"]["score"]), np.asarray(first["holdout_rows"]["score"]))
        lines.append(
            f"| {run['dataset']} | {run['seed']} | {first['weight_decay']:g}, {first['first_layer_density']:g} "
            f"| {first['input_bits']}, {np.mean(first['holdout_rows']['score']):.3f}, {first['test_score']:.3f} "
            f"| {np.mean(finer['holdout_rows']['score']):.3f}, {finer['test_score']:.3f} | {gap:+.3f} / {se:.3f} |"
        )
    lines += end_to_end_lines(end_to_end_rows or [])
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = study_parser(__doc__.splitlines()[0], list(DATASETS), OUT)
    parser.add_argument("--end-to-end", type=float, metavar="SE", help="fit the fits this rule changes both ways")
    args = parser.parse_args()
    if args.end_to_end is not None:
        runs = json.loads(OUT.read_text())
        end_to_end(runs, args.end_to_end)
    elif args.report_only:
        runs = merged_runs(args.report_only, dataset_then_seed(list(DATASETS)), OUT, indent=None)
    else:
        jobs = [(name, seed) for name in args.datasets for seed in args.seeds]
        progress = lambda run: f"{run['dataset']} {run['seed']} {len(run['networks'])}"  # noqa: E731
        runs = collect_runs(jobs, capture, args.out, progress, indent=None)
    rows = json.loads(END_TO_END.read_text()) if END_TO_END.exists() else []
    (RESULTS / "input_width_rule_study.md").write_text(report(runs, rows))
    print((RESULTS / "input_width_rule_study.md").read_text())


if __name__ == "__main__":
    main()
