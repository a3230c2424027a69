"""Measure this machine's PBS cost table and make it the package's fallback table.

``measure_pbs_costs()`` times proxy circuits at Concrete ML's default p_error, the
estimators' default (``fhe.DEFAULT_P_ERROR``) and 0.01, caches the table for this
machine (``pbs_costs.cache_path()``) and this script also writes it to
``fhe_estimators/pbs_costs_fallback.json``, the table every machine uses until it
measures its own. Takes 10-20 minutes on 2 cores. Run:

    .venv/bin/python benchmarks/measure_pbs_costs.py
"""

import json
import warnings

from fhe_estimators.pbs_costs import FALLBACK_PATH, cache_path, measure_pbs_costs

warnings.filterwarnings("ignore")


def main() -> None:
    costs = measure_pbs_costs(verbose=True)
    FALLBACK_PATH.write_text(json.dumps(costs.to_json(), indent=1) + "\n")
    print(f"cached at {cache_path()}; fallback written to {FALLBACK_PATH}")


if __name__ == "__main__":
    main()
