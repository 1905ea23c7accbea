"""The pipeline for one signature: trace -> patterns -> fuse -> reverse -> fuse -> CSE -> code.

A `Spec` says what one argument is at specialisation: an array (shape, dtype),
a Python float (a dynamic 0-d float64), or a static value that steers control
flow. The signature is the tuple of specs, the key of the per-function cache.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from .backends.numpy.writer import write_function
from .errors import CompileError, Loc
from .frontend.source import Source
from .frontend.trace import Tracer
from .ir import Graph, Value, building, append
from .passes.dce import eliminate_dead_code
from .passes.fuse import finalize_kernels, fuse_elementwise
from .passes.narrow import narrow_kernel_outputs
from .passes.patterns import recognise_softmax_family
from .primitives import ops
from .primitives.elementwise import Kernel, arg
from .rendering import render
from .transforms.reverse import reverse


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


@dataclass
class Compiled:
    """One specialisation: its graph, the generated source and the callables built from it."""

    fn: object
    specs: tuple
    wrt: tuple
    single: bool
    source: str = ""
    forward_source: str = ""
    namespace: dict = field(default_factory=dict)
    graph: Graph | None = None
    forward_nodes: set = field(default_factory=set)
    scalar: bool = False

    @property
    def dynamic_names(self):
        return [s.name for s in self.specs if s.dynamic]


def trace(fn, specs) -> Graph:
    """The forward graph of `fn` on `specs`."""
    graph = Graph()
    src = Source(fn)
    with building(graph):
        args = []
        for s in specs:
            if s.kind == "static":
                args.append(s.value)
            else:
                v = Value(s.shape, s.dtype, None, s.name)
                v.weak = s.kind == "float"
                graph.params.append(v)
                args.append(v)
        result = Tracer().call(fn, args, {})
        loc = _return_loc(src)
        if isinstance(result, (bool, np.bool_)) or not isinstance(result, (Value, numbers.Real)):
            what = "nothing" if result is None else f"a {type(result).__name__}"
            raise CompileError(f"the model returns {what}; it must return one scalar (the loss)", loc,
                               "Return a single number, e.g. np.sum(...) or np.mean(...).")
        if isinstance(result, Value):
            if result.shape != ():
                raise CompileError(f"the model returns an array of shape {result.shape}; it must return one "
                                   "scalar (the loss)", loc, "Reduce it: return np.sum(x) or np.mean(x).")
            if result.dtype.kind not in "f":
                raise CompileError(f"the model returns a {result.dtype} value; the loss must be a float", loc)
            if result.node is None:  # returning a parameter: make it a node of its own
                result = _copy(result)
        else:
            result = ops.fill(float(result), (), np.float64)
        if result.name is None:
            result.name = "loss"
        graph.result = result
    return graph


def _copy(v):
    """A kernel node returning `v` itself, so that the result is produced by a node."""
    return append(Kernel, [v], {"outs": (arg(0),), "program": (), "names": (), "shape": v.shape})


def _return_loc(src) -> Loc:
    import ast
    rets = [n for n in ast.walk(src.node) if isinstance(n, ast.Return)]
    return src.loc(rets[-1] if rets else src.node)


def _forward_pipeline(graph):
    recognise_softmax_family(graph)
    eliminate_dead_code(graph, [graph.result])
    fuse_elementwise(graph, keep=[graph.result])


def compile_forward(fn, specs):
    """The forward function alone (for export and inspection)."""
    graph = trace(fn, specs)
    _forward_pipeline(graph)
    finalize_kernels(graph)
    return graph


def is_scalar_model(specs, graph) -> bool:
    """Every value is a Python float: generate `math` code, 25x cheaper than NumPy scalars."""
    return all(s.kind in ("float", "static") for s in specs) and all(
        v.shape == () for n in graph.nodes for v in n.outputs)


def differentiate(fn, specs, wrt):
    """The optimised forward graph extended with its backward pass: (graph, forward nodes, wrt values, grads)."""
    graph = trace(fn, specs)
    _forward_pipeline(graph)
    params = {p.name: p for p in graph.params}
    wrt_values = [params[specs[i].name] for i in wrt]
    forward_nodes = set(graph.nodes)
    with building(graph):
        grads = reverse(graph, wrt_values)
    return graph, forward_nodes, wrt_values, grads


def compile_value_and_grad(fn, specs, wrt, single, backend="numpy") -> Compiled:
    graph, forward_nodes, _, grads = differentiate(fn, specs, wrt)
    results = [graph.result] + grads
    eliminate_dead_code(graph, results)
    narrow_kernel_outputs(graph, keep=results)
    # NumPy code keeps one statement per line of the model; a compiled backend fuses whole chains into one loop
    fuse_elementwise(graph, keep=results + graph.params, across_names=backend != "numpy")
    eliminate_dead_code(graph, results)  # broadcasts the kernels absorbed
    finalize_kernels(graph)
    compiled = Compiled(fn, tuple(specs), tuple(wrt), single, graph=graph, forward_nodes=forward_nodes)
    compiled.grads = grads
    compiled.backend = backend
    compiled.scalar = is_scalar_model(specs, graph)
    if backend == "numpy":
        compiled.source = numpy_module(compiled)
    return compiled


def _function_text(compiled, name, nodes, grads, scalar, forward_nodes):
    specs = compiled.specs
    params = compiled.graph.params
    grad_specs = [specs[i] for i in compiled.wrt] if grads is not None else None
    what = "the loss and its gradient" if grads is not None else "the loss"
    doc = f"{compiled.fn.__name__}: {what}" + (
        f" with respect to {', '.join(specs[i].name for i in compiled.wrt)}." if grads is not None else ".")
    return write_function(name, params, specs, nodes, forward_nodes, compiled.graph.result, grads, grad_specs,
                         doc, scalar=scalar, single=compiled.single)


def numpy_module(compiled, with_forward=False) -> str:
    """The generated module: value_and_grad (and forward); math code with a NumPy fallback for scalars."""
    graph = compiled.graph
    functions, uses_math = [], False
    if with_forward:
        fgraph = compile_forward(compiled.fn, compiled.specs)
        text, m = _forward_text(compiled, fgraph)
        functions.append(text)
        uses_math |= m
    if compiled.scalar:
        fast, _ = _function_text(compiled, "_value_and_grad_math", graph.nodes, compiled.grads, True,
                                 compiled.forward_nodes)
        slow, _ = _function_text(compiled, "_value_and_grad_numpy", graph.nodes, compiled.grads, False,
                                 compiled.forward_nodes)
        slow = _floats_as_numpy(slow, compiled)
        names = compiled.dynamic_names
        functions += [render("scalar_dispatch.py.j2", name="value_and_grad", params=names,
                             doc=f"{compiled.fn.__name__}: the loss and its gradient.",
                             fast="_value_and_grad_math", slow="_value_and_grad_numpy").rstrip("\n"),
                      fast.rstrip("\n"), slow.rstrip("\n")]
        uses_math = True
    else:
        text, _ = _function_text(compiled, "value_and_grad", graph.nodes, compiled.grads, False,
                                 compiled.forward_nodes)
        functions.append(text.rstrip("\n"))
    origin = f"{compiled.fn.__module__}.{compiled.fn.__qualname__}"
    notes = [f"Specialised for {', '.join(s.describe() for s in compiled.specs)}."]
    return render("numpy_module.py.j2", title=f"Gradient of `{compiled.fn.__name__}`.", origin=origin,
                  notes=notes, uses_math=uses_math, functions=functions)


def _forward_text(compiled, fgraph):
    scalar = is_scalar_model(compiled.specs, fgraph)
    text, m = write_function("forward", fgraph.params, compiled.specs, fgraph.nodes, set(fgraph.nodes),
                            fgraph.result, None, None, f"{compiled.fn.__name__}: the loss.", scalar=scalar)
    return text.rstrip("\n"), m


def forward_callable(fn, specs, backend):
    """The loss alone from compiled forward code, taking the model's full argument list."""
    graph = compile_forward(fn, specs)
    compiled = Compiled(fn, tuple(specs), (), True, graph=graph, forward_nodes=set(graph.nodes))
    compiled.grads = []
    compiled.scalar = is_scalar_model(specs, graph)
    dynamic = [i for i, s in enumerate(specs) if s.dynamic]
    if backend == "llvm":
        from .backends.llvm.backend import attach
        compiled.backend = "llvm"
        run = attach(compiled).run_dynamic
    else:
        text, uses_math = _forward_text(compiled, graph)
        functions = [text]
        if compiled.scalar:  # math raises where NumPy gives inf or nan: fall back as value_and_grad does
            slow = write_function("_forward_numpy", graph.params, specs, graph.nodes, set(graph.nodes),
                                 graph.result, None, None, f"{fn.__name__}: the loss.")[0]
            functions.append(_floats_as_numpy(slow.rstrip("\n"), compiled))
        namespace = load(render("numpy_module.py.j2", title=f"Forward pass of `{fn.__name__}`.",
                                origin=f"{fn.__module__}.{fn.__qualname__}", notes=[], uses_math=uses_math,
                                functions=functions), f"<symbackprop forward {fn.__name__}>")
        fast = namespace["forward"]
        if compiled.scalar:
            slow_fn = namespace["_forward_numpy"]

            def run(*a):
                try:
                    return fast(*a)
                except (ArithmeticError, ValueError):
                    return float(slow_fn(*a))
        else:
            run = fast
    if len(dynamic) == len(specs):
        return run
    return lambda *a: run(*[a[i] for i in dynamic])


def _floats_as_numpy(text, compiled):
    """The NumPy fallback first turns Python floats into float64 scalars, so 1/0 gives inf."""
    lines = text.split("\n")
    body = next(i for i, l in enumerate(lines) if l.strip().endswith('"""') and i > 0)
    conv = [f"    {s.name} = np.float64({s.name})" for s in compiled.specs if s.kind == "float"]
    return "\n".join(lines[:body + 1] + conv + lines[body + 1:])


def load(source: str, filename: str) -> dict:
    """Execute generated source (ours, never the user's) and return its namespace."""
    namespace: dict = {}
    exec(compile(source, filename, "exec"), namespace)
    return namespace

