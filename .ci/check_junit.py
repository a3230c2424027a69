#!/usr/bin/env python3
"""Fail unless pytest's JUnit XML report shows a run with tests, none failed and none in error.

CI reads the report as well as pytest's exit status: the status alone has been
wrong before (Concrete's atexit handler turned every status into 0 once a circuit
had run; see fhe_estimators/process_exit.py). Standard library only.

Usage: check_junit.py REPORT.xml  -> exit status 0 if the run is clean, else 1;
prints a one-line summary, then the tests that failed or errored.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

COUNTS = ("tests", "failures", "errors", "skipped")


def read_report(path: Path) -> tuple[dict[str, int], list[str]]:
    """Counts summed over the report's test suites, and the ids of the tests that failed or errored."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.iter("testsuite")
    totals = dict.fromkeys(COUNTS, 0)
    bad = []
    for suite in suites:
        for key in COUNTS:
            totals[key] += int(suite.get(key, 0))
        for case in suite.iter("testcase"):
            for outcome in ("failure", "error"):
                if case.find(outcome) is not None:
                    bad.append(f"{outcome}: {case.get('classname', '')}::{case.get('name', '')}")
    return totals, bad


def check(path: Path) -> tuple[bool, str, list[str]]:
    """(clean, one-line summary, failed/errored tests)."""
    if not path.is_file():
        return False, f"FAIL: no JUnit report at {path} (did pytest run?)", []
    try:
        totals, bad = read_report(path)
    except (ET.ParseError, ValueError) as error:
        return False, f"FAIL: unreadable JUnit report {path}: {error}", []
    problems = totals["failures"] + totals["errors"]
    passed = totals["tests"] - problems - totals["skipped"]
    clean = totals["tests"] > 0 and passed > 0 and problems == 0 and not bad
    summary = (
        f"{'OK' if clean else 'FAIL'}: {totals['tests']} tests, {passed} passed, {totals['failures']} failed, "
        f"{totals['errors']} errors, {totals['skipped']} skipped ({path})"
    )
    return clean, summary, bad


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: check_junit.py REPORT.xml", file=sys.stderr)
        return 2
    clean, summary, bad = check(Path(argv[0]))
    print(f"JUnit check {summary}")
    for test in bad:
        print(f"  {test}")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
