"""How the tightening search's feasibility rule trades cost for accuracy (sets ``search.CONFIDENCE_TOLERANCE_FACTOR``).

The search keeps the cheapest candidate whose hold-out accuracy ties the best (``tighten_tolerance``
plus one paired standard error) and whose mean true-class probability ties the most confident of
those. This study records, for the 10 classification sets of ``generalization.py`` and several
seeds, every candidate the search scored (with the former rule): its hold-out rows, its predicted cost
(``search.objective_s``) and its test accuracy (FHE-simulated when it rounds, in the clear
otherwise; before the winner's final fine-tune). The report then applies each rule to the same
candidates and reports the chosen candidates' mean test accuracy and predicted cost.

Offline: a rule is applied to the candidates a search with the former rule (confidence within 1x
the tolerance, :data:`CAPTURE_FACTOR`) produced (the search's later
steps start from what its earlier steps chose, so a different rule could have tried slightly
different candidates).

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/search_rule_study.py [--seeds 0 1 2] [--datasets iris ...]
      .venv/bin/python benchmarks/search_rule_study.py --report-only
Writes benchmarks/results/search_rule_study.json (after every run) and search_rule_study.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
import warnings
from pathlib import Path
from types import SimpleNamespace

for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generalization import BASE_PARAMS, CLS, DATASETS, load  # noqa: E402

from fhe_estimators import NeuralNetClassifier, search  # noqa: E402
from fhe_estimators.holdout import HoldoutRows  # noqa: E402

warnings.filterwarnings("ignore")

RESULTS = Path("benchmarks/results")
OUT = RESULTS / "search_rule_study.json"
CLASSIFICATION_SETS = [name for name, spec in DATASETS.items() if spec.task == CLS]
TOLERANCE = 0.01  # the default tighten_tolerance
#: The search runs with the former rule while candidates are recorded, so that what is recorded
#: does not depend on the default under study.
CAPTURE_FACTOR = 1.0


# ---------------------------------------------------------------------------------------------- capture
def capture(name: str, seed: int) -> dict:
    """Fit the default classifier on ``name`` and record every candidate its search scored."""
    scored_lists = []
    original = search._cheapest

    def spy(scored, tolerance, standard_errors):
        scored_lists.append(scored)
        return original(scored, tolerance, standard_errors)

    X_train, X_test, y_train, y_test = load(name)
    default_factor, search.CONFIDENCE_TOLERANCE_FACTOR = search.CONFIDENCE_TOLERANCE_FACTOR, CAPTURE_FACTOR
    search._cheapest = spy
    try:
        model = NeuralNetClassifier(**{**BASE_PARAMS, "random_state": seed}).fit(X_train, y_train)
    finally:
        search._cheapest, search.CONFIDENCE_TOLERANCE_FACTOR = original, default_factor
    y_test_index = np.searchsorted(model.classes_, y_test)
    candidates = []
    for pair in scored_lists[-1]:  # the last call saw every candidate
        rounding = pair.candidate.rounding_threshold_bits
        if rounding:
            pair.model.compile(X_train, rounding_threshold_bits=rounding)
        proba = pair.model.predict_proba(X_test, fhe="simulate" if rounding else "disable")
        test = HoldoutRows.of_classification(y_test_index, proba)
        candidates.append(
            {
                **pair.candidate.as_dict(),
                "objective_s": search.objective_s(pair.candidate),
                "holdout_rows": {
                    "score": pair.rows.score.tolist(),
                    "confidence": pair.rows.confidence.tolist(),
                    "log_likelihood": pair.rows.log_likelihood.tolist(),
                },
                "test_score": float(test.score.mean()),
            }
        )
    return {"dataset": name, "seed": seed, "candidates": candidates}


# ---------------------------------------------------------------------------------------------- rules
def _feasible(candidates: list[dict], measure: str | None, tolerance: float, standard_errors: float) -> list[dict]:
    """``search._feasible`` on recorded candidates, with the second measure's tolerance and standard
    errors as given (the score's: the search's, ``TOLERANCE`` and one standard error)."""
    scored = []
    for c in candidates:
        rows = HoldoutRows(*(np.asarray(c["holdout_rows"][key]) for key in ("score", "confidence", "log_likelihood")))
        candidate = SimpleNamespace(holdout_score=float(rows.score.mean()), holdout_confidence=float(rows.confidence.mean()))
        scored.append(search.Scored(candidate, c, rows))
    feasible = search._feasible(scored, TOLERANCE, 1.0, measure, tolerance, standard_errors)
    return [pair.model for pair in feasible]


#: name -> (second measure, its tolerance, its standard errors); "confidence x1" was the rule before.
RULES = {
    "accuracy only": (None, 0.0, 0.0),
    **{f"confidence x{k}": ("confidence", k * TOLERANCE, 1.0) for k in (1, 2, 3, 4)},
    "confidence x1, 2 SE": ("confidence", TOLERANCE, 2.0),
    "confidence x2, 2 SE": ("confidence", 2 * TOLERANCE, 2.0),
    "log-likelihood x1": ("log_likelihood", TOLERANCE, 1.0),
    "log-likelihood x5": ("log_likelihood", 5 * TOLERANCE, 1.0),
}


def choose(candidates: list[dict], rule: str) -> dict:
    feasible = _feasible(candidates, *RULES[rule])
    return min(feasible, key=lambda c: (c["objective_s"], -float(np.mean(c["holdout_rows"]["score"]))))


def report(runs: list[dict]) -> str:
    runs = [run for run in runs if "error" not in run]
    chosen = {rule: [choose(run["candidates"], rule) for run in runs] for rule in RULES}
    reference = chosen["confidence x1"]
    current = f"confidence x{search.CONFIDENCE_TOLERANCE_FACTOR:g}"
    lines = [
        "# The search's feasibility rule: cost against accuracy",
        "",
        f"Generated by `benchmarks/search_rule_study.py` from {len(runs)} fits (the classification sets of "
        "`generalization.py`, (3,3,10), defaults, seeds as listed). Each rule is applied to the candidates the "
        "search scored with the former rule (`CAPTURE_FACTOR`); test accuracy is the chosen candidate's before the final fine-tune. "
        "Cost: predicted latency + key generation / 10 (`search.objective_s`). "
        f"The default is `{current}` (`search.CONFIDENCE_TOLERANCE_FACTOR`).",
        "",
        "| rule | mean test accuracy | mean cost s | geometric mean cost s | largest loss vs confidence x1 (fit) "
        "| largest gain vs confidence x1 (fit) |",
        "|---|---|---|---|---|---|",
    ]
    for rule, picks in chosen.items():
        accuracy = [c["test_score"] for c in picks]
        cost = [c["objective_s"] for c in picks]
        deltas = [(a["test_score"] - b["test_score"], f"{run['dataset']} {run['seed']}") for a, b, run in zip(picks, reference, runs)]
        loss, gain = min(deltas), max(deltas)
        lines.append(
            f"| {rule}{' (default)' if rule == current else ''} | {np.mean(accuracy):.4f} | {np.mean(cost):.3f} "
            f"| {np.exp(np.mean(np.log(cost))):.3f} | {loss[0]:+.3f} ({loss[1]}) | {gain[0]:+.3f} ({gain[1]}) |"
        )
    lines += ["", "Per fit, test accuracy / cost s of the chosen candidate:", ""]
    shown = list(dict.fromkeys(["accuracy only", "confidence x1", current, "confidence x3"]))
    lines += ["| data set | seed | candidates | " + " | ".join(shown) + " |", "|---|---|---|" + "---|" * len(shown)]
    for i, run in enumerate(runs):
        cells = [f"{chosen[rule][i]['test_score']:.3f} / {chosen[rule][i]['objective_s']:.3f}" for rule in shown]
        lines.append(f"| {run['dataset']} | {run['seed']} | {len(run['candidates'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=CLASSIFICATION_SETS, choices=CLASSIFICATION_SETS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from the JSON")
    args = parser.parse_args()
    if args.report_only:
        runs = json.loads(OUT.read_text())
    else:
        runs = []
        for seed in args.seeds:
            for name in args.datasets:
                try:
                    runs.append(capture(name, seed))
                except Exception as error:  # noqa: BLE001 (one failure must not lose the study)
                    traceback.print_exc()
                    runs.append({"dataset": name, "seed": seed, "error": f"{type(error).__name__}: {error}"[:300]})
                print(name, seed, "error" if "error" in runs[-1] else len(runs[-1]["candidates"]), flush=True)
                OUT.write_text(json.dumps(runs))
    (RESULTS / "search_rule_study.md").write_text(report(runs))
    print((RESULTS / "search_rule_study.md").read_text())


if __name__ == "__main__":
    main()
