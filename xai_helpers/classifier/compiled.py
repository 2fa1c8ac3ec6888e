"""Per-model state, in one place: compiled functions, derived models and what is known of a model (its
labels, where its weights came from), each built once per (model, name) and dropped with the model.

Every module that compiles a function of a Keras model (the forward passes, the attacks' gradients, IG's
path integrals, Grad-CAM) asks ``per_model(model, name, build)``: ``build()`` runs the first time, its value
is returned ever after, and nothing is kept once the model itself is gone (a weak reference).
"""
from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from typing import TypeVar

T = TypeVar("T")

_STATE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def model_state(model) -> dict:
    """The dict of everything kept for ``model`` (empty at first)."""
    return _STATE.setdefault(model, {})


def per_model(model, name: Hashable, build: Callable[[], T]) -> T:
    """Return the value kept for ``model`` under ``name``, built by ``build()`` the first time."""
    state = model_state(model)
    if name not in state:
        state[name] = build()
    return state[name]


def known(model, name: Hashable, default=None):
    """Return the value kept for ``model`` under ``name`` without building it (``default`` when there is none)."""
    state = _STATE.get(model)
    return default if state is None else state.get(name, default)


__all__ = ["known", "model_state", "per_model"]
