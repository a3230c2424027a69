"""What the search's final fine-tune on all the training data does to the test score.

The tightening search (``fhe_estimators.search``) chooses its circuit on the internal hold-out, from
networks trained on the other 75% of the training rows, then fine-tunes the winner on all of them
(``search._final_fit``: a tenth of training, at least ``search.MIN_FINE_TUNE_STEPS`` steps, the cosine
rate restarting from ``lr``), unless that makes the circuit dearer or scores lower on those rows. That
fine-tune is never validated: the hold-out is part of what it trains on. This study records, per fit
of the defaults on every data set of ``generalization.py`` and several seeds, the test score of

* the winner as the hold-out scored it (``as_scored``: trained on 75% of the rows);
* the winner after the final fine-tune, as ``fit`` returns it with the hold-out guard
  (``search.FINAL_HOLDOUT_GUARD``) off: the training-rows slack alone decides (``current``);
* the winner after the same fine-tune at a lower learning rate (``lr_x0.3``, ``lr_x0.1``: the restart
  at the full rate can leave the validated network's basin);
* ``fit``'s fine-tune kept only if it scores no lower than the winner on the hold-out rows
  (``holdout_guard``): it has trained on them and the winner has not, so a lower score there means the
  fine-tune did harm (``holdout_as_scored`` / ``holdout_current`` record both).

The report adds ``default``: the guard where ``search.FINAL_HOLDOUT_GUARD`` applies it (regressors),
``current`` elsewhere, i.e. what ``fit`` returned with the library's defaults when the study was run
(before ``search.FINAL_TRAINING_STANDARD_ERRORS``, which the study switches off to reproduce them).

Each row also says whether the fine-tune was kept (``*_kept``; else the scored model is returned) and
the predicted latency. Test scores are FHE-simulated when the winner rounds, in the clear otherwise
(which equals the simulation there). The variants are computed after the production path, on
copies, so ``current`` is exactly what ``fit`` gives with the guard off.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/final_fit_study.py [--seeds 0 1 2 3] [--datasets iris ...]
      [--out PATH]   (one file per process when split over several)
      .venv/bin/python benchmarks/final_fit_study.py --report-only PATH [PATH ...]
Writes benchmarks/results/final_fit_study.json (after every fit) and final_fit_study.md.
"""

from __future__ import annotations

import copy
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# First: generalization sets one torch/BLAS thread before numpy is imported.
from generalization import BASE_PARAMS, CLS, DATASETS, load  # noqa: E402
from grid import collect_runs, dataset_then_seed, merged_runs, study_parser  # noqa: E402

import numpy as np  # noqa: E402

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor, search  # noqa: E402

warnings.filterwarnings("ignore")

RESULTS = Path("benchmarks/results")
OUT = RESULTS / "final_fit_study.json"
#: Learning-rate factors of the fine-tune variants.
LR_FACTORS = (0.1, 0.3)
#: The variants in report order: key -> description.
VARIANTS = {
    "as_scored": "as scored (75% of the rows)",
    "current": "fine-tuned at `lr`, kept by the training-rows slack alone (the rule before)",
    "lr_x0.3": "fine-tuned at 0.3 `lr`",
    "lr_x0.1": "fine-tuned at 0.1 `lr`",
    "holdout_guard": "fine-tuned at `lr`, kept if also no lower on the hold-out rows",
    "default": "the default: the hold-out guard for regressors only",
}


def test_score(model, rounding, X_test, y_test) -> float:
    """The test score as the circuit computes it (simulated when Concrete rounds)."""
    if rounding is None:
        return float(model.score(X_test, y_test))
    compiled = copy.deepcopy(model)
    compiled.compile(rounding_threshold_bits=rounding)
    return float(compiled.score(X_test, y_test, fhe="simulate"))


def at_lr_factor(factor: float, fine_tune):
    """``search._fine_tune`` with the model's ``lr`` scaled by ``factor`` for its duration."""

    def fine_tune_at(model, X, y, epochs):
        lr = model.lr
        model.lr = lr * factor
        try:
            return fine_tune(model, X, y, epochs)
        finally:
            model.lr = lr

    return fine_tune_at


def capture(name: str, seed: int) -> dict:
    """One default fit of ``name`` at ``seed``, with its winner scored every way of :data:`VARIANTS`."""
    X_train, X_test, y_train, y_test = load(name)
    estimator_class = NeuralNetClassifier if DATASETS[name].task == CLS else NeuralNetRegressor
    record = {"dataset": name, "seed": seed}
    final_fit, fine_tune = search._final_fit, search._fine_tune

    def spy(winner, estimator, X, y, holdout, epochs):
        model = final_fit(winner, estimator, X, y, holdout, epochs)  # the production path, first
        rounding = winner.candidate.rounding_threshold_bits
        record["as_scored"] = test_score(winner.model, rounding, X_test, y_test)
        record["current"] = test_score(model, rounding, X_test, y_test)
        record["current_kept"] = winner.candidate.fine_tuned_on_all_data
        record["holdout_as_scored"] = float(winner.rows.score.mean())  # as the search scored it
        record["holdout_current"] = float(search._holdout_rows(model, X[holdout], y[holdout], rounding).score.mean())
        guard_keeps = record["current_kept"] and record["holdout_current"] >= record["holdout_as_scored"]
        record["holdout_guard"] = record["current"] if guard_keeps else record["as_scored"]
        record["holdout_guard_kept"] = guard_keeps
        for factor in LR_FACTORS:
            search._fine_tune = at_lr_factor(factor, fine_tune)
            try:
                variant = search.Scored(copy.copy(winner.candidate), winner.model, winner.rows)
                tuned = final_fit(variant, estimator, X, y, holdout, epochs)
            finally:
                search._fine_tune = fine_tune
            record[f"lr_x{factor}"] = test_score(tuned, rounding, X_test, y_test)
            record[f"lr_x{factor}_kept"] = variant.candidate.fine_tuned_on_all_data
            record[f"lr_x{factor}_latency"] = float(search.estimate_cost(tuned, rounding_threshold_bits=rounding).latency_s)
        record["latency"] = float(search.estimate_cost(model, rounding_threshold_bits=rounding).latency_s)
        record["scored_latency"] = float(winner.candidate.predicted_latency_s)
        record["holdout_guard_latency"] = record["latency"] if guard_keeps else record["scored_latency"]
        return model

    search._final_fit = spy
    guard, training_rule = search.FINAL_HOLDOUT_GUARD, search.FINAL_TRAINING_STANDARD_ERRORS
    search.FINAL_HOLDOUT_GUARD = dict.fromkeys(guard, False)
    search.FINAL_TRAINING_STANDARD_ERRORS = dict.fromkeys(training_rule)  # the slack alone (None)
    start = time.time()
    try:
        model = estimator_class(**{**BASE_PARAMS, "random_state": seed}).fit(X_train, y_train)
    finally:
        search._final_fit, search.FINAL_HOLDOUT_GUARD = final_fit, guard
        search.FINAL_TRAINING_STANDARD_ERRORS = training_rule
    record["final_model_test"] = float(model.score(X_test, y_test))
    record["fit_s"] = time.time() - start
    return record


def with_default(run: dict) -> dict:
    """``run`` with the ``default`` variant: what ``fit`` returns under ``search.FINAL_HOLDOUT_GUARD``."""
    estimator_type = "classifier" if DATASETS[run["dataset"]].task == CLS else "regressor"
    source = "holdout_guard" if search.FINAL_HOLDOUT_GUARD[estimator_type] else "current"
    latency = "holdout_guard_latency" if source == "holdout_guard" else "latency"
    return {**run, "default": run[source], "default_kept": run[f"{source}_kept"], "default_latency": run[latency]}


def report(runs: list[dict]) -> str:
    runs = [with_default(run) for run in runs if "as_scored" in run]  # fits too small for the search have no winner
    names = [name for name in DATASETS if any(run["dataset"] == name for run in runs)]
    seeds = sorted({run["seed"] for run in runs})
    mean = {key: float(np.mean([run[key] for run in runs])) for key in VARIANTS}
    lines = [
        "# The search's final fine-tune on all the training data",
        "",
        f"Generated by `benchmarks/final_fit_study.py` from {len(runs)} fits (the defaults at (3,3,10) on the sets of "
        f"`generalization.py`, its split, seeds {', '.join(map(str, seeds))}). Test score (accuracy, R²) of the search's "
        "winner: as the hold-out scored it, after the final fine-tune (`fit`'s model), and after the same fine-tune at a "
        "lower learning rate. A fine-tune that would make the circuit dearer or score lower on the training rows is not "
        "kept (the scored model is returned); 'kept' counts the fits where it was. The hold-out guard also refuses a "
        "fine-tune that scores lower than the winner on the hold-out rows, which it has trained on and the winner has not.",
        "",
        "| variant | mean test score | fits kept | lower than the rule before by > 0.01 | higher by > 0.01 | mean predicted latency (s) |",
        "|---|---|---|---|---|---|",
    ]
    for key, description in VARIANTS.items():
        kept = "-" if key == "as_scored" else f"{sum(bool(run[f'{key}_kept']) for run in runs)} / {len(runs)}"
        latency_key = {"as_scored": "scored_latency", "current": "latency"}.get(key, f"{key}_latency")
        lower = sum(run[key] < run["current"] - 0.01 for run in runs)
        higher = sum(run[key] > run["current"] + 0.01 for run in runs)
        lines.append(
            f"| {description} | {mean[key]:.4f} | {kept} | {lower} | {higher} | "
            f"{np.mean([run[latency_key] for run in runs]):.3f} |"
        )
    lines += ["", "Per data set, mean over the seeds (per seed in parentheses):", ""]
    lines += ["| data set | " + " | ".join(VARIANTS.values()) + " |", "|---|" + "---|" * len(VARIANTS)]
    for name in names:
        rows = sorted((run for run in runs if run["dataset"] == name), key=lambda run: run["seed"])
        cells = [f"{np.mean([r[key] for r in rows]):.3f} ({' / '.join(f'{r[key]:.3f}' for r in rows)})" for key in VARIANTS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = study_parser(__doc__.splitlines()[0], list(DATASETS), OUT)
    args = parser.parse_args()
    if args.report_only:
        runs = merged_runs(args.report_only, dataset_then_seed(list(DATASETS)), OUT)
    else:
        jobs = [(name, seed) for name in args.datasets for seed in args.seeds]
        runs = collect_runs(jobs, capture, args.out, json.dumps)
    (RESULTS / "final_fit_study.md").write_text(report(runs))
    print((RESULTS / "final_fit_study.md").read_text())


if __name__ == "__main__":
    main()
