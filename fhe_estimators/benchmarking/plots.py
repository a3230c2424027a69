"""``pareto.png``: score against encrypted latency, from a benchmark run's rows (needs matplotlib)."""

from __future__ import annotations

from pathlib import Path

from .datasets import DATASETS
from .measure import MODELS, Measurement


def pareto_plot(rows: list[Measurement], path: Path) -> None:
    """Score against encrypted latency, one point per model, data set and budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import ScalarFormatter

    datasets = list(dict.fromkeys(row.dataset for row in rows))
    budgets = list(dict.fromkeys(row.budget for row in rows if row.latency_s is not None))
    colors = {budget: f"C{index}" for index, budget in enumerate(budgets)}
    markers = {MODELS[0]: "o", MODELS[1]: "s"}
    figure, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 4), squeeze=False)
    for axis, dataset in zip(axes[0], datasets):
        for row in rows:
            if row.dataset == dataset and row.latency_s is not None:
                marker, color = markers[row.model], colors[row.budget]
                axis.scatter(row.latency_s, row.simulated_score, marker=marker, color=color, s=50)
        ceiling = next((row.clear_score for row in rows if row.dataset == dataset and row.model == MODELS[2]), None)
        if ceiling is not None:
            axis.axhline(ceiling, color="black", linestyle="--", linewidth=0.8)
        axis.set_xscale("log")
        axis.xaxis.set_major_formatter(ScalarFormatter())
        axis.xaxis.set_minor_formatter(ScalarFormatter())
        axis.tick_params(axis="x", which="both", labelsize=7)
        axis.set_xlabel("encrypted latency per sample (s, log)")
        axis.set_ylabel("R²" if DATASETS[dataset] == "regression" else "accuracy")
        axis.set_title(f"{dataset} (FHE-simulated)")
    handles = [
        Line2D([], [], marker=marker, linestyle="", color="gray", label=model) for model, marker in markers.items()
    ]
    handles += [Line2D([], [], marker="o", linestyle="", color=color, label=budget) for budget, color in colors.items()]
    handles.append(Line2D([], [], color="black", linestyle="--", label="float MLP (clear)"))
    figure.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize="small")
    figure.tight_layout(rect=(0, 0.1, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)
