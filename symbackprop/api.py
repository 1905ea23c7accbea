"""grad and value_and_grad: the decorators and the callable they make.

The cache, compilation, fast path and export are the Specialiser's
(pipeline/specialiser.py), shared with train_step. A GradFunction pickles as
its model (by reference) and options, and compiles again on its first call.
"""
from __future__ import annotations

import functools
import inspect

import numpy as np

from . import dtypes
from .backends import NAMES as BACKENDS  # noqa: F401  (the backends' names, for users and the CLI)
from .explain import explain, explain_entry
from .pipeline.pickling import model_reference
from .pipeline.specialiser import CACHE_SIZE, Specialiser, install_fast_path  # noqa: F401  (CACHE_SIZE: documented)
from .program import Program
from .transforms.recompute import parse_budget


class GradFunction:
    """The compiled gradient of a model; call it like the model."""

    __symbackprop__ = True

    def __init__(self, fn, wrt=None, backend="numpy", with_value=True, has_aux=False, memory_budget=None):
        if not isinstance(has_aux, bool):
            raise TypeError(f"has_aux is True or False, got {has_aux!r}")
        self.memory_budget = parse_budget(memory_budget)
        fields = {}
        if has_aux:
            fields["has_aux"] = True
        if self.memory_budget is not None:
            fields["memory_budget"] = self.memory_budget
        self.specialiser = Specialiser(fn, "value_and_grad", backend, wrt, fields=fields or None)
        self.has_aux = has_aux
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.backend = self.specialiser.backend.name
        self.with_value = with_value
        self.params = self.specialiser.params
        self.wrt, self.single = self.specialiser.wrt, self.specialiser.single
        # a class of its own, so that its __call__ can become generated code checking the last signature
        self.__class__ = type(f"GradFunction_{fn.__name__}", (GradFunction,), {})

    @property
    def compilations(self) -> int:
        return self.specialiser.compilations

    @property
    def derivative_entry(self) -> str:
        """What a model calling this function gets: the gradient, or the value and gradient."""
        return "value_and_grad" if self.with_value else "grad"

    @property
    def _cache(self):
        return self.specialiser.cache

    @property
    def _last(self) -> Program | None:
        return self.specialiser.last

    # ---- calling ---------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        return self._general(*args, **kwargs)

    def _general(self, *args, **kwargs):
        """Any call: find or compile the specialisation for these arguments, then run it."""
        s = self.specialiser
        args = s.arguments(args, kwargs)
        s, args = s.flat(args)  # parameter trees: their leaves, and the specialiser of their structure
        key = s.key(args)
        known = key in s.cache
        entry = s.lookup(key, args)
        if not known:
            install_fast_path(self, s, key, entry, suffix="" if self.with_value or self.has_aux else "[1]",
                              finish=None if self.with_value or not self.has_aux else gradient_and_aux)
        result = entry.call(*args)
        if s.trees is not None:
            result = (result[0], s.gradient_tree(result[1]))
        if self.with_value:
            return result
        return gradient_and_aux(result) if self.has_aux else result[1]

    def specialise(self, *args, **kwargs) -> Program:
        """Compile (or fetch) the specialisation for these arguments without running it."""
        s = self.specialiser
        s, args = s.flat(s.arguments(args, kwargs))
        return s.lookup(s.key(args), args)

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
        return self.specialiser.export(path, compiled)

    def forward(self, *args, **kwargs):
        """The loss alone, from compiled forward code on this function's backend (no gradient work)."""
        s, args = self.specialiser.flat(self.specialiser.arguments(args, kwargs))
        return s.forward(args)

    def memory(self, *args, **kwargs):
        """The memory report for `args` (default: the last specialisation): residuals kept and their bytes,
        what is recomputed under the budget and its flops, the peak of live bytes."""
        compiled = self.specialise(*args, **kwargs) if (args or kwargs) else self._last
        if compiled is None:
            raise RuntimeError("no specialisation yet: pass example arguments, or call the function first")
        return self.specialiser.memory(compiled)

    def explain(self, *args, **kwargs) -> str:
        """The backprop table for `args` (default: the last specialisation)."""
        return explain(self, *args, **kwargs)

    def __reduce__(self):
        # its class is made per instance (see __init__): rebuild it rather than pickle the class by name
        wrt = self.wrt[0] if self.single else self.wrt
        return _restore, (model_reference(self.fn), wrt, self.backend, self.with_value, self.has_aux,
                          self.memory_budget)

    def __repr__(self):
        kind = ("value_and_grad" if self.with_value else "grad") + (" (has_aux)" if self.has_aux else "")
        return f"<symbackprop {kind} of {self.fn.__name__} wrt {[self.params[i] for i in self.wrt]} ({self.backend})>"


def gradient_and_aux(result):
    """grad with has_aux=True: ((value, aux), gradient) -> (gradient, aux)."""
    return result[1], result[0][1]


def _restore(fn, wrt, backend, with_value, has_aux=False, memory_budget=None):
    return GradFunction(fn, wrt=wrt, backend=backend, with_value=with_value, has_aux=has_aux,
                        memory_budget=memory_budget)


def _decorator(with_value):
    def make(f=None, wrt=None, backend="numpy", has_aux=False, memory_budget=None):
        options = {"wrt": wrt, "backend": backend, "with_value": with_value, "has_aux": has_aux,
                   "memory_budget": memory_budget}
        if f is None:
            parse_budget(memory_budget)  # a bad budget raises at the decorator, not at the first call
            return lambda g: GradFunction(g, **options)
        if isinstance(f, (str, int, tuple, list)) and not callable(f):
            raise TypeError("pass the model first, or use keywords: @sb.grad(wrt=...)")
        return GradFunction(f, **options)
    return make


grad = _decorator(with_value=False)
grad.__doc__ = """grad(f, wrt=None, backend="numpy", has_aux=False, memory_budget=None): a callable returning the
gradient of f's scalar result; with has_aux=True f returns (loss, aux) and the callable (gradient, aux); under
memory_budget (bytes, or "64MB", "1.5GiB") residuals beyond it are recomputed."""
value_and_grad = _decorator(with_value=True)
value_and_grad.__doc__ = """value_and_grad(f, wrt=None, backend="numpy", has_aux=False, memory_budget=None): a callable
returning (value, gradient); with has_aux=True f returns (loss, aux) and the callable ((value, aux), gradient); under
memory_budget (bytes, or "64MB", "1.5GiB") residuals beyond it are recomputed."""


# ---- forward mode and higher order -------------------------------------------------------------

#: each derivative entry point's keyword for its direction (None: it takes none)
DIRECTIONS = {"jvp": "tangents", "vjp": "cotangent", "hvp": "v", "jacobian": None, "hessian": None}


class DerivativeFunction:
    """A compiled jvp, vjp, jacobian, hessian or hvp of a model; call it like the model (plus the
    direction: `tangents=`, `cotangent=` or `v=`)."""

    __symbackprop__ = True

    def __init__(self, fn, entry, wrt=None, backend="numpy", has_aux=False, memory_budget=None):
        if not isinstance(has_aux, bool):
            raise TypeError(f"has_aux is True or False, got {has_aux!r}")
        self.memory_budget = _budget_for(entry, memory_budget)
        self.has_aux = has_aux
        fields = {}
        if has_aux:
            fields["has_aux"] = True
        if self.memory_budget is not None:
            fields["memory_budget"] = self.memory_budget
        self.specialiser = Specialiser(fn, entry, backend, wrt, fields=fields or None)
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.entry = self.derivative_entry = entry
        self.backend = self.specialiser.backend.name
        self.params = self.specialiser.params
        self.wrt, self.single = self.specialiser.wrt, self.specialiser.single

    @property
    def compilations(self) -> int:
        return self.specialiser.compilations

    @property
    def _last(self) -> Program | None:
        return self.specialiser.last

    def __call__(self, *args, **kwargs):
        keyword = DIRECTIONS[self.entry]
        direction = None
        if keyword is not None:
            if keyword not in kwargs:
                raise TypeError(f"{self.fn.__name__}(): sb.{self.entry} needs `{keyword}=`: "
                                f"{self._direction_text()}")
            direction = kwargs.pop(keyword)
        program = self.specialise(*args, **kwargs)
        s = self.specialiser
        args = s.arguments(args, kwargs)
        extra = self._directions(program, direction) if keyword is not None else []
        _, outs = program.call(*args, *extra)
        return self._shaped(program, outs)

    def specialise(self, *args, **kwargs) -> Program:
        """Compile (or fetch) the specialisation for these arguments (the model's) without running it; the
        direction (`v=`, `tangent=`, `cotangent=`) may be passed as to a call, and is not needed."""
        s = self.specialiser
        keyword = DIRECTIONS[self.entry]
        if keyword is not None and keyword in kwargs:
            kwargs = {k: v for k, v in kwargs.items() if k != keyword}
        args = s.arguments(args, kwargs)
        return s.lookup(s.key(args), args)

    def _direction_text(self):
        names = [self.params[i] for i in self.wrt]
        what = {"jvp": "a tangent", "hvp": "a vector", "vjp": "a cotangent"}[self.entry]
        if self.entry == "vjp":
            return f"{what} shaped like the function's result"
        if self.single:
            return f"{what} shaped like `{names[0]}`"
        return f"a tuple of {len(names)}, {what} shaped like each of {', '.join(f'`{n}`' for n in names)}"

    def _directions(self, program, direction):
        specs = program.specs[len(self.params):]
        keyword = DIRECTIONS[self.entry]
        if self.entry == "vjp" or self.single:
            items = [direction]
        else:
            if not isinstance(direction, (tuple, list)) or len(direction) != len(specs):
                raise TypeError(f"{self.fn.__name__}(): `{keyword}=` is {self._direction_text()}")
            items = list(direction)
        out = []
        for spec, d, i in zip(specs, items, self.wrt if self.entry != "vjp" else [None]):
            whose = "the function's result" if i is None else f"`{self.params[i]}`"
            if spec.kind == "float":
                if not isinstance(d, (int, float, np.integer, np.floating)) or isinstance(d, bool):
                    if not (isinstance(d, np.ndarray) and d.shape == ()):
                        raise TypeError(f"{self.fn.__name__}(): `{keyword}=` for {whose} is a number, "
                                        f"got {type(d).__name__}")
                out.append(float(d))
                continue
            a = np.asarray(d)
            if not dtypes.is_numeric(a.dtype):
                raise TypeError(f"{self.fn.__name__}(): `{keyword}=` for {whose} must be numeric, got {a.dtype}")
            if a.shape != spec.shape:
                raise ValueError(f"{self.fn.__name__}(): `{keyword}=` for {whose} has shape {a.shape}; "
                                 f"it must have shape {spec.shape}")
            out.append(a.astype(spec.dtype, copy=False))
        return out

    def _shaped(self, program, outs):
        """What the callable returns: with has_aux=True, ((value, aux), derivative) where the entry point
        returns the value beside its derivative (jvp, vjp), else (derivative, aux), as grad and
        value_and_grad do."""
        if not program.model_aux:
            return self._derivative(outs)
        outs, aux = outs
        result = self._derivative(outs)
        if self.entry in ("jvp", "vjp"):
            return (result[0], aux), result[1]
        return result, aux

    def _derivative(self, outs):
        one = self.single
        if self.entry == "jvp":
            return outs[0], outs[1]
        if self.entry == "vjp":
            grads = outs[1:]
            return outs[0], grads[0] if one else tuple(grads)
        if self.entry in ("hvp", "jacobian"):
            return outs[0] if one else tuple(outs)
        k = len(self.wrt)  # hessian: row-major blocks
        return outs[0] if one else tuple(tuple(outs[i * k:(i + 1) * k]) for i in range(k))

    # ---- inspection ----------------------------------------------------------------
    @property
    def source(self) -> str:
        """The generated code of the last specialisation (NumPy source, or LLVM IR for backend="llvm")."""
        if self._last is None:
            raise RuntimeError(f"{self.fn.__name__} has not been called yet: call it (or .specialise(...)) "
                               "with example arguments first")
        return self._last.source

    def export(self, path, *args, **kwargs):
        """Write the specialisation for `args` (the model's; default: the last one) as a standalone .py
        (a function named after the entry point, taking the model's arguments then the direction's), .ll
        or .so (its C header beside it: the direction is an input, the outputs are written as aux_k)."""
        compiled = self.specialise(*args, **kwargs) if (args or kwargs) else self._last
        if compiled is None:
            raise RuntimeError("nothing to export yet: pass example arguments, or call the function first")
        return self.specialiser.export(path, compiled)

    def memory(self, *args, **kwargs):
        """The memory report for `args` (the model's; default: the last specialisation): the forward values
        the derivative passes read (residuals) and their bytes, what is recomputed under memory_budget, the
        peak of live bytes."""
        compiled = self.specialise(*args, **kwargs) if (args or kwargs) else self._last
        if compiled is None:
            raise RuntimeError("no specialisation yet: pass example arguments, or call the function first")
        return self.specialiser.memory(compiled)

    def explain(self, *args, **kwargs) -> str:
        """What the entry point computes for `args` (default: the last specialisation): for the ones built on
        reverse mode the model's backprop table, then each tangent statement forward mode emitted."""
        compiled = self.specialise(*args, **kwargs) if (args or kwargs) else self._last
        if compiled is None:
            raise RuntimeError("no specialisation yet: pass example arguments, or call the function first")
        return explain_entry(self, compiled, args, kwargs)

    def __reduce__(self):
        wrt = self.wrt[0] if self.single else self.wrt
        return DerivativeFunction, (model_reference(self.fn), self.entry, wrt, self.backend, self.has_aux,
                                    self.memory_budget)

    def __repr__(self):
        kind = self.entry + (" (has_aux)" if self.has_aux else "")
        return f"<symbackprop {kind} of {self.fn.__name__} wrt {[self.params[i] for i in self.wrt]} ({self.backend})>"


def _budget_for(entry, memory_budget):
    """The budget in bytes; forward mode alone (jvp) keeps no values for a later pass, so none applies."""
    if entry == "jvp" and memory_budget is not None:
        raise TypeError("sb.jvp takes no memory_budget: forward mode computes each tangent beside its value "
                        "and keeps nothing for a later pass; memory_budget= applies to sb.vjp, sb.jacobian, "
                        "sb.hessian and sb.hvp")
    return parse_budget(memory_budget)


def _entry(entry, doc):
    def make(f=None, wrt=None, backend="numpy", has_aux=False, memory_budget=None):
        options = {"wrt": wrt, "backend": backend, "has_aux": has_aux, "memory_budget": memory_budget}
        if f is None:
            _budget_for(entry, memory_budget)  # a bad budget raises at the decorator, not at the first call
            return lambda g: DerivativeFunction(g, entry, **options)
        if isinstance(f, (str, int, tuple, list)) and not callable(f):
            raise TypeError(f"pass the model first, or use keywords: @sb.{entry}(wrt=...)")
        return DerivativeFunction(f, entry, **options)
    make.__name__ = make.__qualname__ = entry
    make.__doc__ = doc
    return make


jvp = _entry("jvp", """jvp(f, wrt=None, backend="numpy"): a callable `(*args, tangents=...)` returning
(value, directional derivative) in one forward pass; one tangent per wrt parameter (a tuple for a tuple wrt).""")
vjp = _entry("vjp", """vjp(f, wrt=None, backend="numpy"): a callable `(*args, cotangent=...)` returning
(value, gradients) of f's (possibly array) result contracted with the cotangent.""")
jacobian = _entry("jacobian", """jacobian(f, wrt=None, backend="numpy"): a callable returning the Jacobian, shape
f's result shape + the parameter's shape (a tuple for a tuple wrt); forward or reverse mode by the smaller side,
the basis carried as a leading batch axis through one program.""")
hessian = _entry("hessian", """hessian(f, wrt=None, backend="numpy"): a callable returning the Hessian of f's scalar
result, shape parameter shape + parameter shape (nested tuples of blocks for a tuple wrt).""")
hvp = _entry("hvp", """hvp(f, wrt=None, backend="numpy"): a callable `(*args, v=...)` returning the Hessian-vector
product by forward over reverse mode, without forming the Hessian.""")

_OPTIONS = """
has_aux=True: f returns (result, aux), aux a tree of arrays and numbers computed by the same forward pass and
never differentiated; the callable returns ((value, aux), derivative) for jvp and vjp, (derivative, aux) for
jacobian, hessian and hvp. memory_budget (bytes, or "64MB", "1.5GiB"; not for jvp, which keeps no residuals):
the forward values the backward pass reads beyond it are recomputed there, the numbers the same."""
for _f in (jvp, vjp, jacobian, hessian, hvp):
    _f.__doc__ = _f.__doc__.replace('backend="numpy")', 'backend="numpy", has_aux=False, memory_budget=None)', 1) \
        + _OPTIONS

# ---- batching: sb.vmap and sb.per_example_grad -------------------------------------------------------

class BatchedFunction:
    """A model (or its gradient) mapped over a batch axis of its arguments as one generated program
    (transforms/batching.py): sb.vmap and sb.per_example_grad."""

    __symbackprop__ = True

    def __init__(self, fn, kind, wrt=None, backend="numpy", in_axes=0, keep_batch_axis=False, with_value=False,
                 what="sb.vmap"):
        self.specialiser = Specialiser(fn, kind, backend, wrt, fields={
            "in_axes": _checked_axes(in_axes, fn, what, keep_batch_axis), "keep_batch_axis": keep_batch_axis,
            "batch_value": with_value})
        functools.update_wrapper(self, fn)
        self.fn, self.kind, self.what = fn, kind, what
        self.batched_kind = kind  # what a model calling it gets (frontend/trace.py): vmap functions only
        self.in_axes, self.keep_batch_axis, self.with_value = in_axes, keep_batch_axis, with_value
        self.backend = self.specialiser.backend.name
        self.params = self.specialiser.params
        self.wrt, self.single = self.specialiser.wrt, self.specialiser.single

    @property
    def compilations(self) -> int:
        return self.specialiser.compilations

    @property
    def _last(self) -> Program | None:
        return self.specialiser.last

    def __call__(self, *args, **kwargs):
        s = self.specialiser
        s, args = s.flat(s.arguments(args, kwargs))
        program = s.lookup(s.key(args), args)
        _, outs = program.call(*args)
        # a result that does not depend on the batch is broadcast along it: hand out an array of its own
        outs = [np.array(o) if isinstance(o, np.ndarray) and not o.flags.writeable else o for o in outs]
        if self.kind == "vmap":
            return outs[0]
        value, grads = (outs[0], outs[1:]) if self.with_value else (None, outs)
        if s.trees is not None:
            grads = s.gradient_tree(grads)
        else:
            grads = grads[0] if self.single else tuple(grads)
        return (value, grads) if self.with_value else grads

    def specialise(self, *args, **kwargs) -> Program:
        """Compile (or fetch) the specialisation for these (batched) arguments without running it."""
        s = self.specialiser
        s, args = s.flat(s.arguments(args, kwargs))
        return s.lookup(s.key(args), args)

    @property
    def source(self) -> str:
        """The generated code of the last specialisation (NumPy source, or LLVM IR for backend="llvm")."""
        if self._last is None:
            raise RuntimeError(f"{self.fn.__name__} has not been called yet: call it (or .specialise(...)) "
                               "with example arguments first")
        return self._last.source

    def __reduce__(self):
        wrt = self.wrt[0] if self.single else self.wrt
        return BatchedFunction, (model_reference(self.fn), self.kind, wrt, self.backend, self.in_axes,
                                 self.keep_batch_axis, self.with_value, self.what)

    def __repr__(self):
        if self.kind == "vmap":
            return f"<symbackprop vmap of {self.fn.__name__} in_axes={self.in_axes!r} ({self.backend})>"
        return (f"<symbackprop {self.what[3:]} of {self.fn.__name__} wrt {[self.params[i] for i in self.wrt]} "
                f"({self.backend})>")


def _checked_axes(in_axes, fn, what, per_example):
    """in_axes as given, checked: an int, or a tuple/list with an int or None per parameter of fn."""
    def is_axis(a):
        return isinstance(a, (int, np.integer)) and not isinstance(a, (bool, np.bool_))
    if is_axis(in_axes):
        return int(in_axes)
    name = "batch_axis" if per_example else "in_axes"
    if per_example or not isinstance(in_axes, (tuple, list)):
        raise TypeError(f"{what}: {name} is an int{'' if per_example else ', or a tuple of ints and None, one per parameter'}, "
                        f"got {in_axes!r}")
    count = len(inspect.signature(fn).parameters)
    if len(in_axes) != count or not all(a is None or is_axis(a) for a in in_axes):
        raise ValueError(f"{what}: in_axes needs one entry (an int, or None for an argument shared by every "
                         f"example) per parameter of {fn.__name__} ({count}), got {in_axes!r}")
    return tuple(None if a is None else int(a) for a in in_axes)


def vmap(f=None, in_axes=0, backend=None):
    """vmap(f, in_axes=0, backend="numpy"): f mapped over an axis of its arguments, as one generated program.

    in_axes: an int (every array argument is mapped along that axis) or one int or None per parameter (None:
    shared by every example). f may be a model (returning a number or an array per example) or an sb.grad /
    sb.value_and_grad function (per-example gradients). The results get a leading batch axis."""
    if f is None:
        return lambda g: vmap(g, in_axes=in_axes, backend=backend)
    if isinstance(f, GradFunction):
        if f.has_aux or f.memory_budget is not None:
            raise TypeError("sb.vmap of an sb.grad function with has_aux=True or a memory_budget is not supported")
        wrt = f.wrt[0] if f.single else f.wrt
        return BatchedFunction(f.fn, "per_example_grad", wrt, backend or f.backend, in_axes,
                               with_value=f.with_value)
    if getattr(f, "__symbackprop__", False):
        raise TypeError(f"sb.vmap takes a model, or an sb.grad or sb.value_and_grad function; got {f!r}")
    return BatchedFunction(f, "vmap", None, backend or "numpy", in_axes)


def per_example_grad(f=None, wrt=None, batch_axis=0, backend="numpy"):
    """per_example_grad(f, wrt=None, batch_axis=0, backend="numpy"): the gradient of each example's loss, with a
    leading batch axis, in one generated program. Every array argument not in wrt is the data, split along
    batch_axis; example i's gradient is sb.grad(f, wrt) at the data's slice i:i+1 (a batch of one)."""
    if f is None:
        return lambda g: per_example_grad(g, wrt=wrt, batch_axis=batch_axis, backend=backend)
    if getattr(f, "__symbackprop__", False):
        raise TypeError(f"sb.per_example_grad takes a model (the loss of a batch); got {f!r}")
    return BatchedFunction(f, "per_example_grad", wrt, backend, batch_axis, keep_batch_axis=True,
                           what="sb.per_example_grad")
