"""The pruning budgets as policy objects, the pruning callback driven by them, and the per-layer reports."""

import copy
import json
import pickle
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from skorch.history import History

from fhe_estimators import NeuralNetClassifier
from fhe_estimators.accumulator_aware import overflowing_neurons
from fhe_estimators.budget_policies import CountBudget, ExactBudget, L1Budget, make_budget_policy
from fhe_estimators.callbacks import pruning_callback
from fhe_estimators.finalize import PruningReport, finalize_and_report, reports_frame
from fhe_estimators.module import QuantMLP
from fhe_estimators.pruning import PerNeuronPruning

#: Ω per linear layer, given by hand (the policies take them as they are).
OMEGAS = [2, 5]


@pytest.fixture
def tiny():
    """4 → 3 → 2 at 3 bits: max |w| = 3 sets the weight scale to 1, so the integers are the weights.

    First layer inputs are in [-4, 3] (signed 3 bits), the second layer's in [0, 7].
    """
    module = QuantMLP(4, 2, (3,), n_w_bits=3, n_a_bits=3)
    with torch.no_grad():
        module.linears[0].weight.copy_(torch.tensor([[3.0, 3, 3, 3], [3, -1, 1, 0], [1, 1, 1, 1]]))
        module.linears[1].weight.copy_(torch.tensor([[3.0, 2, 1], [-3, -3, -3]]))
    assert module.integer_layers()[1].weights.tolist() == [[3, 2, 1], [-3, -3, -3]]
    return module


def as_lists(counts):
    return [np.asarray(layer).tolist() for layer in counts]


def test_count_keeps_the_multiplier_cap(tiny):
    # min(fan_in, floor(multiplier × Ω)): min(4, 2) and min(3, 5); the accumulator bits play no part.
    assert as_lists(CountBudget(1).keep_counts(tiny, 6, OMEGAS)) == [[2, 2, 2], [3, 3]]
    assert as_lists(CountBudget(1.5).keep_counts(tiny, 16, OMEGAS)) == [[3, 3, 3], [3, 3]]


def test_exact_keeps_the_largest_weights_that_fit(tiny):
    # 6 bits hold [-32, 31]. Neuron [3, 3, 3, 3] on [-4, 3]: each term reaches -12, so 2 fit;
    # [3, -1, 1, 0] and [1, 1, 1, 1] fit whole. Second layer on [0, 7]: 21 + 14 > 31, -21 - 21 < -32.
    assert as_lists(ExactBudget(10).keep_counts(tiny, 6, OMEGAS)) == [[2, 4, 4], [1, 1]]
    assert as_lists(ExactBudget(10).keep_counts(tiny, 7, OMEGAS)) == [[4, 4, 4], [3, 3]]
    assert as_lists(ExactBudget(1).keep_counts(tiny, 6, OMEGAS)) == [[2, 2, 2], [1, 1]]  # the cap still applies


def test_l1_shrinks_the_weights_then_keeps_the_cap(tiny):
    assert overflowing_neurons(tiny, 6) == [1, 2]
    before = [layer.weight.detach().clone() for layer in tiny.linears]
    assert as_lists(L1Budget(10).keep_counts(tiny, 6, OMEGAS)) == [[4, 4, 4], [3, 3]]
    assert overflowing_neurons(tiny, 6) == [0, 0]  # fits by smaller weights, none dropped
    for layer, old in zip(tiny.linears, before):
        assert torch.all(layer.weight.detach().abs() <= old.abs())
        assert torch.count_nonzero(layer.weight) == torch.count_nonzero(old)  # scaled, not zeroed


def test_make_budget_policy_names_every_budget():
    assert make_budget_policy("exact", 2) == ExactBudget(2)
    assert isinstance(make_budget_policy("count"), CountBudget) and make_budget_policy("l1", 0.5) == L1Budget(0.5)
    assert [make_budget_policy(name).name for name in ("exact", "count", "l1")] == ["exact", "count", "l1"]
    with pytest.raises(ValueError, match="pruning_budget must be one of"):
        make_budget_policy("ℓ1")
    assert pickle.loads(pickle.dumps(ExactBudget(3))) == ExactBudget(3)


def test_estimator_callback_holds_the_policy_of_its_parameters():
    model = NeuralNetClassifier(pruning_budget="l1", n_hidden_neurons_multiplier=2)
    assert pruning_callback(model).budget == L1Budget(2)


def _train_call(callback, net) -> list[list[int]]:
    """One training call of one epoch that reaches the end of the schedule; the weights each neuron keeps."""
    net.history = History()
    callback.on_train_begin(net)
    net.history.new_epoch()
    callback.on_epoch_end(net)
    return [layer.weight_mask.sum(dim=1).int().tolist() for layer in net.module_.linears]


def test_callback_follows_the_accumulator_budget_between_calls(tiny):
    callback = PerNeuronPruning(schedule="oneshot", start=1.0, end=1.0, budget=ExactBudget(1)).initialize()
    net = SimpleNamespace(module_=tiny, max_epochs=1, accumulator_budget_=7, layer_omegas_=[10, 10])
    assert _train_call(callback, net) == [[4, 4, 4], [3, 3]]
    net.accumulator_budget_ = 6  # what the search's _set_accumulator_budget does between calls
    assert _train_call(callback, net) == [[2, 4, 4], [1, 1]]
    net.layer_omegas_ = [1, 1]  # Ω follows the budget too: caps of 1
    assert _train_call(callback, net) == [[1, 1, 1], [1, 1]]


def test_callback_still_takes_a_plain_callable_budget(tiny):
    callback = PerNeuronPruning(schedule="oneshot", start=1.0, end=1.0, budget=lambda module: [[1, 2, 3], [2, 2]])
    net = SimpleNamespace(module_=tiny, max_epochs=1)  # no accumulator budget: none is needed
    assert _train_call(callback.initialize(), net) == [[1, 2, 3], [2, 2]]
    with pytest.raises(ValueError, match="pass the net"):
        PerNeuronPruning(budget=CountBudget(1)).final_keep_counts(tiny)


def test_finalize_caps_each_layer_at_its_own_width(tiny):
    """``layer_bits`` holds a layer below the budget (the search's trim to the widths it priced);
    a layer already within keeps every weight."""
    wide = finalize_and_report(copy.deepcopy(tiny), ExactBudget(10), 8, OMEGAS)
    narrow_first = [wide.accumulator_bits[0] - 1, 8]
    capped = finalize_and_report(tiny, ExactBudget(10), 8, OMEGAS, layer_bits=narrow_first)
    assert capped.accumulator_bits[0] <= narrow_first[0] and capped.layers[0].dropped_by_check > 0
    assert capped.layers[1].dropped_by_check == 0


def test_finalize_reports_are_dataclasses_with_dict_views(tiny):
    reports = finalize_and_report(tiny, ExactBudget(10), 6, OMEGAS)
    first = reports.layers[0]
    assert isinstance(first, PruningReport) and first.budget == "exact" and first.k == 4
    assert max(reports.accumulator_bits) <= 6 and not reports.neurons_removed
    fitted = reports.fitted_attributes()
    assert fitted["layer_reports_"] == reports.layers
    dicts = fitted["pruning_report_"]
    assert all(type(entry) is dict for entry in dicts) and dicts == reports.layers  # equal to their dict views
    assert list(first) == list(dicts[0]) and len(first) == 14 and first["omega"] == 2 and "sparsity" in first
    assert json.loads(json.dumps(dicts)) == dicts
    assert pickle.loads(pickle.dumps(reports.layers)) == reports.layers
    frame = pd.DataFrame(dicts)
    assert frame.equals(reports_frame(reports.layers)) and list(frame.columns) == list(first)
    assert first.to_frame().iloc[0]["k"] == 4
    with pytest.raises(KeyError):
        first["nonexistent"]
