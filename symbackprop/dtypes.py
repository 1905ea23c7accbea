"""16-bit floats: float16 (NumPy's) and bfloat16 (ml_dtypes', an optional dependency).

A model's float16/bfloat16 arrays are stored in 16 bits and computed in float32
(the trace widens each such parameter as it enters, pipeline/stages.py; each
statement's result is stored in 16 bits and widened where it is read,
passes/storage.py), and its results and gradients are given in 16 bits. bfloat16 is NumPy dtype kind
"V" (ml_dtypes registers it), so "is this a float" is asked here, never as
`dtype.kind == "f"` alone. ml_dtypes is imported only where a bfloat16 is made
from a name (`compute_dtype="bfloat16"`, generated code), with an ImportError
naming the extra when it is missing.
"""
from __future__ import annotations

import numpy as np

#: what 16-bit floats are computed in
COMPUTE = np.dtype(np.float32)

EXTRA = "symbackprop[bf16]"


def is_bfloat16(dtype) -> bool:
    dtype = np.dtype(dtype)
    return dtype.kind == "V" and dtype.name == "bfloat16" and dtype.itemsize == 2


def is_half(dtype) -> bool:
    """A 16-bit float: float16 or bfloat16."""
    dtype = np.dtype(dtype)
    return dtype == np.float16 or is_bfloat16(dtype)


def is_float(dtype) -> bool:
    """A real float dtype the compiler takes: float16/32/64 and bfloat16."""
    dtype = np.dtype(dtype)
    return dtype.kind == "f" or is_bfloat16(dtype)


def is_numeric(dtype) -> bool:
    """Bool, integer or float (bfloat16 included)."""
    dtype = np.dtype(dtype)
    return dtype.kind in "biuf" or is_bfloat16(dtype)


def ml_dtypes():
    """The ml_dtypes module, or an ImportError naming the extra that installs it."""
    try:
        import ml_dtypes as module  # optional: only bfloat16 needs it
    except ImportError:
        raise ImportError(f"bfloat16 needs the ml_dtypes package: pip install '{EXTRA}'") from None
    return module


def bfloat16() -> np.dtype:
    return np.dtype(ml_dtypes().bfloat16)


def named(name) -> np.dtype:
    """A dtype from its name ("float16", "bfloat16", "float32", ...) or a dtype."""
    if isinstance(name, str) and name == "bfloat16":
        return bfloat16()
    return np.dtype(name)


def text(dtype) -> str:
    """The dtype as generated NumPy code names it: np.float32, ml_dtypes.bfloat16."""
    dtype = np.dtype(dtype)
    return "ml_dtypes.bfloat16" if is_bfloat16(dtype) else f"np.{dtype}"


def tolerance(dtype) -> float:
    """A relative error to expect of one result computed in float32 from `dtype` inputs: a few of the
    dtype's rounding steps (eps: 9.8e-4 for float16, 7.8e-3 for bfloat16)."""
    return float(np.finfo(np.dtype(dtype)).eps) * 4
