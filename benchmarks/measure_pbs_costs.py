"""Measure this machine's PBS cost table and make it the package's fallback table.

``measure_pbs_costs()`` times proxy circuits at Concrete ML's default p_error, the
estimators' default (``fhe.DEFAULT_P_ERROR``) and 0.01, and caches the table for this
machine (``pbs_costs.cache_path()``); this script also writes it to
``fhe_estimators/pbs_costs_fallback.json``, the table every machine uses until it
measures its own. Takes 10-20 minutes on 2 cores. ``--from-cache`` copies the table this
machine already cached (e.g. by ``make bench``) instead of measuring again. Run:

    .venv/bin/python benchmarks/measure_pbs_costs.py [--from-cache]
"""

import argparse
import json
import warnings

from fhe_estimators.pbs_costs import FALLBACK_PATH, cache_path, load_pbs_costs, measure_pbs_costs

warnings.filterwarnings("ignore")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from-cache", action="store_true", help="use this machine's cached table")
    args = parser.parse_args()
    costs = load_pbs_costs() if args.from_cache else measure_pbs_costs(verbose=True)
    if costs.source == "fallback":
        raise SystemExit(f"No table cached at {cache_path()}: run without --from-cache.")
    FALLBACK_PATH.write_text(json.dumps(costs.to_json(), indent=1) + "\n")
    print(f"table of {costs.source}; fallback written to {FALLBACK_PATH}")


if __name__ == "__main__":
    main()
