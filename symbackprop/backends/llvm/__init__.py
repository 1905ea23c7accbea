"""LLVM backend: the optimised IR lowered to one LLVM function, JIT-compiled, or exported as .ll/.so.

`attach(compiled)` gives a specialisation its LLVM IR (`.source`) and a Python
callable; `export(compiled, path)` writes IR text or a shared library with a C
header. Anything the lowering cannot handle raises CompileError naming it:
there is no fallback to NumPy.
"""
from __future__ import annotations


def attach(compiled):
    from .backend import attach as _attach
    return _attach(compiled)


def export(compiled, path):
    from .backend import export as _export
    return _export(compiled, path)
