"""Pictures of a fitted model's pruning, against its FHE budget (needs the ``plot`` extra)."""

from __future__ import annotations

import numpy as np


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Plotting needs matplotlib: pip install 'fhe-estimators[plot]'"
        ) from error
    return plt


def plot_pruning(model, axes=None):
    """Per neuron of every layer: non-zero weights vs Ω·multiplier, and worst-case bits vs the budget.

    ``model`` is a fitted ``NeuralNetClassifier`` / ``NeuralNetRegressor``.
    Returns the matplotlib figure (two rows of panels, one column per layer).
    """
    if not hasattr(model, "pruning_report_"):
        raise ValueError("plot_pruning needs a fitted model (call fit first).")
    plt = _pyplot()
    report = model.pruning_report_
    if axes is None:
        _, axes = plt.subplots(2, len(report), figsize=(4 * len(report), 6), squeeze=False)
    for column, (layer, integer) in enumerate(zip(report, model.module_.integer_layers())):
        neurons = np.arange(layer["neurons"])
        counts_axis, bits_axis = axes[0][column], axes[1][column]
        counts_axis.bar(neurons, np.count_nonzero(integer.weights, axis=1), color="tab:blue")
        counts_axis.axhline(layer["omega"], color="tab:red", linestyle="--", label=f"Ω = {layer['omega']}")
        counts_axis.axhline(layer["fan_in"], color="gray", linestyle=":", label=f"fan-in = {layer['fan_in']}")
        counts_axis.set_title(f"layer {layer['layer']}: non-zero weights per neuron")
        counts_axis.legend(loc="lower right", fontsize="small")
        bits_axis.bar(neurons, layer["neuron_accumulator_bits"], color="tab:green")
        bits_axis.axhline(model.n_accum_bits, color="tab:red", linestyle="--", label=f"n_accum_bits = {model.n_accum_bits}")
        bits_axis.set_title(f"layer {layer['layer']}: worst-case accumulator bits")
        bits_axis.set_xlabel("neuron")
        bits_axis.set_ylim(0, model.n_accum_bits + 2)
        bits_axis.legend(loc="lower right", fontsize="small")
    figure = axes[0][0].figure
    figure.tight_layout()
    return figure


def plot_history(model, axis=None):
    """Sparsity and training score per epoch, from skorch's ``history``."""
    plt = _pyplot()
    if axis is None:
        _, axis = plt.subplots(figsize=(6, 4))
    history = model.history
    epochs = history[:, "epoch"]
    axis.plot(epochs, history[:, "sparsity"], label="sparsity", color="tab:red")
    score_key = "train_acc" if "train_acc" in history[-1] else "train_r2"
    axis.plot(epochs, history[:, score_key], label=score_key, color="tab:blue")
    axis.set_xlabel("epoch")
    axis.set_ylim(min(0.0, min(history[:, score_key])), 1.05)
    axis.legend()
    return axis.figure
