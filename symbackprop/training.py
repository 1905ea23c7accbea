"""sb.train_step: the loss, its gradients and the optimizer's update in one generated function.

The pipeline is value_and_grad's up to `reverse`; then the optimizer's update
rules are built in the same graph as elementwise kernels over parameter,
gradient, state and hyperparameter Values, and each (target, new value) pair is
an update. The NumPy backend writes an update kernel into its target in place
(`W1 -= lr*d_W1`); another backend lowers the same kernels. Optimizer state
(buffers and the step count t) and the hyperparameters are extra inputs of the
generated function, so a new learning rate needs no recompilation.
"""
from __future__ import annotations

import functools
import inspect
import os
import textwrap
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from .api import CACHE_SIZE, _arg_key, _no_gc, resolve_wrt
from .backends.numpy.writer import write_function
from .backends.numpy.inplace import writes_in_place
from .compile import Compiled, _forward_text, compile_forward, differentiate, load, spec_of
from .errors import CompileError
from .ir import Value, building, append
from .optim import Optimizer, rule
from .passes.dce import eliminate_dead_code
from .passes.fuse import _merge as merge, finalize_kernels, fuse_elementwise, named
from .primitives.elementwise import Kernel, expand
from .primitives.index import Index
from .primitives.shape import BroadcastTo, Copy, Reshape, Transpose
from .rendering import render
from .runtime import tune_allocator

#: NumPy gives views for these: an in-place update of the base shows through them
_VIEWS = (Reshape, Transpose, Index, BroadcastTo)


def alias_root(v):
    """The array whose memory `v` may be: itself, or the base of the views it reads through."""
    while v.node is not None:
        node = v.node
        if node.prim in _VIEWS:
            v = node.inputs[0]
            continue
        if node.prim is Kernel:  # a kernel whose output is one of its inputs prints as a plain alias
            out = expand(node.attrs["program"], node.attrs["outs"])[node.outputs.index(v)]
            if out.is_Symbol and out.name.startswith("a"):
                v = node.inputs[int(out.name[1:])]
                continue
        break
    return v


def _fresh(v, targets, gradient_of=None):
    """`v`, or a copy of it when it may share memory with a parameter updated in place."""
    root = alias_root(v)
    if root not in targets:
        return v
    with rule(f"a copy: {root.name} is overwritten by its update"):
        copied = append(Copy, [v])
    if gradient_of is not None:
        copied.grad_of = gradient_of
    else:
        copied.name = v.name
    return copied


def _unique(name, taken):
    while name in taken:
        name += "_"
    taken.add(name)
    return name


@dataclass
class CompiledStep(Compiled):
    """One specialisation of a train step: Compiled plus the names of its state and hyperparameter inputs."""

    optimizer: str = ""
    updates: list = field(default_factory=list)
    state: list = field(default_factory=list)          # (input name, wrt parameter name), in order
    step_name: str | None = None                        # the step count's input name
    hyper: list = field(default_factory=list)           # (input name, optimizer attribute), in order
    hyper_dtype: np.dtype | None = None
    hyper_defaults: dict = field(default_factory=dict)  # the optimizer's values at compilation
    buffers: tuple = ()
    update_nodes: set = field(default_factory=set)
    core: str = "step"
    call: object = None


def compile_train_step(fn, specs, wrt, optimizer: Optimizer) -> CompiledStep:
    return _compile_train_step(fn, specs, wrt, optimizer)


def _compile_train_step(fn, specs, wrt, optimizer):
    graph, forward_nodes, wrt_values, grads = differentiate(fn, specs, wrt)
    with building(graph):
        targets = set(wrt_values)
        # d_a = b when the loss is sum(a*b), and b may be updated before a
        grads = [_fresh(g, targets, gradient_of=p) for g, p in zip(grads, wrt_values)]
        graph.result = _fresh(graph.result, targets)  # the loss is returned after the update
    before_update = set(graph.nodes)
    compiled = CompiledStep(fn, tuple(specs), tuple(wrt), False, graph=graph, forward_nodes=forward_nodes,
                            optimizer=repr(optimizer), hyper_defaults=optimizer.values(),
                            buffers=tuple(optimizer.buffers))
    with building(graph):
        updates = _build_updates(graph, compiled, optimizer, wrt_values, grads, specs)
    update_nodes = set(graph.nodes) - before_update
    results = [graph.result] + [new for _, new in updates]
    eliminate_dead_code(graph, results)
    # gradients stay statements of their own (no earlier value is fused past an in-place write)
    fuse_elementwise(graph, keep=results + graph.params + grads)
    _inline_scalars(graph, update_nodes, set(results))
    eliminate_dead_code(graph, results)
    finalize_kernels(graph)
    update_nodes &= set(graph.nodes)
    _check_no_stale_reads(graph, updates, update_nodes)
    compiled.updates = updates
    compiled.update_nodes = update_nodes
    compiled.source = step_module(compiled)
    return compiled


def _build_updates(graph, compiled, optimizer, wrt_values, grads, specs):
    """Add state and hyperparameter inputs and the optimizer's update kernels; return the updates."""
    taken = {s.name for s in specs}
    dtype = min((p.dtype for p in wrt_values), key=lambda d: d.itemsize)  # float32 params: float32 state
    compiled.hyper_dtype = dtype

    def input_value(name, shape, dt):
        v = Value(shape, dt, None, name)
        graph.params.append(v)
        return v

    state = []
    for p in wrt_values:
        buffers = {}
        for b in optimizer.buffers:
            buffers[b] = input_value(_unique(f"{b}_{p.name}", taken), p.shape, p.dtype)
            compiled.state.append((buffers[b].name, p.name))
        state.append(buffers)
    t = None
    if optimizer.counts_steps:
        t = input_value(_unique("t", taken), (), dtype)
        compiled.step_name = t.name
    h = SimpleNamespace()
    for name in optimizer.hyperparameters:
        v = input_value(_unique(name, taken), (), dtype)
        setattr(h, name, v)
        compiled.hyper.append((v.name, name))
    compiled.core = _unique("step", taken)

    updates = []
    if t is not None:
        with rule("t = t + 1"):
            t_new = t + 1
        updates.append((t, t_new))
        t = t_new
    shared = optimizer.shared(h, t)
    for p, g, buffers in zip(wrt_values, grads, state):
        for target, new in optimizer.update(p, g, buffers, h, shared):
            if new.shape != target.shape:
                raise CompileError(f"internal: {type(optimizer).__name__} updates {target.name} of shape "
                                   f"{target.shape} with a value of shape {new.shape}")
            updates.append((target, new))
    return [(target, new) for target, new in updates if new is not target]


def _inline_scalars(graph, update_nodes, results):
    """Scalars several updates read (1 - beta1) are written where they are used: free in every backend."""
    for node in graph.nodes:
        if node not in update_nodes or node.prim is not Kernel:
            continue
        merged = True
        while merged:
            merged = False
            for v in node.inputs:
                producer = v.node
                if (producer is not None and producer is not node and producer in update_nodes
                        and producer.prim is Kernel and v.shape == () and not named(v)
                        and not any(o in results for o in producer.outputs)):
                    merge(node, producer)
                    merged = True
                    break


def _check_no_stale_reads(graph, updates, update_nodes):
    """No statement after an in-place update may read the target's old value (or a view of it)."""
    written, at_node = set(), {new.node: target for target, new in updates if writes_in_place(new, update_nodes)}
    for node in graph.nodes:
        if node not in update_nodes:
            continue
        stale = [v for v in node.inputs if alias_root(v) in written]
        if stale:
            raise CompileError(f"internal: the update reads {stale[0].name or 'a value'} after overwriting it",
                               node.loc)
        if node in at_node:
            written.add(at_node[node])


# ---- generated source -------------------------------------------------------------

def step_function_text(compiled) -> str:
    names = [compiled.specs[i].name for i in compiled.wrt]
    doc = (f"{compiled.fn.__name__}: the loss; one {type_name(compiled)} step on {', '.join(names)} "
           "and the state, in place.")
    text, _ = write_function(compiled.core, compiled.graph.params, compiled.specs, compiled.graph.nodes,
                            compiled.forward_nodes, compiled.graph.result, None, None, doc,
                            updates=compiled.updates, update_nodes=compiled.update_nodes,
                            update_title=f"update: {type_name(compiled)}, in place")
    return text.rstrip("\n")


def _wrap(items, opening, width=110):
    """Comma-separated `items`, broken into lines aligned after `opening`."""
    return textwrap.fill(", ".join(items), width - len(opening), subsequent_indent=" " * len(opening),
                         break_long_words=False, break_on_hyphens=False)


def type_name(compiled) -> str:
    return compiled.optimizer.split("(")[0]


def step_module(compiled, with_forward=False) -> str:
    """The module: init_state, train_step (state in a dict) and the generated step function."""
    specs = compiled.specs
    wrt = [specs[i].name for i in compiled.wrt]
    functions = []
    statics = [s for s in specs if not s.dynamic]
    if with_forward:
        text = _forward_text(compiled, compile_forward(compiled.fn, specs))[0]
        # with static parameters, forward takes them all and checks them (see the template)
        functions.append(text.replace("def forward(", "def _forward(", 1) if statics else text)
    taken = {s.name for s in specs}
    state_arg = _unique("state", taken)
    state = [{"name": n, "param": p} for n, p in compiled.state]
    state_reads = [f'{state_arg}["{n}"]' for n, _ in compiled.state]
    if compiled.step_name:
        state_reads.append(f'{state_arg}["{compiled.step_name}"]')
    dtype = compiled.hyper_dtype.name
    defaults = compiled.hyper_defaults
    functions.append(render(
        "train_step.py.j2", wrt=wrt, optimizer=type_name(compiled), buffers=compiled.buffers,
        state=state, step=compiled.step_name, dtype=dtype, state_arg=state_arg,
        statics=statics, with_forward=with_forward, params=[s.name for s in specs], dynamic=[s.name for s in specs if s.dynamic],
        signature=_wrap([s.name for s in specs] + [state_arg] + [f"{name}={defaults[attr]!r}"
                                                                for name, attr in compiled.hyper], "def train_step("),
        call=compiled.core + "(" + _wrap([s.name for s in specs if s.dynamic] + state_reads
                                         + [f"np.{dtype}({name})" for name, _ in compiled.hyper],
                                         f"    return {compiled.core}(") + ")").rstrip("\n"))
    functions.append(step_function_text(compiled))
    origin = f"{compiled.fn.__module__}.{compiled.fn.__qualname__}"
    notes = [f"Specialised for {', '.join(s.describe() for s in specs)}.",
             f"Optimizer: {compiled.optimizer}; its hyperparameters are inputs of `{compiled.core}`.",
             f"`{compiled.core}` updates {', '.join(wrt)} and the optimizer state in place and returns the loss."]
    return render("numpy_module.py.j2", title=f"Training step for `{compiled.fn.__name__}`.", origin=origin,
                  notes=notes, uses_math=False, functions=functions)


# ---- the callable ------------------------------------------------------------------

class TrainStep:
    """One optimizer step on a model's loss; call it like the model: it updates `wrt` in place, returns the loss."""

    __symbackprop__ = True

    def __init__(self, fn, optimizer, wrt=None, backend="numpy"):
        if not callable(fn) or not hasattr(fn, "__code__"):
            raise TypeError(f"expected a Python function, got {type(fn).__name__}")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"train_step needs an optimizer from sb.optim (SGD, RMSProp, Adam, AdamW), "
                            f"got {optimizer!r}")
        if backend not in ("numpy", "llvm"):
            raise ValueError(f"backend must be 'numpy' or 'llvm', got {backend!r}")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.optimizer = optimizer
        self.backend = backend
        self._signature = inspect.signature(fn)
        self.params = list(self._signature.parameters)
        self.wrt, _ = resolve_wrt(self.params, wrt)
        #: the optimizer state by input name (`m_W1`, `t`, ...): zeros made on first use, updated in place
        self.state: dict = {}
        self.compilations = 0
        self._cache: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._last: CompiledStep | None = None
        self._checked_ids = None

    # ---- calling ---------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        args = self._arguments(args, kwargs)
        self._check_updatable(args)
        entry = self._entry(args)
        return entry.call(*[args[i] for i in entry.dynamic], *self._state_arrays(entry, args),
                          *self._hyperparameters(entry))

    def _arguments(self, args, kwargs):
        if not kwargs and len(args) == len(self.params):
            return args
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{self.fn.__name__}(): {e}") from None
        bound.apply_defaults()
        return tuple(bound.arguments[p] for p in self.params)

    def _entry(self, args) -> CompiledStep:
        """The specialisation for `args` and the optimizer's current structure, compiled on a miss."""
        key = (self.optimizer.structure(),) + tuple(map(_arg_key, args))
        entry = self._cache.get(key)
        if entry is None:
            with self._lock:
                entry = self._cache.get(key)
                if entry is None:
                    specs = tuple(spec_of(name, a, i in self.wrt) for i, (name, a) in enumerate(zip(self.params, args)))
                    entry = self._cache[key] = self._compile(specs)
                    if len(self._cache) > CACHE_SIZE:
                        self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        self._last = entry
        return entry

    def _check_updatable(self, args):
        ids = tuple(id(args[i]) for i in self.wrt)
        if ids == self._checked_ids:
            return
        for i in self.wrt:
            name, x = self.params[i], args[i]
            if isinstance(x, np.ndarray):
                if not x.flags.writeable:
                    raise ValueError(f"train_step cannot update `{name}` in place: the array is read-only; "
                                     f"pass a writeable copy ({name}.copy())")
            elif isinstance(x, (float, int, np.generic)) and not isinstance(x, (bool, np.bool_)):
                raise TypeError(f"train_step updates `{name}` in place, but a {type(x).__name__} cannot be "
                                f"changed in place: pass a 0-d array (np.array({x!r})) or a 1-element array "
                                f"(np.array([{x!r}])) and read it back with {name}.item()")
            # anything else gets spec_of's TypeError when the signature is built
        arrays = [(self.params[i], args[i]) for i in self.wrt if isinstance(args[i], np.ndarray)]
        for k, (a, x) in enumerate(arrays):
            for b, y in arrays[k + 1:]:
                if np.may_share_memory(x, y) and np.shares_memory(x, y):
                    raise ValueError(f"`{a}` and `{b}` share memory; train_step updates each parameter in place, "
                                     "so each must be an array of its own")
        self._checked_ids = ids

    def _state_arrays(self, entry, args):
        """The state inputs of `entry`, made as zeros on first use (float32 for float32 parameters)."""
        arrays = []
        for name, param in entry.state:
            p = args[self.params.index(param)]
            arrays.append(self._state_array(name, p.shape, p.dtype))
        if entry.step_name:
            arrays.append(self._state_array(entry.step_name, (), entry.hyper_dtype))
        return arrays

    def _state_array(self, name, shape, dtype):
        array = self.state.get(name)
        if array is None:
            array = self.state[name] = np.zeros(shape, dtype)
        elif array.shape != shape or array.dtype != dtype:
            raise ValueError(f"optimizer state `{name}` was made for {array.dtype}{list(array.shape)}, "
                             f"not {np.dtype(dtype)}{list(shape)}; call .reset() to start again")
        return array

    def _hyperparameters(self, entry):
        values = self.optimizer.values()
        scalar = entry.hyper_dtype.type
        return [scalar(values[attr]) for _, attr in entry.hyper]

    def reset(self):
        """Forget the optimizer state: the next call starts again from zeros (and t = 0)."""
        self.state.clear()

    # ---- compiling, inspection and export -------------------------------------------
    def _compile(self, specs):
        tune_allocator()
        with _no_gc():
            compiled = compile_train_step(self.fn, specs, self.wrt, self.optimizer)
        if self.backend == "llvm":
            from .backends.llvm.backend import attach_train_step
            compiled.call = attach_train_step(compiled)
            compiled.source = compiled.llvm_source
        else:
            compiled.namespace = load(compiled.source, f"<symbackprop train step {self.fn.__name__}>")
            compiled.call = compiled.namespace[compiled.core]
        compiled.dynamic = [i for i, s in enumerate(specs) if s.dynamic]
        self.compilations += 1
        return compiled

    def specialise(self, *args, **kwargs) -> CompiledStep:
        """Compile (or fetch) the step for these arguments without running it."""
        return self._entry(self._arguments(args, kwargs))

    @property
    def source(self) -> str:
        """The generated module of the last specialisation."""
        if self._last is None:
            raise RuntimeError(f"the train step of {self.fn.__name__} has not been called yet: call it "
                               "(or .specialise(...)) with example arguments first")
        return self._last.source

    def export(self, path, *args, **kwargs):
        """Write the step for `args` (default: the last one) as a standalone .py module."""
        compiled = self.specialise(*args, **kwargs) if (args or kwargs) else self._last
        if compiled is None:
            raise RuntimeError("nothing to export yet: pass example arguments, or call the step first")
        path = os.fspath(path)
        suffix = os.path.splitext(path)[1]
        if suffix in (".ll", ".so"):
            from .backends.llvm.backend import export_step
            return export_step(compile_train_step(self.fn, compiled.specs, self.wrt, self.optimizer), path)
        if suffix != ".py":
            raise ValueError(f"cannot export to {path!r}: use a .py file name")
        with open(path, "w", encoding="utf-8") as f:
            f.write(step_module(compiled, with_forward=True))
        return path

    def __repr__(self):
        return (f"<symbackprop train_step of {self.fn.__name__} wrt {[self.params[i] for i in self.wrt]} "
                f"with {self.optimizer!r}>")


def train_step(f=None, optimizer=None, wrt=None, backend="numpy"):
    """train_step(f, optimizer, wrt=None): a callable doing one optimizer step in place; returns the loss."""
    if f is None or isinstance(f, Optimizer):
        optimizer = f if isinstance(f, Optimizer) else optimizer
        return lambda g: TrainStep(g, optimizer, wrt=wrt, backend=backend)
    if optimizer is None:
        raise TypeError("train_step needs an optimizer: sb.train_step(f, sb.optim.Adam(lr=1e-3), wrt=...)")
    return TrainStep(f, optimizer, wrt=wrt, backend=backend)
