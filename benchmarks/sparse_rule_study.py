"""When a sparse first layer should replace the dense choice (sets ``holdout.SPARSE_STANDARD_ERRORS``).

``first_layer_density="auto"`` trains, on the train part of the internal split, one network per
penalty (dense first layer), then sparse first layers (a quarter and an eighth of the inputs kept)
at the weakest penalty and at the one the dense networks chose. This study records, for every data
set of ``generalization.py`` whose hold-out is large enough for sparse layers to be tried
(``holdout.AUTO_SPARSE_MIN_HOLDOUT``) and several seeds, each of those networks' hold-out rows and
its test score (in the clear: plain fits on the train part, no search, no final fit on all data).
The report then applies each rule with the library's own ``holdout.choose_regularization``: which
penalties the sparse layers are tried at, and by how many paired standard errors one must beat
every dense setting.

Offline and a proxy: the estimator then searches a cheaper circuit from the chosen network and
fine-tunes it on all the data, which moves test scores by a point or two either way;
``generalization.py`` measures that end to end.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sparse_rule_study.py [--seeds 0 1 2 3] [--datasets moons ...]
      [--out PATH]   (one file per process when split over several)
      .venv/bin/python benchmarks/sparse_rule_study.py --report-only PATH [PATH ...]
Writes benchmarks/results/sparse_rule_study.json (after every run) and sparse_rule_study.md.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# First: generalization sets one torch/BLAS thread before numpy is imported.
from generalization import BASE_PARAMS, CLS, DATASETS, load  # noqa: E402
from grid import collect_runs, dataset_then_seed, merged_runs, study_parser  # noqa: E402

import numpy as np  # noqa: E402

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor, holdout, regularization, validation  # noqa: E402
from fhe_estimators.regularization import Regularization  # noqa: E402

warnings.filterwarnings("ignore")

RESULTS = Path("benchmarks/results")
OUT = RESULTS / "sparse_rule_study.json"
#: Which penalties the sparse layers are tried at: the weakest, the dense choice, or both (the default).
PENALTIES = ("weakest", "chosen", "both")
STANDARD_ERRORS = (0.0, 0.5, 1.0, 1.5, 2.0)


def eligible_sets() -> list[str]:
    """The data sets on whose hold-out sparse first layers are tried."""
    names = []
    for name in DATASETS:
        X_train, _, y_train, _ = load(name)
        _, rows = holdout.internal_split(np.asarray(y_train), DATASETS[name].task == CLS)
        if len(rows) >= holdout.AUTO_SPARSE_MIN_HOLDOUT:
            names.append(name)
    return names


# ---------------------------------------------------------------------------------------------- capture
def capture(name: str, seed: int) -> dict:
    """Every setting "auto" tries on ``name``: its hold-out rows and its test score."""
    X_train, X_test, y_train, y_test = load(name)
    estimator_class = NeuralNetClassifier if DATASETS[name].task == CLS else NeuralNetRegressor
    estimator = estimator_class(**{**BASE_PARAMS, "random_state": seed, "first_layer_density": "auto"})
    estimator._validate_hyperparameters()
    X = estimator._validate_X(X_train, reset=True)
    y = estimator._fit_targets(validation.check_y_given(y_train), len(X), None)
    train, rows = holdout.internal_split(y, estimator._estimator_type == "classifier")
    settings = {}
    score_on_holdout = regularization.holdout_rows

    def recording(model, X_rows, y_rows):  # each setting fit_best_on_holdout tries, in its order
        held = score_on_holdout(model, X_rows, y_rows)
        setting = Regularization(model.weight_decay_, model.first_layer_density_)
        settings[setting] = {"score": held.score, "log_likelihood": held.log_likelihood, "test": model.score(X_test, y_test)}
        return held

    regularization.holdout_rows = recording
    try:
        regularization.fit_best_on_holdout(estimator, X, y, train, rows)
    finally:
        regularization.holdout_rows = score_on_holdout
    return {
        "dataset": name,
        "seed": seed,
        "settings": [
            {"weight_decay": s.weight_decay, "first_layer_density": s.first_layer_density, "test_score": v["test"],
             "holdout_rows": {"score": v["score"].tolist(), "log_likelihood": v["log_likelihood"].tolist()}}
            for s, v in settings.items()
        ],
    }


def _rows(settings: dict) -> dict:
    return {s: holdout.HoldoutRows(np.asarray(v["score"]), np.asarray(v["score"]), np.asarray(v["log_likelihood"])) for s, v in settings.items()}


def _dense_choice(settings: dict) -> Regularization:
    return holdout.choose_penalty(_rows({s: v for s, v in settings.items() if s.first_layer_density == 1.0}))


# ---------------------------------------------------------------------------------------------- rules
def choose(run: dict, penalties: str | None, standard_errors: float) -> dict:
    """The setting a rule picks: ``penalties`` None for dense only."""
    settings = {Regularization(s["weight_decay"], s["first_layer_density"]): s for s in run["settings"]}
    dense_choice = _dense_choice({s: v["holdout_rows"] for s, v in settings.items()})
    allowed = {"weakest": {min(holdout.AUTO_WEIGHT_DECAYS)}, "chosen": {dense_choice.weight_decay}}
    allowed["both"] = allowed["weakest"] | allowed["chosen"]
    kept = {
        s: v["holdout_rows"]
        for s, v in settings.items()
        if s.first_layer_density == 1.0 or (penalties is not None and s.weight_decay in allowed[penalties])
    }
    default_errors, holdout.SPARSE_STANDARD_ERRORS = holdout.SPARSE_STANDARD_ERRORS, standard_errors
    try:
        chosen = holdout.choose_regularization(_rows(kept))[0]
    finally:
        holdout.SPARSE_STANDARD_ERRORS = default_errors
    return settings[chosen]


def report(runs: list[dict]) -> str:
    rules = {"dense only": (None, 0.0)}
    rules.update({f"{p}, {k:g} SE": (p, k) for p in PENALTIES for k in STANDARD_ERRORS})
    current = f"both, {holdout.SPARSE_STANDARD_ERRORS:g} SE"
    picks = {rule: [choose(run, *args) for run in runs] for rule, args in rules.items()}
    dense = picks["dense only"]
    lines = [
        "# When a sparse first layer replaces the dense choice",
        "",
        f"Generated by `benchmarks/sparse_rule_study.py` from {len(runs)} fits (the data sets of `generalization.py` "
        f"with a hold-out of {holdout.AUTO_SPARSE_MIN_HOLDOUT}+ rows, (3,3,10), seeds as listed). A rule is "
        "`penalties, k SE`: sparse first layers tried at the weakest penalty, the dense choice's, or both, and "
        "chosen only when they beat every dense setting by more than k paired standard errors on the hold-out. "
        "Test score (accuracy or R²) of the chosen network fitted on the train part, in the clear, before the "
        f"search and the final fit on all data. The default is `{current}` (`holdout.SPARSE_STANDARD_ERRORS`).",
        "",
        "| rule | mean test score | mean change vs dense only | largest loss (fit) | largest gain (fit) | fits changed |",
        "|---|---|---|---|---|---|",
    ]
    for rule, chosen in picks.items():
        deltas = [(a["test_score"] - b["test_score"], f"{r['dataset']} {r['seed']}") for a, b, r in zip(chosen, dense, runs)]
        changed = sum(a is not b for a, b in zip(chosen, dense))
        lines.append(
            f"| {rule}{' (default)' if rule == current else ''} | {np.mean([c['test_score'] for c in chosen]):.4f} "
            f"| {np.mean([d for d, _ in deltas]):+.4f} | {min(deltas)[0]:+.3f} ({min(deltas)[1]}) "
            f"| {max(deltas)[0]:+.3f} ({max(deltas)[1]}) | {changed} |"
        )
    shown = ["dense only", "weakest, 0 SE", current]
    lines += ["", "Per fit, test score (penalty, density) of the chosen network:", ""]
    lines += ["| data set | seed | " + " | ".join(shown) + " |", "|---|---|" + "---|" * len(shown)]
    for i, run in enumerate(runs):
        cells = [f"{c['test_score']:.3f} ({c['weight_decay']:g}, {c['first_layer_density']:g})" for c in (picks[r][i] for r in shown)]
        lines.append(f"| {run['dataset']} | {run['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = study_parser(__doc__.splitlines()[0], list(DATASETS), OUT, every_set_by_default=False)
    args = parser.parse_args()
    if args.report_only:
        runs = merged_runs(args.report_only, dataset_then_seed(list(DATASETS)), OUT, indent=None)
    else:
        jobs = [(name, seed) for seed in args.seeds for name in args.datasets or eligible_sets()]
        progress = lambda run: f"{run['dataset']} {run['seed']} {len(run['settings'])}"  # noqa: E731
        runs = collect_runs(jobs, capture, args.out, progress, indent=None)
    (RESULTS / "sparse_rule_study.md").write_text(report(runs))
    print((RESULTS / "sparse_rule_study.md").read_text())


if __name__ == "__main__":
    main()
