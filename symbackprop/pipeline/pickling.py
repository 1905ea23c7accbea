"""Pickling compiled functions and train steps: the model by reference, then options and state.

A pickle never holds generated code: the model is stored as pickle stores any
function, by its module and qualified name, and the unpickled object compiles
again on its first call (the cache is per process; JIT code cannot be sent).
A model decorated in place (`@sb.train_step(...) def step(...)`) is not
reachable under its own name, whose module attribute is the wrapper: it is
stored as "the model behind the wrapper at module.qualname" instead.
"""
from __future__ import annotations

import importlib
import sys


def model_reference(fn):
    """What to pickle for the model `fn`: `fn` itself, or a stand-in for the model of a decorated name."""
    try:
        wrapper = _lookup(sys.modules[fn.__module__], fn.__qualname__)
    except (KeyError, AttributeError, TypeError):
        return fn  # pickle (or cloudpickle, which pickles it by value) says what it makes of it
    if wrapper is not fn and getattr(wrapper, "__symbackprop__", False) and getattr(wrapper, "fn", None) is fn:
        return _ModelBehind(fn.__module__, fn.__qualname__)
    return fn


class _ModelBehind:
    """Unpickles as the model of the symbackprop wrapper at `module.qualname`."""

    def __init__(self, module, qualname):
        self.module, self.qualname = module, qualname

    def __reduce__(self):
        return model_behind, (self.module, self.qualname)


def model_behind(module, qualname):
    """The model that the symbackprop wrapper named `module.qualname` compiles."""
    return _lookup(importlib.import_module(module), qualname).fn


def _lookup(module, qualname):
    if "<locals>" in qualname:
        raise AttributeError(qualname)
    obj = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj
