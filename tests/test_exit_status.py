"""A failing program, or a test run with failures, must not exit with status 0.

Once a circuit has run, Concrete's atexit handler would end every process with
status 0 (see ``fhe_estimators/process_exit.py``); each test here runs a fresh
interpreter after a real encrypted prediction and reads the status it returns.
The controls put Concrete's handler back, to show the tests catch the problem.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fhe_estimators
from fhe_estimators import NeuralNetClassifier
from fhe_estimators import runtime
from fhe_estimators.cli import main

ROOT = Path(__file__).resolve().parents[1]
PUT_BACK_CONCRETE_HANDLER = "atexit.register(concrete.compiler._terminate_df_parallelization)"

TINY_ENCRYPTED_RUN = """
import atexit
import concrete.compiler
import numpy as np
from sklearn.datasets import load_iris
from sklearn.preprocessing import StandardScaler

import fhe_estimators

X, y = load_iris(return_X_y=True)
rows = np.random.RandomState(0).permutation(len(X))[:40]
X, y = StandardScaler().fit_transform(X[rows]), y[rows]
model = fhe_estimators.NeuralNetClassifier(
    hidden_layer_sizes=(3,), n_w_bits=2, n_a_bits=2, n_accum_bits=6, max_epochs=5, random_state=0
).fit(X, y)
model.compile()
"""

SCRIPT = """
import atexit, sys
atexit.register(print, "handler registered before Concrete ran")  # Concrete's exit(0) would skip it
{tiny_encrypted_run}
{put_back}
print("encrypted prediction:", model.predict(X[:1], fhe="execute"), flush=True)
if sys.argv[1] == "exit":
    sys.exit(3)
raise RuntimeError("deliberate failure after an encrypted prediction")
"""

TEST_FILE = """
import pytest
{tiny_encrypted_run}

def test_encrypted_prediction():
    assert model.predict(X[:1], fhe="execute").shape == (1,)

def test_deliberate_failure():
    assert False, "deliberate failure"
"""


def run_python(args, cwd, timeout=600):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def write_script(tmp_path, put_back: bool) -> Path:
    script = tmp_path / "encrypted_then_fail.py"
    script.write_text(
        SCRIPT.format(tiny_encrypted_run=TINY_ENCRYPTED_RUN, put_back=PUT_BACK_CONCRETE_HANDLER if put_back else "")
    )
    return script


@pytest.mark.fhe_execute
def test_sys_exit_status_survives_an_encrypted_run(tmp_path):
    result = run_python([str(write_script(tmp_path, put_back=False)), "exit"], tmp_path)
    assert "encrypted prediction:" in result.stdout, result.stderr[-2000:]
    assert result.returncode == 3, result.stderr[-2000:]
    assert "handler registered before Concrete ran" in result.stdout  # interpreter shutdown ran in full


@pytest.mark.fhe_execute
def test_status_is_lost_with_concretes_handler_control(tmp_path):
    # The same script with Concrete's handler put back: the test above would fail without the fix.
    result = run_python([str(write_script(tmp_path, put_back=True)), "exit"], tmp_path)
    assert "encrypted prediction:" in result.stdout, result.stderr[-2000:]
    assert result.returncode == 0
    assert "handler registered before Concrete ran" not in result.stdout


@pytest.mark.fhe_execute
def test_uncaught_exception_after_an_encrypted_run_exits_1(tmp_path):
    result = run_python([str(write_script(tmp_path, put_back=False)), "raise"], tmp_path)
    assert "encrypted prediction:" in result.stdout, result.stderr[-2000:]
    assert "RuntimeError: deliberate failure after an encrypted prediction" in result.stderr
    assert result.returncode == 1


@pytest.mark.fhe_execute
@pytest.mark.parametrize("put_back", [False, True], ids=["fixed", "concretes_handler_control"])
def test_pytest_run_with_a_failed_test_exit_status(tmp_path, put_back):
    """Exit status 1 for one failed test after an encrypted one; 0 (the bug) with Concrete's handler back."""
    (tmp_path / "test_encrypted_and_failing.py").write_text(TEST_FILE.format(tiny_encrypted_run=TINY_ENCRYPTED_RUN))
    if put_back:
        conftest = f"import atexit\nimport concrete.compiler\nimport fhe_estimators\n{PUT_BACK_CONCRETE_HANDLER}\n"
        (tmp_path / "conftest.py").write_text(conftest)
    result = run_python(["-m", "pytest", "-q", "-p", "no:cacheprovider", "test_encrypted_and_failing.py"], tmp_path)
    assert "1 failed, 1 passed" in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.returncode == (0 if put_back else 1)


@pytest.mark.fhe_execute
def test_keep_exit_status_removes_every_registration_and_is_idempotent(tmp_path):
    script = tmp_path / "registered_twice.py"
    script.write_text(
        textwrap.dedent(
            """
            import atexit, sys
            import concrete.compiler
            from concrete import fhe
            from fhe_estimators.process_exit import keep_exit_status

            atexit.register(concrete.compiler._terminate_df_parallelization)
            atexit.register(concrete.compiler._terminate_df_parallelization)
            keep_exit_status()
            keep_exit_status()

            @fhe.compiler({"x": "encrypted"})
            def add_one(x):
                return x + 1

            print("encrypted:", add_one.compile(range(8)).encrypt_run_decrypt(3), flush=True)
            sys.exit(3)
            """
        )
    )
    result = run_python([str(script)], tmp_path)
    assert "encrypted: 4" in result.stdout, result.stderr[-2000:]
    assert result.returncode == 3


def test_demo_fails_when_an_encrypted_prediction_differs(monkeypatch, capsys):
    """The demo on a tiny model, with a fake encrypted run that agrees with simulation, then does not."""
    from sklearn import datasets

    monkeypatch.setattr(datasets, "load_breast_cancer", datasets.load_iris)
    monkeypatch.setattr(
        fhe_estimators,
        "NeuralNetClassifier",
        lambda **_: NeuralNetClassifier(
            hidden_layer_sizes=(3,), n_w_bits=2, n_a_bits=2, n_accum_bits=6, max_epochs=5, random_state=0
        ),
    )
    monkeypatch.setattr(runtime, "keygen", lambda quantized: 0.0)
    wrong = False

    def fake_encrypted_run(quantized, row):
        outputs = runtime.run(quantized, np.asarray(row)[None, :], "simulate")
        if wrong:  # a one-hot on another class than the simulated one
            label = int(np.argmax(outputs))
            outputs = np.eye(outputs.shape[1])[[(label + 1) % outputs.shape[1]]]
        return runtime.EncryptedRun(outputs, 0.0, 0.0, 0.0)

    monkeypatch.setattr(runtime, "run_encrypted_steps", fake_encrypted_run)
    assert main(["demo", "--samples", "2"]) == 0
    assert capsys.readouterr().err == ""

    wrong = True
    assert main(["demo", "--samples", "2"]) == 1
    err = capsys.readouterr().err
    assert "encrypted prediction differs from the simulated one for sample(s) [0, 1] of 2" in err


def test_cli_program_exits_nonzero_with_a_one_line_error(tmp_path):
    bench_mnist = ["bench", "--datasets", "mnist", "--out", str(tmp_path)]
    result = run_python(["-m", "fhe_estimators.cli", *bench_mnist], ROOT)
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("fhe-estimators bench: error: ValueError: Unknown data sets ['mnist']")
    assert "Traceback" not in result.stderr

    debug = run_python(["-m", "fhe_estimators.cli", "--debug", *bench_mnist], ROOT)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_cli_program_exits_2_on_bad_arguments():
    result = run_python(["-m", "fhe_estimators.cli", "frobnicate"], ROOT)
    assert result.returncode == 2
    assert "invalid choice: 'frobnicate'" in result.stderr
