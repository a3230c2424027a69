"""Issue-3 pruning: schedule values, exact-budget mode, neuron removal, reports and plots.

Every model here is pruned at the budget given, so the tightening search (tests/test_search.py) is off.
"""

import matplotlib

matplotlib.use("Agg")

import pickle

import numpy as np
import pytest
import skorch
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nets import TwoLayer

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor, omega
from fhe_estimators.budget import accumulator_bounds, enforce_accumulator_budget, fits_signed, largest_weights_that_fit
from fhe_estimators.compilation import gemm_ops
from fhe_estimators.module import QuantMLP
from fhe_estimators.plots import plot_history, plot_pruning
from fhe_estimators.pruning import PerNeuronPruning


class KeptCounts(skorch.callbacks.Callback):
    def on_epoch_end(self, net, **kwargs):
        self.counts = getattr(self, "counts", [])
        self.counts.append(int(np.count_nonzero(net.module_.hidden.weight.detach().numpy()[0])))


def test_gradual_schedule_keeps_the_cubic_counts_at_given_epochs():
    rng = np.random.RandomState(0)
    X = rng.randn(64, 12).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    counts = KeptCounts()
    torch.manual_seed(0)
    skorch.NeuralNetClassifier(
        TwoLayer, module__hidden=6, criterion=nn.CrossEntropyLoss, max_epochs=10, train_split=None, verbose=0,
        callbacks=[("prune", PerNeuronPruning(max_nonzero=3, start=0.2, end=0.6)), ("count", counts)],
    ).fit(X, y)
    # Steps at epochs 2..6, progress p = (e - 2) / 4; kept = 12 - floor(9 (1 - (1 - p)^3)).
    assert counts.counts == [12, 12, 7, 5, 4, 3, 3, 3, 3, 3]


@settings(max_examples=50, deadline=None)
@given(
    weights=st.lists(st.lists(st.floats(-1, 1, allow_nan=False), min_size=10, max_size=10), min_size=1, max_size=5),
    n_accum_bits=st.integers(6, 10),
)
def test_exact_budget_fits_and_keeps_at_least_the_count_budget(weights, n_accum_bits):
    floats = np.array(weights)
    integers = np.clip(np.round(floats / (np.abs(floats).max() + 1e-12) * 3), -4, 3).astype(int)
    counts = largest_weights_that_fit(integers, np.abs(floats), 0, 7, n_accum_bits)
    order = np.argsort(-np.abs(floats), axis=1, kind="stable")
    ranks = np.argsort(order, axis=1)
    kept = np.where(ranks < counts[:, None], integers, 0)
    low, high = accumulator_bounds(kept, None, 0, 7)
    assert fits_signed(low, high, n_accum_bits).all()
    # The count mode keeps k = Ω weights, then the exact check drops what overflows.
    k = min(10, omega(n_accum_bits, 3, 3))
    count_mode = np.where(ranks < k, integers, 0)
    count_kept = enforce_accumulator_budget(count_mode, None, 0, 7, n_accum_bits)
    assert (np.count_nonzero(kept, axis=1) >= count_kept.sum(axis=1)).all()


@pytest.fixture(scope="module")
def both_budgets(breast_cancer):
    """Both modes with the cap at 4 × Ω (20 weights per neuron at 8 bits, Ω = 5)."""
    X_train, _, y_train, _ = breast_cancer
    return {
        budget: NeuralNetClassifier(
            tighten=False,
            hidden_layer_sizes=(16,), n_accum_bits=8, n_hidden_neurons_multiplier=4, pruning_budget=budget,
            max_epochs=30, random_state=0,
        ).fit(X_train, y_train)
        for budget in ("count", "exact")
    }


def test_exact_budget_mode_trains_what_fits_instead_of_dropping_at_the_end(both_budgets):
    """Both modes stop at 4 × Ω weights; exact mode prunes to what fits while training, so the
    final check finds nothing to drop (count mode's drops are tested in test_estimators at 7 bits)."""
    count, exact = both_budgets["count"], both_budgets["exact"]
    for model in (count, exact):
        assert max(model.accumulator_bits_) <= 8
        assert model.max_nonzero_per_neuron_[0] == 4 * model.omega_ == 20
        assert max(r["max_nonzero"] for r in model.pruning_report_) <= 20
    assert sum(r["dropped_by_check"] for r in exact.pruning_report_) == 0  # nothing left for the check
    assert max(r["max_nonzero"] for r in exact.pruning_report_) > exact.omega_  # more than Ω where it fits


def test_removing_a_dead_neuron_keeps_the_function():
    torch.manual_seed(0)
    module = QuantMLP(5, 2, (6,), 3, 3, collect_stats_steps=1)
    module.train()
    module(torch.randn(64, 5))  # one step of range statistics
    module.eval()
    with torch.no_grad():
        module.linears[0].weight[[1, 4]] = 0.0
        module.linears[0].bias[1] = 0.7  # a dead neuron still outputs ReLU(bias)
    X = torch.randn(32, 5)
    before = module(X).detach()
    module.remove_hidden_neurons(0, np.array([1, 4]))
    assert module.hidden_sizes() == [4] and module.linears[1].weight.shape == (2, 4)
    torch.testing.assert_close(module(X).detach(), before, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="all zero"):
        module.remove_hidden_neurons(0, np.array([0]))


def test_neuron_removal_shrinks_the_compiled_circuit(breast_cancer):
    X_train, X_test, y_train, y_test = breast_cancer
    full = NeuralNetClassifier(tighten=False, hidden_layer_sizes=(12,), max_epochs=30, random_state=0).fit(X_train, y_train).compile()
    slim = NeuralNetClassifier(tighten=False, hidden_layer_sizes=(12,), neuron_removal=0.5, max_epochs=30, random_state=0)
    slim.fit(X_train, y_train).compile()
    assert slim.module_.hidden_sizes() == [6]
    assert slim.pruning_report_[0]["neurons"] == 6 and slim.pruning_report_[0]["neurons_removed"] == 6
    gemm_shapes = [op.constant_inputs[1].qvalues.shape for op in gemm_ops(slim.quantized_module_)]
    assert gemm_shapes[0] in ((6, 30), (30, 6)) and gemm_shapes[1] in ((2, 6), (6, 2))
    assert slim.circuit_report_.pbs_count < full.circuit_report_.pbs_count
    assert slim.score(X_test, y_test, fhe="simulate") > 0.9
    np.testing.assert_array_equal(slim.predict(X_test, fhe="simulate"), slim.predict(X_test, fhe="disable"))
    loaded = pickle.loads(pickle.dumps(slim))  # rebuilt with the shrunken widths
    assert loaded.module_.hidden_sizes() == [6]
    np.testing.assert_array_equal(loaded.predict(X_test, fhe="simulate"), slim.predict(X_test, fhe="simulate"))


def test_neuron_removal_is_validated(breast_cancer):
    X_train, _, y_train, _ = breast_cancer
    for bad in (1.0, -0.1, "half"):
        with pytest.raises(ValueError, match="neuron_removal must be a fraction in \\[0, 1\\)"):
            NeuralNetClassifier(tighten=False, neuron_removal=bad, max_epochs=1).fit(X_train, y_train)
    with pytest.raises(ValueError, match="pruning_budget must be one of"):
        NeuralNetClassifier(tighten=False, pruning_budget="loose", max_epochs=1).fit(X_train, y_train)


def test_initial_schedule_freezes_masks_from_untrained_weights(breast_cancer):
    X_train, _, y_train, _ = breast_cancer
    model = NeuralNetClassifier(
        tighten=False,
        hidden_layer_sizes=(8,), pruning="initial", pruning_budget="count", n_hidden_neurons_multiplier=1,
        max_epochs=5, random_state=0,
    )
    model.fit(X_train, y_train)
    sparsity = model.history[:, "sparsity"]
    assert sparsity[0] > 0 and len(set(np.round(sparsity, 6))) == 1  # pruned from the start, never changes


def test_history_and_plots(both_budgets, diabetes):
    model = both_budgets["exact"]
    assert len(model.history[:, "train_acc"]) == 30 and model.history[-1, "train_acc"] > 0.9
    figure = plot_pruning(model)
    bars = [patch for axis in figure.axes for patch in axis.patches]
    assert len(bars) == 2 * sum(r["neurons"] for r in model.pruning_report_)
    assert plot_history(model).axes[0].get_lines()
    X_train, _, y_train, _ = diabetes
    regressor = NeuralNetRegressor(tighten=False, hidden_layer_sizes=(4,), max_epochs=3, random_state=0).fit(X_train, y_train)
    assert len(regressor.history[:, "train_r2"]) == 3
    with pytest.raises(ValueError, match="fitted model"):
        plot_pruning(NeuralNetClassifier(tighten=False))


def test_default_input_bits_take_the_free_bits_and_fix_iris(iris, breast_cancer):
    """3-bit inputs are too coarse for iris; by default its 4 features get 5-bit inputs
    (hidden layers still 3-bit), the widest at which the unpruned first layer still fits 10 bits."""
    X_train, X_test, y_train, y_test = iris
    model = NeuralNetClassifier(tighten=False, random_state=2).fit(X_train, y_train)
    assert model.n_input_bits_ == 5
    low, high = model.module_.input_ranges()[0]  # per column, within the 5-bit range
    assert np.all(low >= -16) and np.all(high <= 15) and np.all(low < high)
    assert [layer["omega"] for layer in model.pruning_report_] == [omega(10, 3, 5), omega(10, 3, 3)]
    assert max(model.accumulator_bits_) <= 10
    model.compile()
    assert model.score(X_test, y_test, fhe="simulate") >= 0.95
    # Seeds 0-4 at 3-bit inputs: 0.932 mean, 0.868 for this one; by default 0.968 (0.974 on four).
    three_bits = NeuralNetClassifier(tighten=False, n_input_bits=3, random_state=2).fit(X_train, y_train)
    assert three_bits.score(X_test, y_test) < model.score(X_test, y_test)
    # 30 features at 4 bits could overflow 10 bits unpruned: breast cancer keeps n_a_bits.
    X_train, _, y_train, _ = breast_cancer
    assert NeuralNetClassifier(tighten=False, max_epochs=1).fit(X_train, y_train).n_input_bits_ == 3


def test_count_budget_uses_the_first_layers_own_omega(breast_cancer):
    X_train, _, y_train, _ = breast_cancer
    model = NeuralNetClassifier(
        tighten=False,
        hidden_layer_sizes=(8,), n_input_bits=5, pruning_budget="count", n_hidden_neurons_multiplier=1,
        max_epochs=10, random_state=0,
    ).fit(X_train, y_train)
    first_k = omega(10, 3, 5)  # 1023 // (7 * 31) = 4: the cap at multiplier 1
    assert model.pruning_report_[0]["k"] == first_k
    assert model.pruning_report_[0]["max_nonzero"] <= first_k
    with pytest.raises(ValueError, match="n_input_bits must be a positive integer"):
        NeuralNetClassifier(tighten=False, n_input_bits=0, max_epochs=1).fit(X_train, y_train)
