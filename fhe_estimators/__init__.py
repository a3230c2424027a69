"""Train pruned, quantized neural networks with the scikit-learn API and predict on encrypted data.

Public API: :class:`NeuralNetClassifier`, :class:`NeuralNetRegressor`, :func:`omega`.
"""

from .budget import omega
from .estimators import NeuralNetClassifier, NeuralNetRegressor

__version__ = "0.1.0"

__all__ = ["NeuralNetClassifier", "NeuralNetRegressor", "omega", "__version__"]
