"""The repository keeps Concrete's crash dumps out of version control."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_concrete_crash_dumps_are_ignored_and_not_committed():
    """Concrete writes .artifacts/ (traceback, MLIR, pip freeze) into the working directory on a failed compile."""
    assert ".artifacts/" in (ROOT / ".gitignore").read_text().splitlines()
    tracked = subprocess.run(
        ["git", "ls-files", ".artifacts"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert tracked == ""
    ignored = subprocess.run(["git", "check-ignore", ".artifacts/traceback.txt"], cwd=ROOT, capture_output=True, text=True)
    assert ignored.returncode == 0
