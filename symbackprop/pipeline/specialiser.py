"""The specialiser behind every entry point: per-signature cache, compilation, fast path and export.

sb.grad / sb.value_and_grad (api.py) and sb.train_step (training.py) each hold
one. A call's arguments are bound to the model's signature, keyed cheaply
(frontend/signature.py), and looked up in an LRU cache of CACHE_SIZE
specialisations; a miss builds the Program through its stages, under a lock so
that threads compile each signature once, and has the backend build it.
"""
from __future__ import annotations

import contextlib
import gc
import inspect
import os
import threading
from collections import OrderedDict

import numpy as np

from .. import backends
from ..backends.base import load
from ..frontend.checks import check_parameters
from ..frontend.signature import FLOAT_KEY, arg_key, flatten, is_tree, rebuild, slots, spec_of, tree_key, \
    without_gradient
from ..passes import liveness
from ..rendering import render
from ..runtime import tune_allocator
from ..transforms import recompute
from . import stages

#: specialisations kept per function; the least recently used is dropped beyond this
CACHE_SIZE = 64


@contextlib.contextmanager
def no_gc():
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


class Specialiser:
    """Programs of one kind for one model, one per signature."""

    def __init__(self, fn, kind, backend, wrt=None, fields=None):
        if not callable(fn) or not hasattr(fn, "__code__"):
            raise TypeError(f"expected a Python function, got {type(fn).__name__}")
        self.fn = fn
        self.kind = kind
        self.backend = backends.get(backend)
        self.signature = inspect.signature(fn)
        self.params = list(self.signature.parameters)
        #: every parameter positional-or-keyword: a call with one positional value each needs no binding
        self.plain = all(p.kind is p.POSITIONAL_OR_KEYWORD for p in self.signature.parameters.values())
        self.wrt, self.single = resolve_wrt(self.params, wrt)
        self.differentiated = frozenset(self.wrt)
        #: extra Program fields of every specialisation (a train step's optimizer)
        self.fields = dict(fields or {})
        self.cache: OrderedDict = OrderedDict()
        self.forwards: OrderedDict = OrderedDict()
        self.lock = threading.Lock()
        self.last = None
        self.compilations = 0
        #: parameter trees: per original parameter, None (one argument) or its tree of Slots into the
        #: flattened arguments; set on the specialiser of one tree structure (see `flat`)
        self.trees = None
        self.outer = None
        #: the specialiser of each tree structure seen, by structure
        self.structures: dict = {}

    # ---- parameter trees ---------------------------------------------------------
    def flat(self, args):
        """(specialiser, arguments) for a call: `self` and `args` when no argument is a tree; else the
        specialiser of this tree structure (its parameters the trees' leaves, named by path) and the leaves."""
        if not any(type(a) in (tuple, list, dict) for a in args):
            return self, args
        layout, flat, names, key = [], [], [], []
        for i, (name, a) in enumerate(zip(self.params, args)):
            if is_tree(a, i in self.differentiated):
                tree, leaves = flatten(name, a, i in self.differentiated)
                base = len(flat)
                tree = rebuild(tree, [type(q)(base + q.index) for q in slots(tree)]) if base else tree
                layout.append(tree)
                key.append(tree_key(tree))
                flat.extend(v for _, v in leaves)
                names.extend(n for n, _ in leaves)
            else:
                layout.append(None)
                key.append(None)
                flat.append(a)
                names.append(name)
        if all(t is None for t in layout):
            return self, args
        key = tuple(key)
        sub = self.structures.get(key)
        if sub is None:
            with self.lock:  # threads calling with a new structure share one specialiser of it
                sub = self.structures.get(key)
                if sub is None:
                    sub = self.structures[key] = self._for_layout(layout, names)
        return sub, tuple(flat)

    def _for_layout(self, layout, names):
        """The specialiser of one tree structure: the same model, its leaves as parameters."""
        sub = object.__new__(Specialiser)
        sub.__dict__.update(self.__dict__)
        taken = set()
        unique = []
        for n in names:  # a leaf path may spell another parameter's name: keep names apart
            u, k = n, 1
            while u in taken:
                u, k = f"{n}_{k}", k + 1
            taken.add(u)
            unique.append(u)
        positions, k = [], 0   # each original parameter's flat index (plain) or its tree
        for tree in layout:
            positions.append(tree if tree is not None else k)
            k += len(slots(tree)) if tree is not None else 1
        wrt = []
        for i in self.wrt:
            p = positions[i]
            wrt.extend(s.index for s in slots(p)) if not isinstance(p, int) else wrt.append(p)
        if not wrt:
            raise ValueError(f"`{self.params[self.wrt[0]]}` has no arrays or floats to differentiate")
        sub.params, sub.plain = unique, True
        sub.wrt, sub.single, sub.differentiated = tuple(wrt), False, frozenset(wrt)
        sub.trees, sub.outer = tuple(positions), self
        sub.cache, sub.forwards, sub.structures = OrderedDict(), OrderedDict(), {}
        sub.lock = threading.Lock()
        return sub

    def gradient_tree(self, grads):
        """The gradients of a tree specialiser's leaves (in its wrt order) as the outer wrt asks: a tree of
        the parameter's structure (None at static leaves) for a tree parameter."""
        outer, out, k = self.outer, [], 0
        for i in outer.wrt:
            p = self.trees[i]
            if isinstance(p, int):
                out.append(grads[k])
                k += 1
            else:
                n = len(slots(p))
                out.append(rebuild(without_gradient(p), {q.index: grads[k + j] for j, q in enumerate(slots(p))}))
                k += n
        return out[0] if outer.single else tuple(out)

    # ---- arguments -------------------------------------------------------------
    def arguments(self, args, kwargs):
        """The call's arguments in parameter order, defaults applied."""
        if self.plain and not kwargs and len(args) == len(self.params):
            return args
        check_parameters(self.fn)  # *args, **kwargs: a CompileError at the def, not a bound dict
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{self.fn.__name__}(): {e}") from None
        bound.apply_defaults()
        return tuple(bound.arguments[p] for p in self.params)

    def key(self, args, prefix=()):
        return prefix + tuple(map(arg_key, args))

    # ---- the cache ---------------------------------------------------------------
    def lookup(self, key, args):
        """The Program for `args` (whose cache key is `key`), compiled on a miss."""
        entry = self.cache.get(key)
        if entry is None:
            with self.lock:
                entry = self.cache.get(key)
                if entry is None:
                    entry = self.cache[key] = self.compile(self.specs(args))
                    if len(self.cache) > CACHE_SIZE:
                        self.cache.popitem(last=False)
        else:
            self._touch(self.cache, key)
        self.last = entry
        if self.outer is not None:  # a tree structure's specialisation is the model's last one too
            self.outer.last = entry
        return entry

    def specs(self, args, differentiated=None):
        wanted = self.differentiated if differentiated is None else differentiated
        return tuple(spec_of(name, a, i in wanted) for i, (name, a) in enumerate(zip(self.params, args)))

    def compile(self, specs, kind=None, backend=None):
        """A Program of `kind` for `specs` through its stages, built by the backend."""
        backend = backend or self.backend
        backend.check(specs)
        if any(s.kind == "array" and s.shape for s in specs):
            tune_allocator()
        with no_gc():
            trees = {} if self.trees is None else {"trees": self.trees, "tree_wrt": self.outer.wrt,
                                                   "tree_single": self.outer.single}
            program = stages.build(self.fn, specs, backend, kind or self.kind, wrt=self.wrt,
                                   single=self.single, **trees, **self.fields)
            program.artifact = backend.build(program)
        if kind is None:
            self.compilations += 1
            if self.outer is not None:
                self.outer.compilations += 1
        return program

    def forward(self, args):
        """The loss alone, from compiled forward code on this backend (cached per signature)."""
        key = self.key(args)
        run = self.forwards.get(key)
        if run is None:
            with self.lock:
                run = self.forwards.get(key)  # another thread may have compiled it while this one waited
                if run is None:
                    program = self.compile(self.specs(args, differentiated=()), kind="forward")
                    run = self.forwards[key] = program.call
                    if len(self.forwards) > CACHE_SIZE:
                        self.forwards.popitem(last=False)
        else:
            self._touch(self.forwards, key)
        return run(*args)

    @staticmethod
    def _touch(cache, key):
        """Mark a hit as recent without the lock (a hit must not wait for another signature's compile);
        another thread may have evicted the entry since it was read, which only makes it old."""
        try:
            cache.move_to_end(key)
        except KeyError:
            pass

    # ---- memory ---------------------------------------------------------------------
    def memory(self, program) -> recompute.MemoryReport:
        """The memory report of a compiled Program: residuals kept, recomputed, the peak of live bytes."""
        # LLVM code releases every buffer at its last use; generated NumPy code frees (`del`) the large values
        # at theirs (passes/liveness.py), and every value under a budget
        everything = program.backend.frees_at_last_use or program.recompute is not None
        return recompute.report(program.graph, program.forward_nodes, program.recompute, stages.results(program),
                                program.memory_budget, program.backend.name,
                                min_bytes=0 if everything else liveness.LARGE_BYTES)

    # ---- export --------------------------------------------------------------------
    def export(self, path, program):
        """Write `program` to `path` with the backend that exports that kind of file."""
        path = os.fspath(path)
        suffix = os.path.splitext(path)[1]
        backend = backends.for_export(suffix)
        if backend is None:
            kinds = [s for name in backends.NAMES for s in backends.get(name).exports]
            raise ValueError(f"cannot export to {path!r}: use a {', '.join(kinds[:-1])} or {kinds[-1]} file name")
        specs = program.specs
        if program.entry:  # a derivative entry point's program: the model's specs, the stages rebuild the rest
            specs = specs[:len(self.params)]
        if backend is not program.backend or program.kind == "train_step":
            # the exporting backend's code from the same stages (a train step is always built afresh:
            # lowering one for export changes its outputs)
            if program.entry:
                program = stages.build(self.fn, specs, backend, program.entry, wrt=self.wrt, single=self.single,
                                       **self.fields)
            else:
                program = stages.build(self.fn, program.specs, backend, program.kind, wrt=program.wrt,
                                       single=program.single, trees=program.trees, tree_wrt=program.tree_wrt,
                                       tree_single=program.tree_single, **self.fields)
        if program.entry:
            return backend.export(program, path, None)
        forward = stages.build(self.fn, program.specs, backend, "forward", has_aux=program.has_aux,
                               trees=program.trees) \
            if ".py" in backend.exports else None
        return backend.export(program, path, forward)


# ---- the fast path ---------------------------------------------------------------------

def install_fast_path(owner, specialiser, key, entry, suffix="", finish=None):
    """Make `type(owner).__call__` generated code that checks the argument types of `key` and runs `entry`.

    The result is `entry`'s with `suffix` applied (`[1]`: the gradient alone), or `finish(result)`.
    Any other call goes to `owner._general`. Nothing is installed when an argument has no cheap check.
    """
    if specialiser.trees is not None:
        return  # tree arguments are flattened by the general path (Specialiser.flat)
    namespace = {"_run": entry.call, "_ndarray": np.ndarray, "_finish": finish}
    guards, dynamic = [], []
    for p, k, spec in zip(specialiser.params, key, entry.specs):
        if k is FLOAT_KEY:
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
    artifact = entry.artifact
    fallback = artifact.fast is not None
    if fallback:
        namespace["_run"] = artifact.fast
        namespace["_fallback"] = artifact.fallback
    params, forward = [], []
    parameters = list(specialiser.signature.parameters.values())
    for k, p in enumerate(parameters):
        if p.kind is p.KEYWORD_ONLY and "*" not in params:
            params.append("*")
        if p.default is not p.empty:
            namespace[f"_default_{p.name}"] = p.default
            params.append(f"{p.name}=_default_{p.name}")
        else:
            params.append(p.name)
        if p.kind is p.POSITIONAL_ONLY and (k + 1 == len(parameters) or parameters[k + 1].kind is not p.POSITIONAL_ONLY):
            params.append("/")  # as the model's def: those are not accepted by name
        forward.append(f"{p.name}={p.name}" if p.kind is p.KEYWORD_ONLY else p.name)
    # named as the model and without `self`, so that a wrong call's TypeError reads as the model's own
    # ("mse() missing 1 required positional argument: 'y'"), not as one of `__call__(self, ...)`
    name = specialiser.fn.__name__
    if not name.isidentifier() or name in namespace or name in params:
        name = "call"
    namespace["_general"] = owner._general
    text = render("fast_path.py.j2", name=name, params=params, guards=guards or ["True"], dynamic=dynamic,
                  forward=forward, fallback=fallback, suffix=suffix, finish=finish is not None)
    load(text, f"<symbackprop fast path of {specialiser.fn.__name__}>", namespace)
    type(owner).__call__ = staticmethod(namespace[name])
