"""skorch's per-batch plumbing, made cheap for our small networks, with the same results.

Two pieces of skorch's loop cost time that the network does not need (measured on digits' 1,010
training rows of a hold-out candidate, batches of 64):

- skorch sets every module's training mode before every batch; a brevitas network has about 50
  submodules, and ``nn.Module.train`` sets each one through ``__setattr__`` even when nothing
  changes (0.56 ms a batch; checking the modes takes 0.29);
- torch's ``DataLoader`` reads a batch one row at a time (skorch's ``Dataset.__getitem__`` per row,
  then ``default_collate`` stacks the rows): 1.19 s per 100 epochs, 0.56 s read in one indexing,
  which gives the same tensors.

And skorch's indexing of a batch turns the row numbers into a list that scikit-learn's
``_safe_indexing`` inspects one by one (2.1 s of a 69 s profiled default fit on the 5-class
benchmark set); arrays are now indexed directly. (The modes' check still walks the module tree
before every batch: brevitas replaces quantizer modules after a network is built, a weight's
quantizer on ``prune.remove`` and every one on ``load_state_dict``, so a list kept of them goes stale.)

Together a few percent of a fit, with the same outputs to the bit (tests/test_skorch_speed.py).

The estimators inherit :class:`FastBatchLoopMixin`; both overrides fall back to skorch's own code
wherever the shortcut would not give the same thing (a user's iterator or its options, a pandas or
sparse ``X``, no ``y``).
"""

from __future__ import annotations

import numpy as np
import skorch
import torch
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler


class _BatchIndexedDataset(torch.utils.data.Dataset):
    """A skorch ``Dataset`` read a batch at a time: ``self[[i, j, ...]]`` is the batch of those rows."""

    def __init__(self, dataset: skorch.dataset.Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, rows):
        # What skorch's ``Dataset[rows]`` gives for arrays (:func:`reads_batches` checked them),
        # without its row-by-row inspection of the index.
        rows = np.asarray(rows)
        return self.dataset.transform(self.dataset.X[rows], self.dataset.y[rows])


def reads_batches(dataset, iterator, kwargs: dict) -> bool:
    """Whether a batch of ``dataset`` can be read in one indexing with the same result: torch's
    own ``DataLoader`` asked for nothing but a batch size, over numpy ``X`` and ``y``."""
    return (
        iterator is DataLoader
        and set(kwargs) == {"batch_size"}
        and type(dataset) is skorch.dataset.Dataset
        and isinstance(dataset.X, np.ndarray)
        and isinstance(dataset.y, np.ndarray)
    )


def batch_loader(dataset: skorch.dataset.Dataset, batch_size: int) -> DataLoader:
    """The batches ``DataLoader(dataset, batch_size=batch_size)`` gives, in the same order (and
    drawing the same from torch's random generator), each read in one indexing."""
    batches = BatchSampler(SequentialSampler(dataset), batch_size, drop_last=False)
    return DataLoader(_BatchIndexedDataset(dataset), batch_size=None, sampler=batches)


class FastBatchLoopMixin:
    """skorch's ``_set_training`` and ``get_iterator``, without their per-batch overhead."""

    def _set_training(self, training: bool = True) -> None:
        """Set the modules' mode only where one differs (skorch sets it before every batch)."""
        for name in self._modules + self._criteria:
            module = getattr(self, name + "_")
            if isinstance(module, torch.nn.Module) and any(m.training != training for m in module.modules()):
                module.train(training)

    def get_iterator(self, dataset, training: bool = False):
        """skorch's iterator, or :func:`batch_loader` where it gives the same batches."""
        prefix = "iterator_train" if training else "iterator_valid"
        kwargs = self.get_params_for(prefix)
        if "batch_size" not in kwargs:
            kwargs["batch_size"] = self.batch_size
        if kwargs["batch_size"] == -1:
            kwargs["batch_size"] = len(dataset)
        if reads_batches(dataset, getattr(self, prefix), kwargs):
            return batch_loader(dataset, kwargs["batch_size"])
        return super().get_iterator(dataset, training=training)
