"""What each argument of a call is for the compiler: its Spec, and the cheap cache key of a call.

A `Spec` says what one argument is at specialisation: an array (shape, dtype),
a Python float (a dynamic 0-d float64), or a static value that steers control
flow. The signature is the tuple of specs; `arg_key` is the per-call key that
finds it again without building specs (the cache of every entry point).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np


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
        if dtype.kind not in "biuf":
            raise TypeError(f"argument `{name}` has dtype {dtype}; models take numeric arrays "
                            "(float, int or bool)")
        if not dtype.isnative:  # generated code names dtypes as np.float64 and reads native memory
            raise TypeError(f"argument `{name}` has the non-native byte order {dtype.str}; pass "
                            f"{name}.astype({name}.dtype.newbyteorder('='))")
        if differentiated and dtype.kind != "f":
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
                    "and ints/bools/strings/tuples that steer control flow")


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
