"""brevitas' quantizers without its module layers (fhe_estimators.fast_quant): the same network to the bit."""

import copy

import numpy as np
import pytest
import torch
from torch.nn.utils import prune

from fhe_estimators import NeuralNetClassifier, fast_quant
from fhe_estimators.module import QuantMLP


def _train_both_ways(module, steps, X, y, eval_every=5, prepare=lambda network: None):
    """Train a copy of ``module`` with the fast path and one with brevitas' layers, step by step
    (each copy ``prepare``-d first); assert the outputs, the loss and every parameter and buffer
    are equal after each step."""
    fast, layers = copy.deepcopy(module), copy.deepcopy(module)
    layers.use_fast_quantizers = False
    for network in (fast, layers):
        prepare(network)
    optimizers = [torch.optim.Adam(m.parameters(), lr=0.05) for m in (fast, layers)]
    for step in range(steps):
        losses = []
        for network, optimizer in zip((fast, layers), optimizers):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(network(X), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        assert torch.equal(*losses), step
        for (name, a), (_, b) in zip(fast.state_dict().items(), layers.state_dict().items()):
            assert torch.equal(a, b), (step, name)
        for a, b in zip(fast.parameters(), layers.parameters()):
            assert torch.equal(a.grad, b.grad), step
        if step % eval_every == 0:
            assert np.array_equal(fast.outputs_on(X.numpy()), layers.outputs_on(X.numpy())), step
    return fast, layers


def test_training_through_the_fast_path_equals_brevitas_layers_through_every_phase():
    torch.manual_seed(0)
    X, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    # Statistics collected for 4 steps, then the learned scales: both phases and the switch.
    module = QuantMLP(6, 3, hidden_layer_sizes=(8, 5), collect_stats_steps=4)
    assert module._fast_quantizers() is not None
    _train_both_ways(module, 12, X, y)


def test_a_pruned_network_and_a_fixed_input_step_take_the_fast_path_alike():
    torch.manual_seed(1)
    X, y = torch.randn(48, 5), torch.randint(0, 2, (48,))
    module = QuantMLP(5, 2, hidden_layer_sizes=(6,), collect_stats_steps=2, n_input_bits=5, input_scale=0.25)
    masks = [(torch.rand_like(linear.weight) > 0.5).float() for linear in module.linears]

    def prune_both(network):
        for linear, mask in zip(network.linears, masks):
            prune.custom_from_mask(linear, "weight", mask)
        assert (network._fast_quantizers() is not None) == network.use_fast_quantizers

    fast, _ = _train_both_ways(module, 6, X, y, prepare=prune_both)
    # The pruning hook ran: the layer's weight is the masked one of this step's parameters.
    linear = fast.linears[0]
    assert torch.equal(linear.weight, linear.weight_orig * linear.weight_mask)


@pytest.mark.parametrize(
    "add_hook",
    [
        lambda m: m.activations[0].register_forward_hook(lambda *args: None),
        lambda m: m.activations[0].act_quant.register_forward_pre_hook(lambda *args: None),
        lambda m: m.input_quant.act_quant.fused_activation_quant_proxy.tensor_quant.scaling_impl.register_forward_hook(
            lambda *args: None
        ),
        lambda m: m.linears[0].weight_quant.register_forward_hook(lambda *args: None),  # besides remember_scale
        lambda m: m.linears[1].register_forward_pre_hook(lambda module, args: (args[0] * 2,)),  # not pruning's
        lambda m: m.linears[0].register_full_backward_hook(lambda *args: None),
        lambda m: torch.nn.modules.module.register_module_forward_hook(lambda *args: None),
    ],
    ids=["layer", "proxy", "scaling", "weight quantizer", "linear pre-hook", "backward", "global"],
)
def test_a_hook_the_fast_path_would_skip_sends_the_network_through_brevitas_layers(add_hook):
    module = QuantMLP(4, 2, hidden_layer_sizes=(3,))
    assert module._fast_quantizers() is not None
    handle = add_hook(module)
    try:
        assert module._fast_quantizers() is None
    finally:
        handle.remove()
    assert module._fast_quantizers() is not None


def test_anything_the_fast_path_does_not_reproduce_takes_brevitas_layers():
    assert not fast_quant.supports(torch.nn.Identity())
    module = QuantMLP(4, 2, hidden_layer_sizes=(3,))
    module.use_fast_quantizers = False
    assert module._fast_quantizers() is None
    prune.identity(module.linears[0], "weight")  # torch's pruning hook: run by the fast path
    module.use_fast_quantizers = True
    assert module._fast_quantizers() is not None


def test_a_fit_with_the_fast_path_is_the_fit_through_brevitas_layers(iris, monkeypatch):
    X_train, X_test, y_train, _ = iris
    params = dict(hidden_layer_sizes=(8,), max_epochs=4, random_state=0, tighten=False, optimizer__weight_decay=1e-4)
    fast = NeuralNetClassifier(**params).fit(X_train, y_train)
    monkeypatch.setattr(QuantMLP, "use_fast_quantizers", False)
    layers = NeuralNetClassifier(**params).fit(X_train, y_train)
    np.testing.assert_array_equal(fast.predict_proba(X_test), layers.predict_proba(X_test))
    for (name, a), (_, b) in zip(fast.module_.state_dict().items(), layers.module_.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_network_without_hidden_layers_and_a_copy_of_a_trained_one_take_the_fast_path_alike():
    torch.manual_seed(2)
    X, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    _train_both_ways(QuantMLP(4, 2, hidden_layer_sizes=(), collect_stats_steps=2), 5, X, y)
    trained, _ = _train_both_ways(QuantMLP(4, 2, hidden_layer_sizes=(3,), collect_stats_steps=2), 4, X, y)
    duplicate = copy.deepcopy(trained)  # its quantizers' plan is copied with it, onto the copy's modules
    plan = duplicate._fast_quantizers()
    assert plan["weights"][0].tensor_quant is duplicate.linears[0].weight_quant.tensor_quant
    _train_both_ways(duplicate, 3, X, y)


def test_the_kept_quantizers_follow_the_modules_brevitas_replaces():
    """brevitas rebuilds every quantizer module on load_state_dict (and a weight's on prune.remove):
    the fast path must then compute with the new ones, not with the scales of the kept ones."""
    torch.manual_seed(3)
    X, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    trained, _ = _train_both_ways(QuantMLP(4, 2, hidden_layer_sizes=(3,), collect_stats_steps=2), 4, X, y)
    other, reference = _train_both_ways(QuantMLP(4, 2, hidden_layer_sizes=(3,), collect_stats_steps=2), 6, X, y)
    kept = trained._fast_quantizers()
    trained.load_state_dict(other.state_dict())
    rebuilt = trained._fast_quantizers()
    assert rebuilt["activations"][0].tensor_quant is fast_quant.activation_tensor_quant(trained.activations[0])
    assert rebuilt["activations"][0].tensor_quant is not kept["activations"][0].tensor_quant
    np.testing.assert_array_equal(trained.outputs_on(X.numpy()), reference.outputs_on(X.numpy()))
    prune.identity(trained.linears[0], "weight")
    prune.remove(trained.linears[0], "weight")  # re-registers the weight: a new weight quantizer
    assert trained._fast_quantizers()["weights"][0].tensor_quant is trained.linears[0].weight_quant.tensor_quant
    np.testing.assert_array_equal(trained.outputs_on(X.numpy()), reference.outputs_on(X.numpy()))
