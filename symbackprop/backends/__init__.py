"""The table of backends: the one place that knows each by name.

Each entry names the module and class of a Backend (backends/base.py). A
backend's module is imported when it is first used: the LLVM backend's modules
and llvmlite add about 0.1 s to `import symbackprop`, which a NumPy-only user
should not pay.
"""
from __future__ import annotations

import importlib

_TABLE = {
    "numpy": ("symbackprop.backends.numpy.backend", "NumpyBackend"),
    "llvm": ("symbackprop.backends.llvm.backend", "LLVMBackend"),
}
NAMES = tuple(_TABLE)
#: the backend of an entry point that names none
DEFAULT = "numpy"
_made: dict = {}


def get(name):
    """The backend called `name`; ValueError naming the choices for anything else."""
    backend = _made.get(name) if isinstance(name, str) else None
    if backend is None:
        if not isinstance(name, str) or name not in _TABLE:
            raise ValueError(f"backend must be one of {NAMES}, got {name!r}")
        module, cls = _TABLE[name]
        try:
            loaded = importlib.import_module(module)
        except ImportError as e:
            raise ImportError(f"the {name} backend cannot be loaded ({type(e).__name__}: {e}); "
                              "reinstall symbackprop's dependencies, or use another backend") from None
        backend = _made[name] = getattr(loaded, cls)()
    return backend


def for_export(suffix):
    """The backend that writes files ending in `suffix`, or None."""
    for name in NAMES:
        backend = get(name)
        if suffix in backend.exports:
            return backend
    return None
