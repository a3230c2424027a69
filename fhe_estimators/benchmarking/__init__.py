"""The benchmark harness behind ``fhe-estimators bench`` / ``make bench`` and the scripts in
``benchmarks/``: it compares our estimators with Concrete ML's built-in networks and a float MLP
and writes ``RESULTS.md``, ``results.json`` and ``pareto.png``.

It is not part of the estimators' data path: nothing in ``fhe_estimators`` outside this subpackage
and the CLI imports it. One concern a module:

- :mod:`.datasets`: the data sets, the bit budgets and the one train/test split (:func:`load_split`);
- :mod:`.measure`: one model measured (ours, Concrete ML's built-in, ours with the search off, float);
- :mod:`.report`: log lines, the markdown tables and ratios, the machine and library versions;
- :mod:`.plots`: ``pareto.png``;
- :mod:`.run`: the whole run (:func:`bench`) and :func:`redraw` from ``results.json``.
"""

from .datasets import BUDGETS, DATASETS, load_split, parse_budget
from .measure import (
    BUILTIN_MAX_EXECUTED_BITS,
    MODELS,
    SEARCH_OFF_BUDGET,
    Measurement,
    measure_builtin,
    measure_compiled,
    measure_float,
    measure_ours,
    measure_search_off,
)
from .plots import pareto_plot
from .report import comparison_markdown, describe_environment, environment, pbs_seconds_used, results_markdown
from .run import bench, measurements_from_json, redraw, run_benchmark

__all__ = [
    "BUDGETS",
    "BUILTIN_MAX_EXECUTED_BITS",
    "DATASETS",
    "MODELS",
    "SEARCH_OFF_BUDGET",
    "Measurement",
    "bench",
    "comparison_markdown",
    "describe_environment",
    "environment",
    "load_split",
    "measure_builtin",
    "measure_compiled",
    "measure_float",
    "measure_ours",
    "measure_search_off",
    "measurements_from_json",
    "parse_budget",
    "pareto_plot",
    "pbs_seconds_used",
    "redraw",
    "results_markdown",
    "run_benchmark",
]
