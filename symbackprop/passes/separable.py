"""Batch separability: does the loss split over the rows of the data arguments?

A forward graph is separable in its data parameters when the loss is
`scale * sum over axis 0 of per-row terms` (plus nothing, or plus terms free of the data): each value is
classified, node by node, as

    FREE      free of the data (parameters, constants)
    Rows(k)   its axis k runs over the data rows, and entry i along it depends on data row i only
    Summed(s) a linear function of sums over the rows, times the number `s` (a mean's 1/n)

and any operation that would make one row's value depend on another's (a reduction over the batch
followed by per-row work, a max or sort over the batch, a product contracting the batch axis, rows
picked or shifted) is a CompileError at that node's model line. `analyse` returns the loss's scale and
whether a data-free term is added to it: what the shard losses are combined with (docs/distributed.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy

from ..errors import CompileError
from ..primitives.composite import SoftmaxFamily
from ..primitives.elementwise import Kernel, arg, expand
from ..primitives.index import Index
from ..primitives.linalg import MatMul, Outer
from ..primitives.reduce import Reduction, Sum
from ..primitives.shape import BroadcastTo, Concatenate, Copy, Reshape, StopGradient, SumTo, Transpose

# the registered primitives are instances (registry.primitive); their classes, for isinstance
(Kernel, StopGradient, Copy, Sum, SumTo, BroadcastTo, Transpose, Reshape, Index, Concatenate, MatMul, Outer) = (
    type(p) for p in (Kernel, StopGradient, Copy, Sum, SumTo, BroadcastTo, Transpose, Reshape, Index, Concatenate,
                      MatMul, Outer))

FREE = None

HINT = ("Data-parallel training needs a loss that is a sum or mean over axis 0 of one term per row, with "
        "nothing combining rows before that reduction; compute batch statistics outside the model, or train "
        "in one process.")


@dataclass(frozen=True)
class Rows:
    axis: int


@dataclass(frozen=True)
class Summed:
    scale: float
    offset: bool = False  # a data-free term added (a regulariser)


@dataclass(frozen=True)
class Separation:
    """The loss is `scale * sum(per-row terms)` (+ a data-free term when `offset`)."""
    scale: float
    offset: bool
    rows: int


def _mixing(node, what):
    raise CompileError(f"the loss does not split over the data rows: {what}", node.loc, HINT)


def analyse(graph, data) -> Separation:
    """The separation of `graph`'s loss over the rows of the parameters named in `data` (CompileError if none)."""
    status = {}
    rows = None
    for v in graph.params:
        if v.name in data:
            if v.ndim == 0:
                raise CompileError(f"data argument `{v.name}` is a scalar; data are arrays split along axis 0")
            if rows is not None and v.shape[0] != rows:
                raise CompileError(f"the data arguments have different numbers of rows ({rows} and "
                                   f"{v.shape[0]} for `{v.name}`); data arguments share axis 0")
            rows = v.shape[0]
            status[v] = Rows(0)
    for node in graph.nodes:
        ins = [status.get(v, FREE) for v in node.inputs]
        if all(s is FREE for s in ins):
            continue
        outs = _rule(node, ins, rows)
        for v, s in zip(node.outputs, outs):
            status[v] = s
    result = status.get(graph.result, FREE)
    if result is FREE:
        raise CompileError("the loss does not depend on the data arguments " + ", ".join(f"`{d}`" for d in data))
    if isinstance(result, Rows):
        raise CompileError("the loss is not a sum or mean over the data rows", graph.result.node.loc, HINT)
    return Separation(result.scale, result.offset, rows)


def _rule(node, ins, rows):
    prim = node.prim
    if isinstance(prim, Kernel):
        return _kernel(node, ins)
    if isinstance(prim, (StopGradient, Copy)):
        return [ins[0]] * len(node.outputs)
    if any(isinstance(s, Summed) for s in ins):
        return [_linear_after_sum(node, ins)]
    axes = {s.axis for s in ins if isinstance(s, Rows)}
    k = axes.pop() if len(axes) == 1 else None
    x = node.inputs[0]
    if isinstance(prim, Reduction):
        axes = node.attrs["axes"]
        if k in axes:
            if isinstance(prim, Sum):
                return [Summed(1.0)]
            _mixing(node, f"np.{prim.method} over the batch axis combines rows")
        return [Rows(k if node.attrs["keepdims"] else k - sum(1 for a in axes if a < k))]
    if isinstance(prim, SoftmaxFamily):
        if k in node.attrs["axes"]:
            _mixing(node, f"{prim.name} over the batch axis combines rows")
        lse = k if node.attrs["keepdims"] else k - sum(1 for a in node.attrs["axes"] if a < k)
        return [Rows(lse), Rows(k), Rows(k)]
    if isinstance(prim, SumTo):
        shape = node.attrs["shape"]
        k_out = k - (x.ndim - len(shape))
        if k_out < 0 or shape[k_out] != x.shape[k]:
            return [Summed(1.0)]
        return [Rows(k_out)]
    if isinstance(prim, (BroadcastTo,)):
        shape = node.attrs["shape"]
        k_out = k + len(shape) - x.ndim
        if x.shape[k] != shape[k_out]:
            _mixing(node, "a row is repeated across the batch")
        return [Rows(k_out)]
    if isinstance(prim, Transpose):
        return [Rows(node.attrs["perm"].index(k))]
    if isinstance(prim, Reshape):
        shape = node.attrs["shape"]
        before = _prod(x.shape[:k])
        for j in range(len(shape)):
            if _prod(shape[:j]) == before and shape[j] == x.shape[k]:
                return [Rows(j)]
        _mixing(node, f"reshaping {x.shape} to {tuple(shape)} merges the batch axis with another")
    if isinstance(prim, Index):
        key = node.attrs["index"]
        real = [i for i, it in enumerate(key) if it is not None]
        pos = real[k]
        if key[pos] != slice(None):
            _mixing(node, "indexing picks some rows of the batch")
        return [Rows(sum(1 for it in key[:pos] if not isinstance(it, int)))]
    if isinstance(prim, Concatenate):
        axis = node.attrs["axis"]
        if k is None or any(s is FREE for s in ins) or k == axis:
            _mixing(node, "np.concatenate joins arrays along the batch axis or with data-free arrays")
        return [Rows(k)]
    if isinstance(prim, MatMul):
        return [_matmul(node, ins)]
    if isinstance(prim, Outer):
        if all(isinstance(s, Rows) for s in ins):
            _mixing(node, "np.outer pairs every row with every other")
        return [Rows(0 if isinstance(ins[0], Rows) else 1)]
    _mixing(node, f"{prim.name} cannot be shown to keep rows apart")


def _prod(xs):
    p = 1
    for x in xs:
        p *= x
    return p


def _matmul(node, ins):
    a, b = node.inputs
    sa, sb = ins
    out = node.out
    # the batch axis of a (m, k) @ (k, n) product: a's rows, b's columns, or a broadcast batch axis
    if isinstance(sa, Rows) and isinstance(sb, Rows):
        if a.ndim > 2 and b.ndim > 2 and sa.axis < a.ndim - 2 and sa.axis - a.ndim == sb.axis - b.ndim:
            return Rows(out.ndim - (a.ndim - sa.axis))
        _mixing(node, "a matrix product of two data-dependent arrays contracts the batch axis or pairs rows")
    if isinstance(sa, Rows):
        k = sa.axis
        if a.ndim == 1 or k == a.ndim - 1:
            _mixing(node, "the matrix product contracts the batch axis (it sums over rows)")
        shift = 1 if b.ndim == 1 else 0
        return Rows(out.ndim - (a.ndim - k) + shift) if k == a.ndim - 2 else Rows(out.ndim - (a.ndim - k))
    k = sb.axis
    if b.ndim == 1 or k == b.ndim - 2:
        _mixing(node, "the matrix product contracts the batch axis (it sums over rows)")
    return Rows(out.ndim - 1) if k == b.ndim - 1 else Rows(out.ndim - (b.ndim - k))


def _linear_after_sum(node, ins):
    """Shape work and products with data-free arrays on a sum over the rows: still linear in it."""
    prim = node.prim
    if any(isinstance(s, Rows) for s in ins):
        _mixing(node, "a sum over the batch is combined with per-row values (a batch statistic)")
    if isinstance(prim, (Sum, SumTo, Reshape, Transpose, BroadcastTo, Index, SoftmaxFamily)) and len(ins) == 1:
        if isinstance(prim, SoftmaxFamily):
            _mixing(node, f"{prim.name} of a sum over the batch is not a sum of per-row terms")
        return ins[0]
    if isinstance(prim, (MatMul, Outer)) and sum(isinstance(s, Summed) for s in ins) == 1:
        return next(s for s in ins if isinstance(s, Summed))
    _mixing(node, f"{getattr(prim, 'method', prim.name)} of a sum over the batch is not a sum of per-row terms")


def _kernel(node, ins):
    """An elementwise kernel: per row when its row inputs line up; linear when it reads sums over rows."""
    out_ndim = len(node.attrs["shape"])
    rows_in = [(v, s) for v, s in zip(node.inputs, ins) if isinstance(s, Rows)]
    summed = [(i, s) for i, s in enumerate(ins) if isinstance(s, Summed)]
    outs = expand(node.attrs["program"], node.attrs["outs"])
    if summed:
        if rows_in:
            _mixing(node, "a sum or mean over the batch is combined with per-row values (a batch statistic)")
        return [_linear(node, out, summed) for out in outs]
    axes = {s.axis + out_ndim - v.ndim for v, s in rows_in}
    if len(axes) != 1:
        _mixing(node, "values whose rows lie along different axes are combined")
    (k,) = axes
    n = node.attrs["shape"][k]
    for v, s in rows_in:
        if v.shape[s.axis] != n:
            _mixing(node, "one row is broadcast against the whole batch")
    for v, s in zip(node.inputs, ins):
        j = k - (out_ndim - v.ndim)
        if s is FREE and 0 <= j < v.ndim and v.shape[j] > 1 and n > 1:
            _mixing(node, f"an array of {v.shape[j]} entries along the batch axis that is not data "
                          f"(`{v.name or 'a constant'}`) is combined with the rows")
    return [Rows(k)] * len(outs)


def _linear(node, out, summed):
    """The Summed status of `out`, a kernel output linear in the sums (numbers as coefficients)."""
    syms = [arg(i) for i, _ in summed]
    scales = set()
    offset = any(s.offset for _, s in summed)
    for sym, (_, s) in zip(syms, summed):
        c = sympy.diff(out, sym)
        if c.free_symbols & set(syms):
            _mixing(node, "a non-linear function of a sum over the batch is not a sum of per-row terms")
        if c == 0:
            continue
        if not c.is_number:
            _mixing(node, "a sum over the batch is scaled by a computed value; scale it by a number")
        scales.add(float(c) * s.scale)
    rest = out.subs({sym: 0 for sym in syms})
    if rest != 0:
        offset = True
    if len(scales) != 1:
        _mixing(node, "sums over the batch with different scales are added (a sum and a mean)")
    return Summed(scales.pop(), offset)
