"""Test-only hooks that plant a wrong local derivative, so that tests can show sb.check_grad catching it.

Each is a context manager: inside it, compilations use the wrong rule; on leaving, the right rule is
back. The SymPy derivations are cached by body (primitives/kernel_adjoint.derive), so the cache is
cleared on the way in and out; functions compiled before the block keep the code they have.
"""
import contextlib

import sympy

from symbackprop.primitives import kernel_adjoint, scalar


def _clear_caches():
    kernel_adjoint.derive.cache_clear()
    sympy.core.cache.clear_cache()


@contextlib.contextmanager
def wrong_derivative(name, derivative):
    """The scalar function `name` (a row of primitives.scalar.FUNCTIONS, e.g. "tanh") differentiates as
    `derivative(call, argindex)`: `call` is its SymPy application (tanh(u)); return the planted
    derivative with respect to argument `argindex` (1-based), in SymPy."""
    classes = scalar.FUNCTIONS[name].classes
    if not classes:
        raise ValueError(f"{name} is arithmetic (its derivative is SymPy's Add/Mul/Pow rule): plant one "
                         "in a function with a class of its own")
    for cls in classes:
        if cls._eval_derivative is not sympy.Function._eval_derivative:
            raise ValueError(f"{cls.__name__} differentiates by its own _eval_derivative, not fdiff")
    saved = [(cls, cls.__dict__.get("fdiff")) for cls in classes]
    _clear_caches()
    for cls in classes:
        cls.fdiff = lambda self, argindex=1: derivative(self, argindex)
    try:
        yield
    finally:
        for cls, fdiff in saved:
            if fdiff is None:
                del cls.fdiff
            else:
                cls.fdiff = fdiff
        _clear_caches()


@contextlib.contextmanager
def wrong_adjoint(prim, rule):
    """The primitive `prim` (an instance: symbackprop.primitives.linalg.MatMul) gets the adjoint
    `rule(right, node, gs, wants)`, where `right` is its own rule: return one gradient per input."""
    cls = type(prim)
    saved = cls.__dict__["adjoint"] if "adjoint" in cls.__dict__ else None
    right = prim.adjoint
    _clear_caches()
    cls.adjoint = lambda self, node, gs, wants: rule(right, node, gs, wants)
    try:
        yield
    finally:
        if saved is None:
            del cls.adjoint
        else:
            cls.adjoint = saved
        _clear_caches()
