"""Plain torch modules for testing the pruning callback outside our estimators."""

import torch
from torch import nn


class TwoLayer(nn.Module):
    """12 inputs -> ``hidden`` ReLU units -> 2 outputs."""

    def __init__(self, hidden=10):
        super().__init__()
        self.hidden = nn.Linear(12, hidden)
        self.out = nn.Linear(hidden, 2)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x)))
