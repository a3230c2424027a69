"""Per-neuron masks, the cubic schedule, and the callback in a plain skorch net."""

import numpy as np
import pytest
import skorch
import torch
from nets import TwoLayer
from torch import nn

from fhe_estimators.pruning import PerNeuronPruning, cubic_keep_count, linear_layers, topk_row_mask


def test_topk_row_mask_keeps_largest_magnitudes_per_row():
    weight = torch.tensor([[0.1, -3.0, 2.0, 0.5], [1.0, 1.0, -1.0, 0.0]])
    mask = topk_row_mask(weight, 2)
    assert mask.tolist() == [[0, 1, 1, 0], [1, 1, 0, 0]]
    assert topk_row_mask(weight, 9).sum() == weight.numel()


def test_cubic_schedule_matches_zhu_gupta():
    fan_in, keep = 100, 20
    assert cubic_keep_count(fan_in, keep, 0.0) == 100
    assert cubic_keep_count(fan_in, keep, 1.0) == 20
    # s_t = s_f (1 - (1 - p)^3) with s_f = 0.8: at p = 0.5, 70 of the 80 prunable weights go.
    assert cubic_keep_count(fan_in, keep, 0.5) == 30
    counts = [cubic_keep_count(fan_in, keep, p) for p in np.linspace(0, 1, 11)]
    assert counts == sorted(counts, reverse=True)


class MaskRecorder(skorch.callbacks.Callback):
    """Keeps a copy of every layer's mask after each epoch."""

    def on_epoch_end(self, net, **kwargs):
        self.masks = getattr(self, "masks", [])
        self.masks.append([layer.weight_mask.clone() for layer in linear_layers(net.module_) if hasattr(layer, "weight_mask")])


def _data():
    rng = np.random.RandomState(0)
    X = rng.randn(200, 12).astype(np.float32)
    return X, (X[:, 0] + X[:, 1] > 0).astype(np.int64)


@pytest.mark.parametrize("schedule", ["gradual", "oneshot"])
def test_callback_prunes_any_skorch_net_to_the_budget(schedule):
    X, y = _data()
    recorder = MaskRecorder()
    torch.manual_seed(0)
    net = skorch.NeuralNetClassifier(
        TwoLayer, criterion=nn.CrossEntropyLoss, max_epochs=10, lr=0.05, train_split=None, verbose=0,
        optimizer=torch.optim.Adam,
        callbacks=[("prune", PerNeuronPruning(max_nonzero=3, schedule=schedule, start=0.2, end=0.6)), ("rec", recorder)],
    ).fit(X, y)
    for layer in linear_layers(net.module_):
        assert (np.count_nonzero(layer.weight.detach().numpy(), axis=1) <= 3).all()
    sparsity = net.history[:, "sparsity"]
    assert sparsity[0] == 0.0 and sparsity[-1] > 0.6
    # Masks are fixed after the end of the schedule (epoch 6 of 10).
    for later in recorder.masks[6:]:
        assert all(torch.equal(a, b) for a, b in zip(recorder.masks[5], later))
    if schedule == "oneshot":
        assert sparsity[4] == 0.0  # nothing pruned before the single pruning epoch


class ReviveOnePrunedWeight(skorch.callbacks.Callback):
    """At one epoch, makes a currently pruned hidden weight the largest of its row."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, net, **kwargs):
        layer = net.module_.hidden
        if len(net.history) == self.epoch and hasattr(layer, "weight_mask"):
            row, col = map(int, (layer.weight_mask == 0).nonzero()[0])
            with torch.no_grad():
                layer.weight_orig[row, col] = 100.0
            self.revived = (row, col)


def test_gradual_masks_are_recomputed_from_trained_weights_not_frozen():
    X, y = _data()
    recorder, reviver = MaskRecorder(), ReviveOnePrunedWeight(epoch=5)
    torch.manual_seed(0)
    skorch.NeuralNetClassifier(
        TwoLayer, criterion=nn.CrossEntropyLoss, max_epochs=12, lr=0.05, train_split=None, verbose=0,
        optimizer=torch.optim.Adam,
        callbacks=[
            ("revive", reviver),
            ("prune", PerNeuronPruning(max_nonzero=4, start=0.1, end=0.9)),
            ("rec", recorder),
        ],
    ).fit(X, y)
    hidden_masks = [masks[0] for masks in recorder.masks if masks]
    kept = [int(mask.sum()) for mask in hidden_masks]
    assert kept == sorted(kept, reverse=True) and kept[-1] == 4 * 10
    row, col = reviver.revived
    # Pruned at epoch 4, back from epoch 5 on, because it is now among the largest of its row.
    assert hidden_masks[3][row, col] == 0 and hidden_masks[4][row, col] == 1 and hidden_masks[-1][row, col] == 1


def test_callback_rejects_bad_schedule():
    with pytest.raises(ValueError, match="schedule must be one of"):
        PerNeuronPruning(3, schedule="sometimes").initialize()
    with pytest.raises(ValueError, match="start <= end"):
        PerNeuronPruning(3, start=0.8, end=0.2).initialize()
