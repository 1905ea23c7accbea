"""What each argument of a call is for the compiler: its Spec, and the cheap cache key of a call.

A `Spec` says what one argument is at specialisation: an array (shape, dtype),
a Python float (a dynamic 0-d float64), or a static value that steers control
flow. The signature is the tuple of specs; `arg_key` is the per-call key that
finds it again without building specs (the cache of every entry point).
"""
from __future__ import annotations

import numbers
import re
from dataclasses import dataclass

import numpy as np

from .. import dtypes


@dataclass(frozen=True)
class Spec:
    name: str
    kind: str                 # "array" | "float" | "static"
    shape: tuple = ()
    dtype: np.dtype | None = None
    value: object = None      # for "static"

    @property
    def dynamic(self) -> bool:
        return self.kind != "static"

    def describe(self) -> str:
        if self.kind == "static":
            return f"{self.name}={self.value!r}"
        if self.kind == "float":
            return f"{self.name}: float"
        return f"{self.name}: {self.dtype}[{','.join(map(str, self.shape))}]"

    def key(self):
        return (self.kind, self.shape, self.dtype, self.value) if self.kind != "static" else \
            (self.kind, _static_key(self.value))


def _static_key(v):
    return (type(v).__name__, repr(v))


def spec_of(name, x, differentiated: bool) -> Spec:
    """What argument `x` of parameter `name` is for the compiler; TypeError if unusable."""
    if isinstance(x, np.ndarray) or isinstance(x, np.generic):
        dtype = x.dtype
        if not dtypes.is_numeric(dtype):
            raise TypeError(f"argument `{name}` has dtype {dtype}; models take numeric arrays "
                            "(float, int or bool)")
        if not dtype.isnative:  # generated code names dtypes as np.float64 and reads native memory
            raise TypeError(f"argument `{name}` has the non-native byte order {dtype.str}; pass "
                            f"{name}.astype({name}.dtype.newbyteorder('='))")
        if differentiated and not dtypes.is_float(dtype):
            raise TypeError(f"cannot differentiate with respect to `{name}` of dtype {dtype}; "
                            "pass a float array (x.astype(np.float64))")
        return Spec(name, "array", tuple(np.shape(x)), dtype)
    if isinstance(x, bool):
        if differentiated:
            raise TypeError(f"cannot differentiate with respect to `{name}`, a bool")
        return Spec(name, "static", value=x)
    if isinstance(x, float) or (differentiated and isinstance(x, numbers.Integral)):
        return Spec(name, "float", (), np.dtype(np.float64))
    if isinstance(x, list):
        try:
            arr = np.asarray(x)
        except ValueError:
            raise TypeError(f"argument `{name}` is a ragged list; pass a NumPy array") from None
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"argument `{name}` is a list of {arr.dtype} values; pass a numeric NumPy array")
        raise TypeError(f"argument `{name}` is a list; pass np.asarray({name}) (arrays only, so that "
                        "the signature is unambiguous)")
    if isinstance(x, (numbers.Integral, str, type(None))) or (
            isinstance(x, tuple) and all(isinstance(t, (int, float, str, bool, type(None))) for t in x)):
        if differentiated:
            raise TypeError(f"cannot differentiate with respect to `{name}` of type {type(x).__name__}")
        return Spec(name, "static", value=x)
    if isinstance(x, complex):
        raise TypeError(f"argument `{name}` is complex; models are real-valued")
    raise TypeError(f"argument `{name}` has type {type(x).__name__}; models take NumPy arrays, floats, "
                    "trees of them (tuples, lists and dicts), and ints/bools/strings/tuples that steer control flow")


FLOAT_KEY = ("float",)


def arg_key(x):
    """A cheap cache key for one argument; the full Spec is built only on a cache miss."""
    t = type(x)
    if t is float:
        return FLOAT_KEY
    if t is np.ndarray:
        return (x.shape, x.dtype)
    if t is int or t is bool:
        return (t, x)
    if isinstance(x, np.generic):
        return ("0d", x.dtype)
    if isinstance(x, (str, type(None))):
        return (t, x)
    if isinstance(x, tuple):
        try:
            hash(x)
            return (tuple, x)
        except TypeError:
            return ("unhashable", id(x))
    return ("other", t, id(x))


# ---- parameter trees --------------------------------------------------------------------
#
# A parameter may be a tree: nested tuples, lists and dicts of arrays and floats (and of ints, bools,
# strings and None, which steer control flow). The compiler sees its leaves as parameters of their own,
# in the order `flatten` visits them (tuples and lists by position, dicts in their insertion order), named
# by their paths (`params_layers_0_0` for params["layers"][0][0]); the model sees the tree rebuilt from
# them. The tree's structure and its static leaves are part of the signature.


@dataclass(frozen=True)
class Slot:
    """Where the k-th leaf of the flattened arguments sits in a parameter's tree."""
    index: int


_STATIC_LEAF = (bool, np.bool_, str, type(None))


def is_tree(x, differentiated: bool) -> bool:
    """Whether argument `x` is a parameter tree: a dict, a tuple/list holding an array or a dict anywhere,
    or a differentiated tuple of numbers. A tuple of plain numbers or strings not differentiated stays one
    static value that steers control flow, and a list of numbers alone is refused (np.asarray it)."""
    if isinstance(x, dict):
        return True
    if not isinstance(x, (tuple, list)):
        return False
    if any(isinstance(t, (np.ndarray, np.generic, dict)) or is_tree(t, False) for t in x):
        return True
    # a differentiated tuple of numbers is a tree of floats; a list of numbers is still refused by spec_of
    # (it reads as an array: pass np.asarray)
    return differentiated and isinstance(x, tuple)


def _path_part(k) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", str(k))


def flatten(name, x, differentiated: bool, spelled=False):
    """(tree with a Slot per dynamic leaf, [(path name, leaf)]) of argument `x` of parameter `name`; the path
    names are identifiers (params_layers_0_0), or with `spelled` as Python indexes them (params['layers'][0][0]).

    Dynamic leaves are arrays and floats (and ints in a differentiated tree); bools, strings, None and
    (undifferentiated) ints stay in the tree as the static values they are."""
    leaves: list = []

    def visit(t, path):
        if isinstance(t, dict):
            for k in t:
                if not isinstance(k, (str, int)) or isinstance(k, bool):
                    raise TypeError(f"argument `{name}` has the dict key {k!r}; tree keys are strings or ints")
            return {k: visit(v, f"{path}[{k!r}]" if spelled else f"{path}_{_path_part(k)}") for k, v in t.items()}
        if isinstance(t, (tuple, list)):
            items = [visit(v, f"{path}[{k}]" if spelled else f"{path}_{k}") for k, v in enumerate(t)]
            return tuple(items) if isinstance(t, tuple) else items
        if isinstance(t, _STATIC_LEAF) or (isinstance(t, numbers.Integral) and not differentiated
                                            and not isinstance(t, np.generic)):
            return t
        if isinstance(t, (np.ndarray, np.generic, numbers.Real)):
            leaves.append((path, t))
            return Slot(len(leaves) - 1)
        raise TypeError(f"argument `{name}` holds a {type(t).__name__} at `{path}`; a parameter tree holds "
                        "NumPy arrays and floats (and ints, bools and strings that steer control flow) in "
                        "tuples, lists and dicts")

    return visit(x, name), leaves


def tree_key(tree):
    """A hashable key of a flattened tree's structure and static leaves (the leaves' own keys go beside it)."""
    if isinstance(tree, dict):
        return ("dict",) + tuple((k, tree_key(v)) for k, v in tree.items())
    if isinstance(tree, (tuple, list)):
        return (type(tree).__name__,) + tuple(tree_key(v) for v in tree)
    if isinstance(tree, Slot):
        return tree
    return _static_key(tree)


def rebuild(tree, leaves):
    """The tree with `leaves[k]` for each Slot(k); static leaves as they are."""
    if isinstance(tree, Slot):
        return leaves[tree.index]
    if isinstance(tree, dict):
        return {k: rebuild(v, leaves) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(rebuild(v, leaves) for v in tree)
    return tree


def slots(tree) -> list:
    """The Slots of a tree in flattening order."""
    if isinstance(tree, Slot):
        return [tree]
    items = tree.values() if isinstance(tree, dict) else tree if isinstance(tree, (tuple, list)) else ()
    return [s for t in items for s in slots(t)]


def without_gradient(tree):
    """A gradient tree's static leaves: None (nothing to differentiate there)."""
    if isinstance(tree, dict):
        return {k: without_gradient(v) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(without_gradient(v) for v in tree)
    return tree if isinstance(tree, Slot) else None
