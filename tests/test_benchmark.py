"""Smoke test of `fhe-estimators bench --quick` on one small data set and a small budget."""

import json

import pytest

from fhe_estimators.benchmarking import MODELS, parse_budget
from fhe_estimators.cli import main


def test_quick_bench_writes_results_and_pareto(tmp_path, capsys):
    # 2-bit weights/activations and a 7-bit accumulator keep every circuit cheap to execute.
    assert main(["bench", "--quick", "--datasets", "iris", "--budgets", "2,2,7", "--out", str(tmp_path)]) == 0
    assert "Results written to" in capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text())
    rows = {row["model"]: row for row in results["rows"]}
    assert set(rows) == set(MODELS[:3])  # the search-off reference runs at (3,3,10) only
    for model in MODELS[:2]:  # ours and Concrete ML's: compiled, executed, with a PBS floor
        row = rows[model]
        assert row["budget"] == "2,2,7" and 0 < row["max_bit_width"] <= 7
        assert row["pbs_count"] == sum(row["pbs_per_bit_width"].values()) > 0
        assert row["latency_s"] > 0 and row["keygen_s"] > 0 and row["floor_s"] > 0 and row["evaluation_key_mb"] > 0
    assert rows[MODELS[0]]["predicted_latency_s"] > 0  # the cost model's, printed beside the measured one
    assert rows[MODELS[0]]["execute_matches_simulate"] is True
    assert rows[MODELS[0]]["simulated_score"] > 0.8
    for model in MODELS[:2]:  # the floor: Σ over the circuit's parameter sets of fixed + PBS × seconds
        row = rows[model]
        floor = sum(e["fixed_seconds"] + e["count"] * e["seconds_per_pbs"] for e in row["pbs_by_parameters"])
        assert row["floor_s"] == pytest.approx(floor)
        assert sum(e["count"] for e in row["pbs_by_parameters"]) == row["pbs_count"]
    used = {",".join(map(str, e["parameters"])) for row in results["rows"] for e in row["pbs_by_parameters"]}
    assert used == set(results["pbs_seconds"])  # every parameter set that appears is priced
    markdown = (tmp_path / "RESULTS.md").read_text()
    assert "| iris | 2,2,7 | fhe_estimators |" in markdown and "CPUs" in markdown
    assert (tmp_path / "pareto.png").stat().st_size > 1000
    # The ratio table: ours / built-in latency and predicted / measured, from the rows themselves.
    ours, builtin = rows[MODELS[0]], rows[MODELS[1]]
    latency_ratio = ours["latency_s"] / builtin["latency_s"]
    predicted_ratio = ours["predicted_latency_s"] / ours["latency_s"]
    expected = f"| iris | 2,2,7 | {latency_ratio:.2f} | {predicted_ratio:.2f} |"
    assert expected in markdown
    # --redraw rewrites the report from results.json alone, identically.
    (tmp_path / "RESULTS.md").unlink()
    assert main(["bench", "--redraw", "--samples", "1", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "RESULTS.md").read_text() == markdown


@pytest.mark.parametrize("bad", ["3,3", "a,b,c", "0,3,10"])
def test_bench_rejects_unknown_budgets_and_datasets(bad, tmp_path):
    with pytest.raises(ValueError, match="Budget"):
        parse_budget(bad)
    with pytest.raises(ValueError, match="Unknown data sets"):
        main(["bench", "--datasets", "mnist", "--out", str(tmp_path)])


def test_generalization_benchmark_runs_and_reports(tmp_path):
    """benchmarks/generalization.py end to end on one small set, with per-task parameters."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "generalization.py"
    out, report = tmp_path / "wine.json", tmp_path / "generalization.md"
    params = {"tighten": False, "classification": {"max_epochs": 5}}
    command = [sys.executable, str(script), "--datasets", "wine", "--params", json.dumps(params)]
    command += ["--label", "quick", "--out", str(out), "--markdown", str(report)]
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    [row] = json.loads(out.read_text())
    assert row["dataset"] == "wine" and row["label"] == "quick" and "error" not in row and row["params"] == params
    assert row["gap"] == pytest.approx(row["best_float"] - row["simulated_score"])
    assert row["best_float"] == max(row["float_32"], row["float_100"])
    # wine's 34 hold-out rows are too few to compare widths: "auto" trains 32 neurons, no scores
    assert row["hidden_layer_sizes"] == [32] and row["hidden_layer_sizes_scores"] == {}
    # the hold-out's choices are recorded: the score of every penalty trained (weakest first, until
    # past the best; dense: too few rows for sparse layers)
    from fhe_estimators.holdout import AUTO_WEIGHT_DECAYS

    tried = list(row["regularization_scores"])
    assert tried and tried == [f"{decay:g},1" for decay in AUTO_WEIGHT_DECAYS[: len(tried)]]
    assert f"{row['weight_decay']:g},{row['first_layer_density']:g}" in row["regularization_scores"]
    assert "wine" in report.read_text() and "quick" in report.read_text()
    assert f"| {row['predicted_latency_s']:.2f} | 32 |" in report.read_text()


def test_search_rule_study_applies_the_searchs_rule(monkeypatch):
    """The study's offline rule at the default factor picks what the search's own rule picks."""
    import sys
    from pathlib import Path

    import numpy as np

    from fhe_estimators import holdout, search

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import search_rule_study as study

    rng = np.random.default_rng(0)
    candidates, scored = [], []
    for latency in (2.0, 1.0, 0.5, 0.25):
        correct = (rng.random(40) < 0.9).astype(float)
        confidence = np.clip(rng.normal(0.85, 0.1, 40), 0, 1)
        rows = holdout.HoldoutRows(correct, confidence, np.log(confidence))
        candidate = search.Candidate(10, 0.0, None, correct.mean(), confidence.mean(), latency, 1)
        scored.append(search.Scored(candidate, None, rows))
        candidates.append(
            {
                "objective_s": search.objective_s(candidate),
                "latency": latency,
                "holdout_rows": {"score": correct, "confidence": confidence, "log_likelihood": np.log(confidence)},
            }
        )
    for factor in (1.0, 3.0):
        monkeypatch.setattr(search, "CONFIDENCE_TOLERANCE_FACTOR", factor)
        expected = search._cheapest(scored, study.TOLERANCE, 1.0).candidate.predicted_latency_s
        assert study.choose(candidates, f"confidence x{factor:g}")["latency"] == expected
    # The report names the default rule and one row per rule.
    monkeypatch.undo()
    runs = [{"dataset": "toy", "seed": 0, "candidates": [{**c, "test_score": 0.9} for c in candidates]}]
    text = study.report(runs)
    assert f"| confidence x{search.CONFIDENCE_TOLERANCE_FACTOR:g} (default) |" in text
    assert sum(line.startswith("| ") for line in text.splitlines()) >= len(study.RULES)


def test_sparse_rule_study_applies_the_library_rule():
    """A sparse first layer that wins by one hold-out row is taken by the outright rule only; one
    that wins by many is taken at one standard error too, and the report marks the default."""
    import sys
    from pathlib import Path

    from fhe_estimators import holdout

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import sparse_rule_study as study

    def setting(decay, density, misses, test):
        score = [0.0] * misses + [1.0] * (100 - misses)
        return {"weight_decay": decay, "first_layer_density": density, "test_score": test,
                "holdout_rows": {"score": score, "log_likelihood": [-0.1] * 100}}

    dense = [setting(decay, 1.0, 10, 0.90) for decay in holdout.AUTO_WEIGHT_DECAYS]
    by_one_row = {"dataset": "toy", "seed": 0, "settings": [*dense, setting(1e-4, 0.25, 9, 0.80)]}
    by_ten_rows = {"dataset": "toy", "seed": 1, "settings": [*dense, setting(1e-4, 0.25, 0, 0.95)]}
    assert study.choose(by_one_row, "weakest", 0.0)["test_score"] == 0.80
    assert study.choose(by_one_row, "both", 1.0)["test_score"] == 0.90
    assert study.choose(by_ten_rows, "both", 1.0)["test_score"] == 0.95
    assert study.choose(by_ten_rows, None, 0.0)["test_score"] == 0.90  # dense only
    assert holdout.SPARSE_STANDARD_ERRORS == 1.0  # restored after each rule
    text = study.report([by_one_row, by_ten_rows])
    assert "| both, 1 SE (default) |" in text and "| weakest, 0 SE |" in text


def test_capacity_study_measures_and_reports(monkeypatch):
    """One short fit per configuration: the row records what the fitted network needs (its layers'
    accumulator widths within the budget, the cost model's latency), and the report's mean and
    worst gap are computed from those rows against the float anchor."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import capacity_study as study

    quick = {"tighten": False, "max_epochs": 3, "optimizer__weight_decay": 1e-4}
    configurations = {
        "narrow": {**quick, "hidden_layer_sizes": (4,)},
        "wide": {**quick, "hidden_layer_sizes": (8,), "n_accum_bits": 12},
    }
    monkeypatch.setattr(study, "CONFIGURATIONS", configurations)
    runs = [study.measure("wine", label, seed) for label in configurations for seed in (0, 1)]
    for run, hidden, budget in zip(runs, [4, 4, 8, 8], [10, 10, 12, 12]):
        assert run["hidden_layer_sizes"] == [hidden] and len(run["accumulator_bits"]) == 2
        assert max(run["accumulator_bits"]) <= budget and 0 <= run["test_score"] <= 1
        assert run["predicted_latency_s"] > 0 and run["predicted_pbs_count"] >= hidden
    text = study.report(runs, {"float_32": 0.5, "float_100": 0.9, "best_float": 0.9})
    narrow = [run["test_score"] for run in runs[:2]]
    row = next(line for line in text.splitlines() if line.startswith("| narrow |"))
    assert f"| {sum(narrow) / 2:.3f} | {0.9 - min(narrow):.3f} |" in row
    assert "| wide |" in text and "(32,) 0.500, (100,) 0.900" in text


def test_final_fit_study_scores_the_winner_every_way_and_leaves_fit_alone(monkeypatch):
    """One short default fit: the study's ``current`` is the score of the model ``fit`` returned (the
    variants run on copies, after it), each variant has its score and whether it was kept, and the
    report has one row per variant."""
    import sys
    from pathlib import Path

    from fhe_estimators import search

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import final_fit_study as study

    quick = {"max_epochs": 5, "hidden_layer_sizes": (4,), "optimizer__weight_decay": 1e-4, "tighten_tolerance": 0.5}
    monkeypatch.setattr(study, "BASE_PARAMS", {**study.BASE_PARAMS, **quick})
    monkeypatch.setattr(search, "ROUNDINGS", ())  # no Concrete rounding: clear scores equal simulated ones
    fine_tune = search._fine_tune
    record = study.capture("wine", 0)
    assert search._fine_tune is fine_tune and search._final_fit.__name__ == "_final_fit"  # restored
    assert search.FINAL_HOLDOUT_GUARD["regressor"] is True  # the guard is off for the study's fit only
    for key in set(study.VARIANTS) - {"default"}:
        assert 0 <= record[key] <= 1
    assert all(isinstance(record[f"lr_x{factor}_kept"], bool) for factor in study.LR_FACTORS)
    assert record["current"] == record["final_model_test"]  # the model fit returned
    # The guard keeps fit's fine-tune only where fit kept it and the hold-out rows did not lose.
    guard_keeps = record["current_kept"] and record["holdout_current"] >= record["holdout_as_scored"]
    assert record["holdout_guard_kept"] is guard_keeps
    assert record["holdout_guard"] == (record["current"] if guard_keeps else record["as_scored"])
    assert study.with_default(record)["default"] == record["current"]  # a classifier: no guard
    regression = {**record, "dataset": "friedman2", "holdout_guard": 0.5}
    assert study.with_default(regression)["default"] == 0.5
    text = study.report([record, {**record, "seed": 1}])
    assert all(f"| {description} |" in text for description in study.VARIANTS.values())
    assert "| wine |" in text


def test_input_width_rule_study_applies_the_library_rule():
    """A 5-bit network that wins the hold-out by one row of 100 is kept at 0 standard errors only;
    one that wins by ten rows is kept at the default too, and the report marks the default."""
    import sys
    from pathlib import Path

    from fhe_estimators import holdout

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import input_width_rule_study as study

    def network(bits, misses, test):
        score = [0.0] * misses + [1.0] * (100 - misses)
        return {"input_bits": bits, "weight_decay": 0.01, "first_layer_density": 1.0, "test_score": test,
                "holdout_rows": {"score": score, "log_likelihood": [-0.1] * 100}}

    saved = holdout.FINER_INPUT_STANDARD_ERRORS
    by_one_row = {"dataset": "toy", "seed": 0, "networks": [network(3, 10, 0.90), network(5, 9, 0.80)]}
    by_ten_rows = {"dataset": "toy", "seed": 1, "networks": [network(3, 10, 0.90), network(5, 0, 0.95)]}
    assert study.choose(by_one_row, 0.0)["test_score"] == 0.80
    assert study.choose(by_one_row, 1.0)["test_score"] == 0.90
    assert study.choose(by_ten_rows, 1.0)["test_score"] == 0.95
    assert holdout.FINER_INPUT_STANDARD_ERRORS == saved  # restored after each rule
    text = study.report([by_one_row, by_ten_rows, {"dataset": "toy", "seed": 2, "networks": []}])
    rows = {line.split(" |")[0].removeprefix("| ").removesuffix(" (default)"): line for line in text.splitlines()}
    assert "| 0.9250 | 1 / 2 |" in rows["beat by > 1 SE"] and "| 0.8750 | 2 / 2 |" in rows["beat by > 0 SE"]
    assert "| 0.8750 | 2 / 2 |" in rows["not beaten by > 1 SE"]
    assert f"| beat by > {saved:g} SE (default) |" in text
    end_to_end = [{"dataset": "toy", "seed": 0, "standard_errors": 1.0, "test_score": 0.90, "predicted_latency_s": 1.0},
                  {"dataset": "toy", "seed": 0, "standard_errors": saved, "test_score": 0.95, "predicted_latency_s": 2.0}]
    assert "| toy | 0 | 0.900, 1.00 s | 0.950, 2.00 s | +0.050 |" in study.report([by_one_row], end_to_end)


def test_study_runs_are_saved_after_each_job_and_merged_in_report_order(tmp_path, capsys):
    """A study cut short keeps what it finished; files of processes run side by side merge into one,
    sorted as the report lists them."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import grid

    first, second = tmp_path / "first.json", tmp_path / "second.json"

    def capture(name, seed):
        if name == "cut":
            assert json.loads(first.read_text()) == [{"dataset": "b", "seed": 1}]  # saved before the next job
            raise KeyboardInterrupt
        return {"dataset": name, "seed": seed}

    with pytest.raises(KeyboardInterrupt):
        grid.collect_runs([("b", 1), ("cut", 0)], capture, first, lambda run: f"done {run['dataset']}")
    assert "done b" in capsys.readouterr().out
    grid.collect_runs([("b", 0), ("a", 2)], capture, second, str)
    merged = grid.merged_runs([first, second], grid.dataset_then_seed(["a", "b"]), tmp_path / "all.json")
    assert merged == [{"dataset": "a", "seed": 2}, {"dataset": "b", "seed": 0}, {"dataset": "b", "seed": 1}]
    assert json.loads((tmp_path / "all.json").read_text()) == merged


def test_fit_time_anchor_times_both_versions_each_in_its_own_package(tmp_path):
    """benchmarks/fit_time_anchor.py end to end on one small set, with this commit as the anchor:
    each child imports the package it is given (the script checks it), and the ratio is current / anchor."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "fit_time_anchor.py"
    out, report = tmp_path / "anchor.json", tmp_path / "anchor.md"
    params = {"tighten": False, "max_epochs": 3, "optimizer__weight_decay": 1e-4}
    command = [sys.executable, str(script), "--datasets", "iris", "--anchor", "HEAD", "--params", json.dumps(params)]
    command += ["--out", str(out), "--markdown", str(report)]
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    [row] = json.loads(out.read_text())
    assert row["dataset"] == "iris" and row["params"] == params and row["anchor_commit"] == row["current_commit"]
    assert row["ratio"] == pytest.approx(row["current_fit_s"] / row["anchor_fit_s"])
    assert row["current_fit_s"] > 0 and 0 <= row["anchor_test_score"] <= 1
    assert f"| iris | classification | 150 | {row['anchor_fit_s']:.1f} |" in report.read_text()


def test_step_speed_times_both_paths_and_checks_they_agree(tmp_path):
    """benchmarks/step_speed.py end to end with few steps and rows: both paths timed, and the fast
    ones give the same parameters and the same simulated outputs as the paths they replace."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "step_speed.py"
    spec = importlib.util.spec_from_file_location("step_speed", path)
    step_speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(step_speed)
    report = tmp_path / "step_speed.md"
    text = step_speed.main(["--steps", "8", "--rows", "20", "--markdown", str(report)])
    assert report.read_text() == text
    assert text.count("| True |") == len(step_speed.NETWORKS)  # same parameters after, per network
    assert "same outputs: True" in text
