"""Pickling (``pickle``, ``joblib``, ``copy.deepcopy``) of the estimators.

skorch's own ``__getstate__``/``__setstate__`` do the work (torch attributes such as the
optimizer go through ``torch.save``, devices are mapped on load); this mixin adds only what
FHE needs. The network is stored as constructor arguments and weights
(:meth:`QuantMLP.to_state`), since brevitas' quantizers do not pickle, and the compiled
circuit never is: it holds keys. A compiled model compiles again on load (deterministic);
keys are generated when needed.
"""

from __future__ import annotations

from types import SimpleNamespace

import skorch
import torch

from .module import QuantMLP

#: Never pickled: the compiled circuit (and its keys), rebuilt from the weights on load.
COMPILED_ATTRIBUTES = ("quantized_module_", "fhe_circuit_")


def _same_shapes(saved: torch.optim.Optimizer, new: torch.optim.Optimizer) -> bool:
    """Whether ``saved`` optimized parameters shaped like ``new``'s (not so after a neuron
    removal that has not reset the optimizer yet: its state would not fit)."""
    shapes = [[tuple(p.shape) for p in group["params"]] for group in saved.param_groups]
    return shapes == [[tuple(p.shape) for p in group["params"]] for group in new.param_groups]


class PicklingMixin:
    """skorch's pickling, with the network as weights and without the circuit."""

    def __getstate__(self):
        state = {name: value for name, value in vars(self).items() if name not in COMPILED_ATTRIBUTES}
        module = state.pop("module_", None)
        # skorch's method reads only the instance's __dict__ and cuda_dependent_attributes_
        # (a class attribute until skorch registers the first module).
        state = skorch.NeuralNet.__getstate__(
            SimpleNamespace(**{"cuda_dependent_attributes_": self.cuda_dependent_attributes_, **state})
        )
        if "cuda_dependent_attributes_" not in vars(self):
            del state["cuda_dependent_attributes_"]
        state["_module_state"] = None if module is None else module.to_state()
        return state

    def __setstate__(self, state):
        module_state = state.pop("_module_state", None)
        super().__setstate__(state)
        if module_state is not None:
            self.module_ = QuantMLP.from_state(module_state).to(self.device)
            self._rebind_optimizer()
        if hasattr(self, "circuit_report_"):
            self.compile(**self.compile_arguments_)

    def _rebind_optimizer(self) -> None:
        """A new optimizer on the rebuilt network's parameters, with the pickled one's state
        (Adam's moments), so training continues where it stopped."""
        saved = getattr(self, "optimizer_", None)
        self.initialize_optimizer()
        if saved is not None and _same_shapes(saved, self.optimizer_):
            self.optimizer_.load_state_dict(saved.state_dict())
