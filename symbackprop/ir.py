"""The array-level IR: one Node per operation on whole arrays.

A Value is an SSA array with a shape and dtype known at specialisation; a Node
applies one registered primitive to input Values and produces output Values.
Nodes are appended to the Graph being built (see `building`), hash-consed so
that the same operation on the same inputs is built once.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

import numpy as np

from .errors import NO_LOC, CompileError, Loc


class Value:
    """An array flowing through the graph (shape, dtype, producing node)."""

    __slots__ = ("shape", "dtype", "node", "name", "zero_sum_axes", "grad_of", "tangent_of", "weak", "__weakref__")
    __array_priority__ = 1000  # so numpy scalars defer to our operators

    def __init__(self, shape, dtype, node=None, name=None):
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.node = node
        self.name = name
        # axes along which this (adjoint) value is known to sum to exactly zero
        self.zero_sum_axes = frozenset()
        # the forward value this one is the gradient of (for naming it d_<name>)
        self.grad_of = None
        # the value this one is the forward-mode tangent of (for naming it t_<name>)
        self.tangent_of = None
        # a Python float (or computed from Python floats only): like NumPy, it does not widen float32 arrays
        self.weak = False

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __repr__(self):
        dims = ",".join(map(str, self.shape))
        return f"<{self.name or 'value'}: {self.dtype}[{dims}]>"

    def __bool__(self):
        raise CompileError(
            "the truth value of an array is not known when the model is compiled",
            current_loc(),
            "Use np.where(condition, a, b) to choose element by element.",
        )

    # Arithmetic builds IR; the implementations are primitives.ops, installed by `use_arithmetic`.
    def __add__(self, o): return _ops().add(self, o)
    def __radd__(self, o): return _ops().add(o, self)
    def __sub__(self, o): return _ops().sub(self, o)
    def __rsub__(self, o): return _ops().sub(o, self)
    def __mul__(self, o): return _ops().mul(self, o)
    def __rmul__(self, o): return _ops().mul(o, self)
    def __truediv__(self, o): return _ops().div(self, o)
    def __rtruediv__(self, o): return _ops().div(o, self)
    def __pow__(self, o): return _ops().power(self, o)
    def __rpow__(self, o): return _ops().power(o, self)
    def __matmul__(self, o): return _ops().matmul(self, o)
    def __rmatmul__(self, o): return _ops().matmul(o, self)
    def __neg__(self): return _ops().neg(self)
    def __pos__(self): return self
    def __abs__(self): return _ops().absolute(self)
    def __lt__(self, o): return _ops().compare("lt", self, o)
    def __le__(self, o): return _ops().compare("le", self, o)
    def __gt__(self, o): return _ops().compare("gt", self, o)
    def __ge__(self, o): return _ops().compare("ge", self, o)
    def __and__(self, o): return _ops().logical("and", self, o)
    def __rand__(self, o): return _ops().logical("and", o, self)
    def __or__(self, o): return _ops().logical("or", self, o)
    def __ror__(self, o): return _ops().logical("or", o, self)
    def __invert__(self): return _ops().logical_not(self)
    __hash__ = object.__hash__

    @property
    def T(self):
        return _ops().transpose(self)


_arithmetic = None


def _ops():
    if _arithmetic is None:
        raise RuntimeError("Value arithmetic needs symbackprop.primitives to be imported")
    return _arithmetic


def use_arithmetic(ops_module):
    """Give Values their operators (+, @, <, ...): the IR sits below the primitives that implement them,
    so symbackprop.primitives installs its `ops` here when it is imported."""
    global _arithmetic
    _arithmetic = ops_module


class Node:
    """One primitive applied to input Values."""

    __slots__ = ("prim", "inputs", "attrs", "outputs", "loc")

    def __init__(self, prim, inputs, attrs, loc):
        self.prim = prim
        self.inputs = list(inputs)
        self.attrs = dict(attrs)
        self.outputs = []
        self.loc = loc

    @property
    def out(self) -> Value:
        return self.outputs[0]

    def __repr__(self):
        ins = ", ".join(repr(v) for v in self.inputs)
        return f"{self.prim.name}({ins})"


class Graph:
    """Nodes in topological order, the parameters and the result."""

    def __init__(self):
        self.params: list[Value] = []
        self._nodes: list[Node] = []
        self.result: Value | None = None
        #: a region's body (a branch of an `if`, a loop's condition or body): the values it hands back,
        #: one per output of its region node (None where a branch leaves an output undefined)
        self.results: list = []
        #: arrays the model returns beside the result (has_aux=True): computed, kept, never differentiated
        self.aux: list[Value] = []
        self._memo: dict = {}
        # filled by reverse mode (transforms/reverse.py): forward node -> the AdjointStep applied to it,
        # and backward node -> the AdjointStep that appended it
        self.adjoints: dict = {}
        self.provenance: dict = {}
        # filled by fusion (passes/fuse.py): kernel -> the locations of every node fused into it, its own
        # first (a helper's line inlined into its caller's), for tools that name a kernel's lines
        self.fused: dict = {}
        # filled by forward mode (transforms/forward.py): tangent node -> the node whose tangent rule built it
        self.tangent_origin: dict = {}
        # filled by forward mode: one (seeds, tangents) pair per forward-mode pass, value -> its tangent
        self.tangent_passes: list = []
        # filled by forward mode in a region's body: tangent node -> when its pass began (control.clock)
        self.made_at: dict = {}

    @property
    def nodes(self) -> list[Node]:
        return self._nodes

    @nodes.setter
    def nodes(self, nodes):
        # passes that drop nodes (dead code, fusion, patterns) replace the list: value numbering
        # must forget the dropped ones, or a later append would hand back a value nothing computes
        self._nodes = nodes
        kept = set(nodes)
        self._memo = {k: hit for k, hit in self._memo.items() if hit[0] in kept}

    def users(self) -> dict:
        """Map each Value to the list of nodes that read it."""
        uses: dict = {}
        for node in self.nodes:
            for v in node.inputs:
                uses.setdefault(v, []).append(node)
        return uses


def bodies(node) -> tuple:
    """The sub-graphs of a region node (value-dependent `if` and `while`, primitives/control.py); () for others."""
    return node.attrs.get("bodies", ()) if node.attrs else ()


def nested_bodies(graph):
    """Every region body inside `graph`, outermost first, each before the bodies nested in it."""
    for node in graph.nodes:
        for body in bodies(node):
            yield body
            yield from nested_bodies(body)


def has_regions(graph) -> bool:
    return any(bodies(node) for node in graph.nodes)


# ---- the graph being built ----------------------------------------------------

_state = threading.local()


def current_graph() -> Graph:
    graph = getattr(_state, "graph", None)
    if graph is None:
        raise RuntimeError("no graph is being built")
    return graph


def current_loc() -> Loc:
    return getattr(_state, "loc", NO_LOC)


@contextlib.contextmanager
def building(graph: Graph):
    saved = getattr(_state, "graph", None), getattr(_state, "loc", NO_LOC)
    _state.graph = graph
    try:
        yield graph
    finally:
        _state.graph, _state.loc = saved


@contextlib.contextmanager
def at(loc: Loc):
    saved = getattr(_state, "loc", NO_LOC)
    _state.loc = loc
    try:
        yield
    finally:
        _state.loc = saved


@dataclass(frozen=True)
class Rule(Loc):
    """Where an update statement comes from: the optimizer's formula, shown as its comment."""

    def short(self) -> str:
        return self.text


def rule(formula: str):
    """Build the IR inside this block as the statement `formula` (its comment in generated code)."""
    return at(Rule(__file__, 1, formula))


def _freeze(x):
    if isinstance(x, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return tuple(_freeze(v) for v in x)
    if isinstance(x, slice):
        return ("slice", x.start, x.stop, x.step)
    if isinstance(x, np.dtype):
        return str(x)
    return x


def append(prim, inputs, attrs=None, name=None):
    """Append `prim(inputs, **attrs)` to the current graph; return its outputs.

    Identical operations on identical inputs are built once (value numbering).
    """
    attrs = attrs or {}
    graph = current_graph()
    key = (prim.name, tuple(id(v) for v in inputs), _freeze(attrs))
    hit = graph._memo.get(key)
    node = hit[0] if hit is not None else None
    if node is None:
        node = Node(prim, inputs, attrs, current_loc())
        for shape, dtype in prim.infer(node):
            node.outputs.append(Value(shape, dtype, node))
        graph.nodes.append(node)
        # the key holds ids: keep those inputs alive, or a new Value at a freed one's address would match
        # (fusion rewires node.inputs, so the node alone does not keep them)
        graph._memo[key] = (node, tuple(inputs))
    if name and node.outputs[0].name is None:
        node.outputs[0].name = name
    return node.outputs[0] if len(node.outputs) == 1 else tuple(node.outputs)
