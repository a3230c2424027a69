"""skorch's per-batch plumbing made cheap (fhe_estimators.skorch_speed): the same batches, the same modes."""

import numpy as np
import pytest
import skorch
import torch
from torch.utils.data import DataLoader

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor
from fhe_estimators.skorch_speed import batch_loader, reads_batches


def _batches(loader):
    return [tuple(part for part in batch) for batch in loader]


@pytest.mark.parametrize(
    "y",
    [np.arange(150) % 3, np.linspace(-1, 1, 150, dtype=np.float32).reshape(-1, 1)],
    ids=["labels", "regression targets"],
)
def test_a_batch_read_in_one_indexing_equals_the_row_by_row_one(y):
    X = np.random.RandomState(0).normal(size=(150, 5)).astype(np.float32)
    dataset = skorch.dataset.Dataset(X, y)
    torch.manual_seed(0)
    expected = _batches(DataLoader(dataset, batch_size=64))
    after_expected = torch.rand(1)
    torch.manual_seed(0)
    got = _batches(batch_loader(dataset, 64))
    assert torch.equal(torch.rand(1), after_expected)  # the same draws from torch's generator
    assert [len(batch[0]) for batch in got] == [64, 64, 22]
    for (X_expected, y_expected), (X_got, y_got) in zip(expected, got):
        assert X_got.dtype == X_expected.dtype and y_got.dtype == y_expected.dtype
        assert torch.equal(X_got, X_expected) and torch.equal(y_got, y_expected)


def test_anything_but_torchs_plain_loader_over_arrays_reads_row_by_row():
    X, y = np.zeros((10, 2), dtype=np.float32), np.zeros(10)
    dataset = skorch.dataset.Dataset(X, y)
    assert reads_batches(dataset, DataLoader, {"batch_size": 4})
    assert not reads_batches(dataset, DataLoader, {"batch_size": 4, "shuffle": True})
    assert not reads_batches(skorch.dataset.Dataset(X, None), DataLoader, {"batch_size": 4})  # predict
    assert not reads_batches(dataset, lambda *a, **k: None, {"batch_size": 4})  # a user's iterator
    assert not reads_batches(torch.utils.data.TensorDataset(torch.zeros(10, 2)), DataLoader, {"batch_size": 4})


def test_the_estimators_train_on_one_indexing_batches_and_keep_modes_right(iris):
    X_train, X_test, y_train, _ = iris
    params = dict(hidden_layer_sizes=(8,), max_epochs=2, random_state=0, tighten=False, optimizer__weight_decay=1e-4)
    model = NeuralNetClassifier(**params)
    model.fit(X_train, y_train)
    dataset = model.get_dataset(X_train, model._fit_targets(y_train, len(X_train), None))
    assert isinstance(model.get_iterator(dataset, training=True).dataset, torch.utils.data.Dataset)
    assert model.get_iterator(dataset, training=True).batch_size is None  # the one-indexing loader
    shuffled = NeuralNetClassifier(iterator_train__shuffle=True)
    assert shuffled.get_iterator(dataset, training=True).batch_size == shuffled.batch_size  # skorch's own
    model.module_.eval()
    model._set_training(True)
    assert all(module.training for module in model.module_.modules())
    model.module_.activations[0].eval()  # one submodule out of step: the whole module is set again
    model._set_training(True)
    assert all(module.training for module in model.module_.modules())
    model._set_training(False)
    assert not any(module.training for module in model.module_.modules())


def test_a_regressor_trains_the_same_with_either_loader(diabetes, monkeypatch):
    X_train, X_test, y_train, _ = diabetes
    params = dict(hidden_layer_sizes=(8,), max_epochs=3, random_state=0, tighten=False, optimizer__weight_decay=1e-4)
    fast = NeuralNetRegressor(**params).fit(X_train, y_train)
    monkeypatch.setattr("fhe_estimators.skorch_speed.reads_batches", lambda *args: False)
    row_by_row = NeuralNetRegressor(**params).fit(X_train, y_train)
    np.testing.assert_array_equal(fast.predict(X_test), row_by_row.predict(X_test))

