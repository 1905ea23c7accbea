"""grad and value_and_grad: decorators, `wrt` resolution and the per-signature cache."""
from __future__ import annotations

import contextlib
import functools
import gc
import inspect
import os
import threading
from collections import OrderedDict

import numpy as np

from .compile import Compiled, compile_value_and_grad, load, numpy_module, spec_of
from .runtime import tune_allocator

BACKENDS = ("numpy", "llvm")
#: specialisations kept per function; the least recently used is dropped beyond this
CACHE_SIZE = 64

_FLOAT = ("float",)


def _arg_key(x):
    """A cheap cache key for one argument; the full Spec is built only on a cache miss."""
    t = type(x)
    if t is float:
        return _FLOAT
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


@contextlib.contextmanager
def _no_gc():
    """Compilation makes many small objects and no cycles worth collecting: the cyclic GC's full
    passes over them made compile time grow faster than the program."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def resolve_wrt(params, wrt):
    """Indices of the parameters to differentiate, and whether one gradient (not a tuple) is returned."""
    if wrt is None:
        if not params:
            raise ValueError("the model has no parameters to differentiate")
        return (0,), True
    single = isinstance(wrt, (str, int))
    items = [wrt] if single else list(wrt)
    if not items:
        raise ValueError("wrt is empty; name at least one parameter")
    indices = []
    for w in items:
        if isinstance(w, bool) or not isinstance(w, (str, int)):
            raise TypeError(f"wrt entries are parameter names or indices, got {w!r}")
        if isinstance(w, str):
            if w not in params:
                raise ValueError(f"wrt names `{w}`, which is not a parameter of the model ({', '.join(params)})")
            indices.append(params.index(w))
        else:
            if not -len(params) <= w < len(params):
                raise ValueError(f"wrt index {w} is out of range for {len(params)} parameters")
            indices.append(w % len(params))
    if len(set(indices)) != len(indices):
        raise ValueError(f"wrt repeats a parameter: {wrt!r}")
    return tuple(indices), single


class GradFunction:
    """The compiled gradient of a model; call it like the model."""

    __symbackprop__ = True

    def __init__(self, fn, wrt=None, backend="numpy", with_value=True):
        if not callable(fn) or not hasattr(fn, "__code__"):
            raise TypeError(f"expected a Python function, got {type(fn).__name__}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.backend = backend
        self.with_value = with_value
        self._signature = inspect.signature(fn)
        self.params = list(self._signature.parameters)
        self.wrt, self.single = resolve_wrt(self.params, wrt)
        self._wrt_set = frozenset(self.wrt)
        self._cache: OrderedDict = OrderedDict()
        self._forwards: dict = {}
        self._lock = threading.Lock()
        self._last: Compiled | None = None
        self.compilations = 0
        # a class of its own, so that its __call__ can become generated code checking the last signature
        self.__class__ = type(f"GradFunction_{fn.__name__}", (GradFunction,), {})

    # ---- calling ---------------------------------------------------------------
    def _arguments(self, args, kwargs):
        if not kwargs and len(args) == len(self.params):
            return args
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{self.fn.__name__}(): {e}") from None
        bound.apply_defaults()
        return tuple(bound.arguments[p] for p in self.params)

    def __call__(self, *args, **kwargs):
        return self._general(*args, **kwargs)

    def _general(self, *args, **kwargs):
        """Any call: find or compile the specialisation for these arguments, then run it."""
        args = self._arguments(args, kwargs)
        key = tuple(map(_arg_key, args))
        entry = self._cache.get(key)
        if entry is None:
            entry = self._specialise(key, args)
            self._install_fast_path(key, entry)
        else:
            self._cache.move_to_end(key)
            self._last = entry
        result = entry.call(*args)
        return result if self.with_value else result[1]

    def _install_fast_path(self, key, entry):
        """Make __call__ generated code that checks the argument types of `key` and runs `entry` directly."""
        from .rendering import render
        namespace = {"_run": entry.call, "_ndarray": np.ndarray}
        guards, dynamic = [], []
        for p, k, spec in zip(self.params, key, entry.specs):
            if k is _FLOAT:
                guards.append(f"type({p}) is float")
            elif k[0] == "0d" or len(k) == 2 and isinstance(k[1], np.dtype) and isinstance(k[0], tuple):
                if k[0] == "0d":
                    namespace[f"_type_{p}"] = spec.dtype.type
                    guards.append(f"type({p}) is _type_{p}")
                else:
                    namespace[f"_dtype_{p}"] = k[1]
                    guards.append(f"type({p}) is _ndarray and {p}.dtype is _dtype_{p} and {p}.shape == {k[0]!r}")
            elif k[0] in (int, bool, str, type(None), tuple):
                namespace[f"_type_{p}"], namespace[f"_value_{p}"] = type(spec.value), spec.value
                guards.append(f"type({p}) is _type_{p} and {p} == _value_{p}")
            else:
                return  # nothing cheap to check: every call takes the general path
            if spec.dynamic:
                dynamic.append(p)
        if any(s.kind == "static" for s in entry.specs):
            namespace["_run"] = entry.run_dynamic
        fallback = getattr(entry, "scalar", False) and self.backend == "numpy"
        if fallback:
            namespace["_run"] = entry.namespace["_value_and_grad_math"]
            namespace["_fallback"] = entry.namespace["_value_and_grad_numpy"]
        params, forward = [], []
        for p in self._signature.parameters.values():
            if p.kind is p.KEYWORD_ONLY and "*" not in params:
                params.append("*")
            if p.default is not p.empty:
                namespace[f"_default_{p.name}"] = p.default
                params.append(f"{p.name}=_default_{p.name}")
            else:
                params.append(p.name)
            forward.append(f"{p.name}={p.name}" if p.kind is p.KEYWORD_ONLY else p.name)
        text = render("fast_path.py.j2", params=params, guards=guards or ["True"], dynamic=dynamic,
                      forward=forward, fallback=fallback, suffix="" if self.with_value else "[1]")
        exec(compile(text, f"<symbackprop fast path of {self.fn.__name__}>", "exec"), namespace)
        type(self).__call__ = namespace["__call__"]

    def _specialise(self, key, args):
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None:
                return entry
            specs = tuple(spec_of(name, a, i in self._wrt_set) for i, (name, a) in enumerate(zip(self.params, args)))
            entry = self._compile(specs)
            self._cache[key] = entry
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
            self._last = entry
            return entry

    def _compile(self, specs):
        if any(s.kind == "array" and s.shape for s in specs):
            tune_allocator()
        with _no_gc():
            return self._compile_now(specs)

    def _compile_now(self, specs):
        if self.backend == "llvm":
            for s in specs:
                if s.kind == "array" and s.dtype.kind == "f" and s.dtype.name not in ("float32", "float64"):
                    raise TypeError(f"argument `{s.name}` has dtype {s.dtype}; the LLVM backend takes float32 "
                                    "and float64 arrays (use backend='numpy', or convert it)")
        compiled = compile_value_and_grad(self.fn, specs, self.wrt, self.single, self.backend)
        if self.backend == "llvm":
            from .backends.llvm import attach
            attach(compiled)
        else:
            namespace = load(compiled.source, f"<symbackprop {self.fn.__name__}>")
            compiled.namespace = namespace
            run = namespace["value_and_grad"]
            compiled.run_dynamic = run
            dynamic = [i for i, s in enumerate(specs) if s.dynamic]
            if len(dynamic) == len(specs):
                compiled.call = run
            else:
                compiled.call = lambda *a: run(*[a[i] for i in dynamic])
        self.compilations += 1
        return compiled

    def specialise(self, *args, **kwargs) -> Compiled:
        """Compile (or fetch) the specialisation for these arguments without running it."""
        args = self._arguments(args, kwargs)
        key = tuple(map(_arg_key, args))
        return self._cache.get(key) or self._specialise(key, args)

    # ---- inspection and export ------------------------------------------------
    @property
    def source(self) -> str:
        """The generated code of the last specialisation (NumPy source, or LLVM IR for backend="llvm")."""
        if self._last is None:
            raise RuntimeError(f"{self.fn.__name__} has not been called yet: call it (or .specialise(...)) "
                               "with example arguments first")
        return self._last.source

    def export(self, path, *args, **kwargs):
        """Write the specialisation for `args` (default: the last one) as a standalone .py, .ll or .so."""
        compiled = self.specialise(*args, **kwargs) if (args or kwargs) else self._last
        if compiled is None:
            raise RuntimeError("nothing to export yet: pass example arguments, or call the function first")
        path = os.fspath(path)
        suffix = os.path.splitext(path)[1]
        if suffix == ".py":
            text = export_python(compiled)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            return path
        if suffix in (".ll", ".so"):
            from .backends.llvm import export as llvm_export
            return llvm_export(compiled, path)
        raise ValueError(f"cannot export to {path!r}: use a .py, .ll or .so file name")

    def forward(self, *args, **kwargs):
        """The loss alone, from compiled forward code on this function's backend (no gradient work)."""
        from .compile import forward_callable
        args = self._arguments(args, kwargs)
        key = tuple(map(_arg_key, args))
        run = self._forwards.get(key)
        if run is None:
            with self._lock:
                specs = tuple(spec_of(n, a, False) for n, a in zip(self.params, args))
                run = self._forwards[key] = forward_callable(self.fn, specs, self.backend)
                if len(self._forwards) > CACHE_SIZE:
                    self._forwards.pop(next(iter(self._forwards)))
        return run(*args)

    def explain(self, *args, **kwargs) -> str:
        """The backprop table for `args` (default: the last specialisation)."""
        from .explain import explain
        return explain(self, *args, **kwargs)

    def __repr__(self):
        kind = "value_and_grad" if self.with_value else "grad"
        return f"<symbackprop {kind} of {self.fn.__name__} wrt {[self.params[i] for i in self.wrt]} ({self.backend})>"


def export_python(compiled) -> str:
    """The standalone module: forward(...) and value_and_grad(...) with the model's parameters."""
    text = numpy_module(compiled, with_forward=True)
    statics = [s for s in compiled.specs if not s.dynamic]
    if not statics:
        return text
    # static parameters were fixed at specialisation: accept them, check them, drop them
    from .rendering import render
    text = text.replace("\ndef forward(", "\ndef _forward(").replace("\ndef value_and_grad(", "\ndef _value_and_grad(")
    text = text.replace("return _value_and_grad_math(", "return _value_and_grad_math(")
    return text.rstrip("\n") + "\n" + render(
        "static_wrappers.py.j2", specs=compiled.specs,
        dynamic=[s.name for s in compiled.specs if s.dynamic])


def _decorator(with_value):
    def make(f=None, wrt=None, backend="numpy"):
        if f is None:
            return lambda g: GradFunction(g, wrt=wrt, backend=backend, with_value=with_value)
        if isinstance(f, (str, int, tuple, list)) and not callable(f):
            raise TypeError("pass the model first, or use keywords: @sb.grad(wrt=...)")
        return GradFunction(f, wrt=wrt, backend=backend, with_value=with_value)
    return make


grad = _decorator(with_value=False)
grad.__doc__ = """grad(f, wrt=None, backend="numpy"): a callable returning the gradient of f's scalar result."""
value_and_grad = _decorator(with_value=True)
value_and_grad.__doc__ = """value_and_grad(f, wrt=None, backend="numpy"): a callable returning (value, gradient)."""
