"""The defaults through real preprocessing: categorical columns, missing values, sparse one-hot input.

``generalization.py`` measures the defaults on numeric arrays already standardized. Users bring data
frames with string categories and holes, and a ``ColumnTransformer`` in front of the estimator. This
benchmark runs the three mixed-type sets of ``fhe_estimators.benchmarking.tabular`` (churn, house
prices, credit: 7 columns each, 3-4 categorical, 5-20% missing in four) through
``tabular.preprocessor`` (median imputation with missing-value indicators and standardization for
numbers, a "missing" category and one-hot encoding for strings; house prices and credit come out as
scipy sparse matrices, which the estimator takes as they are), then compares, as
``generalization.py`` does and with its code, our defaults at (3,3,10) compiled on the training
data and FHE-simulated with the better of the float MLPs (32,) and (100,) on the same matrices.
Two more models on the same matrices give context: logistic regression (ridge for the
regressor, ``RidgeCV``) and histogram gradient boosting. Split: test_size=0.25, random_state=0,
stratified for the classifiers; the estimator's random_state varies (``--seeds``).

The variant "numbers unscaled" leaves churn's numeric columns on their own scale (income in the tens
of thousands beside one-hot columns): the mistake the estimator warns about at fit
(``validation.warn_if_unscaled``). The row records whether the warning fired and what it cost.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pipelines.py [--seeds 0 1 2] [--sets churn credit]
      [--out PATH]   (one file per process when split over several)
      .venv/bin/python benchmarks/pipelines.py --report-only PATH [PATH ...]
Writes benchmarks/results/pipelines.json (after every fit) and pipelines.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# First: generalization sets one torch/BLAS thread before numpy is imported.
from generalization import BASE_PARAMS, CLS, RESULTS, WITHIN, _fmt, describe_row, floats, ours_with_gap  # noqa: E402
from grid import failed_runs, record_cell  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor  # noqa: E402
from sklearn.linear_model import LogisticRegression, RidgeCV  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from fhe_estimators.benchmarking import describe_environment  # noqa: E402
from fhe_estimators.benchmarking.tabular import TABULAR_SETS, preprocessor  # noqa: E402

OUT = RESULTS / "pipelines.json"
#: (data set, variant) pairs measured; a variant names the preprocessing.
STANDARDIZED, UNSCALED = "standardized", "numbers unscaled"
RUNS = [(name, STANDARDIZED) for name in TABULAR_SETS] + [("churn", UNSCALED)]
UNSCALED_WARNING = "far from a standardized scale"


def prepared(name: str, variant: str) -> tuple[tuple, dict]:
    """The set's (X_train, X_test, y_train, y_test) after its preprocessing, and what describes it."""
    frame, y, task = TABULAR_SETS[name]()
    stratify = y if task == CLS else None
    frame_train, frame_test, y_train, y_test = train_test_split(
        frame, y, test_size=0.25, random_state=0, stratify=stratify
    )
    transform = preprocessor(frame, scale_numbers=variant == STANDARDIZED).fit(frame_train)
    X_train, X_test = transform.transform(frame_train), transform.transform(frame_test)
    description = {
        "dataset": name,
        "variant": variant,
        "task": task,
        "n_rows": len(frame),
        "categorical_columns": int(sum(dtype.kind not in "biuf" for dtype in frame.dtypes)),
        "missing_fraction": float(frame.isna().to_numpy().mean()),
        "n_features": int(X_train.shape[1]),
        "sparse_input": bool(sp.issparse(X_train)),
    }
    return (X_train, X_test, y_train, y_test), description


def context_models(task: str, data: tuple) -> dict:
    """Test scores of a linear model and gradient boosting on the same matrices (dense for boosting)."""
    X_train, X_test, y_train, y_test = data
    dense = [m.toarray() if sp.issparse(m) else m for m in (X_train, X_test)]
    linear = LogisticRegression(max_iter=5000) if task == CLS else RidgeCV()
    boosting = (HistGradientBoostingClassifier if task == CLS else HistGradientBoostingRegressor)(random_state=0)
    return {
        "linear": float(linear.fit(X_train, y_train).score(X_test, y_test)),
        "boosting": float(boosting.fit(dense[0], y_train).score(dense[1], y_test)),
    }


def ours_recording_warning(task: str, params: dict, data: tuple, best_float: float) -> dict:
    """``generalization.ours_with_gap``, and whether fit warned that columns were unscaled."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        row = ours_with_gap(task, params, data, best_float)
    row["warned_unscaled"] = any(UNSCALED_WARNING in str(warning.message) for warning in caught)
    return row


def run(seeds: list[int], sets: list[str], out: Path) -> list[dict]:
    environment = describe_environment()
    results: list[dict] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    for name, variant in [run for run in RUNS if run[0] in sets]:
        data, description = prepared(name, variant)
        task = description["task"]
        baselines = {**floats(task, data), **context_models(task, data)}
        for seed in seeds:
            row = {**description, **baselines, "seed": seed, "bits": [3, 3, 10], "environment": environment}
            params = {**BASE_PARAMS, "random_state": seed}
            run_ours = partial(ours_recording_warning, task, params, data, row["best_float"])
            record_cell(row, run_ours, f"{name} ({variant}) seed {seed}", describe_row, results, out)
    return results


# ---------------------------------------------------------------------------------------------- report
def report_table(results: list[dict]) -> list[str]:
    lines = [
        "| data set | preprocessing | task | rows | features after preprocessing | sparse input | linear | boosting "
        "| float (32,) | float (100,) | ours simulated, per seed | mean gap | seeds within | unscaled warning | fit s "
        "| predicted latency s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, variant), rows in _grouped(results).items():
        done = [row for row in rows if "error" not in row]
        first = rows[0]
        gaps = [row["gap"] for row in done]
        scores = " / ".join(format(row["simulated_score"], ".3f") for row in done) or "-"
        lines.append(
            f"| {name} | {variant} | {first['task']} | {first['n_rows']} | {first['n_features']} "
            f"| {'yes' if first['sparse_input'] else 'no'} | {first['linear']:.3f} | {first['boosting']:.3f} "
            f"| {first['float_32']:.3f} | {first['float_100']:.3f} "
            f"| {scores} "
            f"| {_fmt(np.mean(gaps) if gaps else None, '+.3f')} | {sum(g <= WITHIN for g in gaps)} / {len(done)} "
            f"| {_warned(done)} | {_fmt(np.mean([row['fit_s'] for row in done]) if done else None, '.0f')} "
            f"| {_fmt(np.mean([row['predicted_latency_s'] for row in done]) if done else None, '.2f')} |"
        )
    return lines


def _grouped(results: list[dict]) -> dict[tuple[str, str], list[dict]]:
    grouped: dict[tuple[str, str], list[dict]] = {}
    for row in results:
        grouped.setdefault((row["dataset"], row["variant"]), []).append(row)
    return grouped


def _warned(rows: list[dict]) -> str:
    warned = sum(row["warned_unscaled"] for row in rows)
    return "every fit" if rows and warned == len(rows) else "none" if warned == 0 else f"{warned} of {len(rows)}"


def write_report(results: list[dict], path: Path) -> None:
    environments = sorted({row["environment"] for row in results})
    seeds = sorted({row["seed"] for row in results})
    lines = [
        "# The defaults through real preprocessing (categorical columns, missing values)",
        "",
        f"Generated by `benchmarks/pipelines.py` on {'; '.join(environments)}. Torch ran with one thread.",
        "Data: `fhe_estimators.benchmarking.tabular` (synthetic data frames with string categories and missing "
        "values), preprocessed by `tabular.preprocessor` (fitted on the training part), test_size=0.25, "
        "random_state=0, stratified for classification. Scores on the test split: accuracy, R² for regression. "
        "Ours: defaults at (3,3,10), random_state per seed "
        f"({', '.join(map(str, seeds))}), compiled on the training data, FHE-simulated. Float: scikit-learn MLPs as in "
        "generalization.md; gap = best float − ours, per seed, averaged; within: seeds with gap ≤ "
        f"{WITHIN}. Linear (logistic regression / RidgeCV) and boosting (HistGradientBoosting, random_state=0) "
        "on the same matrices, for context. Unscaled warning: whether `fit` warned that columns are far from a "
        "standardized scale. Predicted latency: the cost model's seconds per encrypted sample.",
        "",
        *report_table(results),
        *failed_runs(results, lambda row: f"{row['variant']} seed {row['seed']}"),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--sets", nargs="+", default=list(TABULAR_SETS), choices=list(TABULAR_SETS))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--markdown", type=Path, default=RESULTS / "pipelines.md")
    parser.add_argument("--report-only", nargs="+", type=Path, help="JSON results files to report, without training")
    args = parser.parse_args()
    if args.report_only:
        results = [row for path in args.report_only for row in json.loads(path.read_text())]
    else:
        results = run(args.seeds, args.sets, args.out)
    write_report(results, args.markdown)


if __name__ == "__main__":
    main()
