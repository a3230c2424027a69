"""Train pruned, quantized neural networks with the scikit-learn API and predict on encrypted data.

Public API: :class:`NeuralNetClassifier`, :class:`NeuralNetRegressor`, :func:`omega`; for
deployment, :func:`load`, :class:`FHEClient` and :class:`FHEServer` (see :mod:`fhe_estimators.deploy`),
and :class:`RemoteClient` for a service started with ``fhe-estimators serve`` (:mod:`fhe_estimators.server`).
"""

from .budget import omega
from .deploy import FHEClient, FHEServer, load
from .estimators import NeuralNetClassifier, NeuralNetRegressor
from .process_exit import keep_exit_status
from .remote import RemoteClient

keep_exit_status()  # otherwise Concrete turns every exit status into 0 once a circuit has run: see process_exit

__version__ = "0.1.0"

__all__ = [
    "FHEClient",
    "FHEServer",
    "NeuralNetClassifier",
    "NeuralNetRegressor",
    "RemoteClient",
    "__version__",
    "load",
    "omega",
]
