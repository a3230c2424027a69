"""The README's demo and the example scripts run end to end (real encryption: a minute)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from fhe_estimators.budget import omega
from fhe_estimators.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.fhe_execute
def test_demo_reports_pruning_accuracy_and_encrypted_predictions(capsys):
    assert main(["demo", "--samples", "1"]) == 0
    out = capsys.readouterr().out
    report = re.search(r"Pruning report \(Ω = (\d+), accumulator budget (\d+) bits chosen within n_accum_bits = 10\)", out)
    omega_shown, budget = int(report.group(1)), int(report.group(2))
    assert budget <= 10 and omega_shown == omega(budget, 3, 3)
    bits = re.search(r"Worst-case accumulator bits per layer: \[([\d, ]+)\]", out).group(1)
    assert all(int(b) <= budget for b in bits.split(","))
    simulated = float(re.search(r"Accuracy in FHE simulation:\s+([\d.]+)", out).group(1))
    assert simulated >= 0.93
    encrypted, expected = re.search(r"sample 0: encrypted -> (\d) \(simulated (\d)", out).groups()
    assert encrypted == expected


@pytest.mark.fhe_execute
def test_quickstart_example_runs():
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")], capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "accuracy in FHE simulation:" in result.stdout
    assert "two encrypted predictions:" in result.stdout


def test_grid_search_example_runs():
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "grid_search.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = re.findall(r"^\s+(\d+) \|\s+[\d.]+ \|\s+\(\d+,\) \| ([\d.]+)$", result.stdout, flags=re.MULTILINE)
    assert [bits for bits, _ in rows] == ["7", "10"]
    budget = re.search(r"worst-case accumulators \[([\d, ]+)\] bits \(budget (\d+)\)", result.stdout)
    assert max(int(b) for b in budget.group(1).split(",")) <= int(budget.group(2))
    assert float(re.search(r"test accuracy in FHE simulation: ([\d.]+)", result.stdout).group(1)) > 0.9


@pytest.mark.fhe_execute
def test_client_server_example_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "client_server.py"), "--rows", "1", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "decrypted equals simulation: True" in result.stdout
    assert sorted(path.name for path in (tmp_path / "model" / "server").iterdir()) == ["estimator.json", "server.zip"]
    assert (tmp_path / "evaluation_keys.bin").stat().st_size > 1e6 and (tmp_path / "output_0.bin").exists()


def run_example(name: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run ``examples/<name>`` with this interpreter; fails the test on a non-zero exit."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_fastest_within_tolerance_example_runs():
    out = run_example("fastest_within_tolerance.py", "--quick").stdout
    assert "chosen: {" in out
    assert float(out.rsplit("test accuracy in FHE simulation: ", 1)[1]) > 0.9


@pytest.mark.fhe_execute
def test_remote_client_example_runs():
    out = run_example("remote_client.py", "--rows", "2", timeout=600).stdout
    assert "decrypted equals simulation: True" in out and "[service] stopped" in out


@pytest.mark.fhe_execute
def test_tabular_pipeline_example_runs():
    result = run_example("tabular_pipeline.py", "--rows", "1", "--samples", "600")
    assert "the network reads" in result.stdout and "csr_matrix" in result.stdout
    clear, simulated = (float(x) for x in re.findall(r"accuracy, fhe='\w+': ([\d.]+)", result.stdout))
    assert abs(clear - simulated) <= 0.02 and clear > 0.6
    encrypted, simulated_row = re.search(r"encrypted predictions: \[(\d)\], simulated: \[(\d)\]", result.stdout).groups()
    assert encrypted == simulated_row
