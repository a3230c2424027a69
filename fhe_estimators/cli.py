"""Command line: ``fhe-estimators demo``, ``fhe-estimators bench`` and ``fhe-estimators serve``."""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np


def format_pruning_report(report: list[dict]) -> str:
    """The estimator's ``pruning_report_`` as an aligned text table."""
    columns = [
        ("layer", "layer", "{}"),
        ("fan_in", "fan-in", "{}"),
        ("neurons", "neurons", "{}"),
        ("omega", "Ω", "{}"),
        ("k", "k", "{}"),
        ("max_nonzero", "max nz", "{}"),
        ("mean_nonzero", "mean nz", "{:.1f}"),
        ("sparsity", "sparsity", "{:.0%}"),
        ("dropped_by_check", "dropped", "{}"),
        ("accumulator_bits", "acc bits", "{}"),
    ]
    rows = [[title for _, title, _ in columns]]
    rows += [[fmt.format(layer[key]) for key, _, fmt in columns] for layer in report]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows)


def demo(n_encrypted: int = 3) -> int:
    """Breast cancer at 3/3/10 bits: train, report, compile, simulate, then run encrypted.

    Returns 0 if every encrypted prediction equals the simulated one, else 1 (the
    mismatches are reported on stderr).
    """
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    from . import NeuralNetClassifier
    from . import runtime
    from .input_grid import clip_to_bounds

    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)

    model = NeuralNetClassifier(n_w_bits=3, n_a_bits=3, n_accum_bits=10, random_state=0)
    start = time.perf_counter()
    model.fit(X_train, y_train)
    print(f"Trained on breast cancer ({len(X_train)} rows) in {time.perf_counter() - start:.1f} s")
    print(
        f"\nPruning report (Ω = {model.omega_}, accumulator budget {model.accumulator_budget_} bits "
        f"chosen within n_accum_bits = {model.n_accum_bits}):"
    )
    print(format_pruning_report(model.pruning_report_))
    print(f"Worst-case accumulator bits per layer: {model.accumulator_bits_}")

    start = time.perf_counter()
    model.compile()
    report = model.circuit_report_
    print(
        f"\nCompiled in {time.perf_counter() - start:.1f} s: max bit-width {report.max_bit_width}, "
        f"{report.pbs_count} PBS, accumulator bits in circuit {report.accumulator_bits}"
    )
    print(f"Accuracy in the clear (quantized): {model.score(X_test, y_test, fhe='disable'):.4f}")
    print(f"Accuracy in FHE simulation:        {model.score(X_test, y_test, fhe='simulate'):.4f}")

    quantized = model.quantized_module_
    print(f"\nKey generation: {runtime.keygen(quantized):.2f} s")
    simulated = model.predict(X_test[:n_encrypted], fhe="simulate")
    mismatches = []
    readable = clip_to_bounds(X_test, model.input_bounds_)  # rows as predict reads them
    for index in range(n_encrypted):
        run = runtime.run_encrypted_steps(quantized, readable[index])
        label = model.classes_[int(np.argmax(run.outputs))]
        if label != simulated[index]:
            mismatches.append(index)
        print(
            f"sample {index}: encrypted -> {label} (simulated {simulated[index]}, true {y_test[index]}); "
            f"encrypt {run.encrypt_s * 1000:.0f} ms, run {run.run_s:.2f} s, decrypt {run.decrypt_s * 1000:.0f} ms"
        )
    if mismatches:
        print(
            f"fhe-estimators demo: error: the encrypted prediction differs from the simulated one for "
            f"sample(s) {mismatches} of {n_encrypted}",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run a command and return its exit status: 0 on success, 1 on failure (2: bad arguments, from argparse).

    Run as a program (``argv`` None: the command line), an error is one line on
    stderr and status 1; ``--debug`` shows the traceback instead. Called from
    Python with an explicit ``argv``, errors are raised to the caller as usual.
    """
    parser = argparse.ArgumentParser(prog="fhe-estimators", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="on failure, show the full traceback")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="train, compile and run encrypted on breast cancer")
    demo_parser.add_argument("--samples", type=int, default=3, help="encrypted predictions to run")
    from .server import add_arguments as add_serve_arguments  # no web framework imported until `serve` runs

    add_serve_arguments(commands.add_parser("serve", help="HTTP service for encrypted inference (extra [server])"))
    bench_parser = commands.add_parser(
        "bench", help="benchmark against Concrete ML's built-in networks and a float MLP"
    )
    bench_parser.add_argument("--quick", action="store_true", help="(3,3,10) only, one encrypted sample")
    bench_parser.add_argument("--datasets", nargs="+", help="subset of breast_cancer iris digits diabetes")
    bench_parser.add_argument("--samples", type=int, help="encrypted samples per model (default 3, 1 with --quick)")
    bench_parser.add_argument("--budgets", nargs="+", help="'(3,3,10)', '(4,4,12)', 'defaults' or 'n_w,n_a,n_accum'")
    bench_parser.add_argument("--out", default="benchmarks/results", help="directory for RESULTS.md and pareto.png")
    bench_parser.add_argument(
        "--measure-pbs-costs", action="store_true", help="measure this machine's PBS cost table first if none is cached"
    )
    bench_parser.add_argument(
        "--redraw", action="store_true", help="only rewrite RESULTS.md and pareto.png from OUT/results.json"
    )
    args = parser.parse_args(argv)  # bad arguments: argparse prints usage and exits with status 2
    warnings.filterwarnings("ignore")
    try:
        return run_command(args)
    except Exception as error:
        if args.debug or argv is not None:
            raise
        message = " ".join(str(error).split()) or "(no message)"
        print(
            f"fhe-estimators {args.command}: error: {type(error).__name__}: {message} (--debug shows the traceback)",
            file=sys.stderr,
        )
        return 1


def run_command(args: argparse.Namespace) -> int:
    """The parsed command's exit status."""
    if args.command == "demo":
        return demo(args.samples)
    if args.command == "serve":
        from .server import serve

        return serve(args)
    from .benchmarking import bench, redraw

    if args.redraw:
        print(f"Results rewritten in {redraw(args.out, args.samples or 3)}")
        return 0
    results = bench(
        args.out,
        quick=args.quick,
        datasets=args.datasets,
        samples=args.samples,
        budgets=args.budgets,
        measure_costs=args.measure_pbs_costs,
    )
    print(f"Results written to {results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
