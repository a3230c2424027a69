"""Where skorch's parameter handling and scikit-learn's conventions disagree, and how we reconcile them.

skorch keeps fitted-looking attributes on unfitted nets, lists private attributes as parameters,
and (0.11) forgets ``optimizer__*`` values set on a fitted net; scikit-learn's ``clone``,
``get_params`` and its estimator checks need all three right. The estimators inherit this mixin.
"""

from __future__ import annotations

import inspect


def _stored_privately(name: str) -> property:
    """A property keeping skorch's attribute ``name`` in ``vars(self)`` under a private name.

    skorch sets ``history_``, ``initialized_`` and ``virtual_params_`` in ``__init__``;
    scikit-learn reads any public attribute ending in "_" as fitted state, so an
    unfitted net would look fitted (and fail ``check_no_attributes_set_in_init``).
    """
    private = "_" + name.rstrip("_")

    def get(self):
        try:
            return vars(self)[private]
        except KeyError:
            raise AttributeError(name) from None

    def set(self, value):
        vars(self)[private] = value

    return property(get, set, doc=f"skorch's ``{name}``, stored as ``{private}``.")


class SkorchParametersMixin:
    """skorch's parameter plumbing made to follow scikit-learn's conventions."""

    history_ = _stored_privately("history_")
    initialized_ = _stored_privately("initialized_")
    virtual_params_ = _stored_privately("virtual_params_")

    def _get_param_names(self):
        # skorch lists every attribute not ending in "_"; private ones and the module
        # (ours to build) are not parameters.
        return (name for name in super()._get_param_names() if name != "module" and not name.startswith("_"))

    def set_params(self, **params):
        """skorch's ``set_params``, keeping ``optimizer__*`` values as parameters.

        On a fitted net, skorch 0.11 only pushes ``optimizer__*`` into the live
        optimizer, so ``get_params`` and the next ``fit`` would still see the old
        value. "auto" is resolved at ``fit`` and never reaches a live optimizer.
        """
        optimizer_params = {key: value for key, value in params.items() if key.startswith("optimizer__")}
        live = {
            key: value
            for key, value in params.items()
            if not (key in optimizer_params and isinstance(value, str) and value == "auto")
        }
        super().set_params(**live)
        for key, value in optimizer_params.items():
            setattr(self, key, value)
            self._kwargs[key] = value
        return self

    def get_params_for_optimizer(self, prefix, named_parameters):
        """skorch's optimizer arguments, with the weight decay this fit resolved (``weight_decay_``).

        The default (or "auto") penalty is only passed to optimizers that take one.
        """
        args, kwargs = super().get_params_for_optimizer(prefix, named_parameters)
        takes_decay = "weight_decay" in kwargs or "weight_decay" in inspect.signature(getattr(self, prefix)).parameters
        if takes_decay and hasattr(self, "weight_decay_"):
            kwargs["weight_decay"] = self.weight_decay_  # the user's number, or the one "auto" chose
        return args, kwargs
