"""Basic indexing (constants, slices, loop indices, None) and its adjoint, scatter-add."""
from __future__ import annotations

import numpy as np

from ..errors import CompileError, ShapeError
from ..ir import Value, append, current_loc
from . import ops
from .registry import Primitive, primitive


def normalize_index(idx, shape):
    """A static index as a tuple of ints, slices (with bounds) and None; and the result shape."""
    items = idx if isinstance(idx, tuple) else (idx,)
    for it in items:
        if isinstance(it, Value):
            raise CompileError(
                "indexing with an array (fancy or boolean indexing) is not supported",
                current_loc(),
                "Use np.where(mask, x, 0.0) to select elements, or index with constants, slices and loop indices.",
            )
        if isinstance(it, (bool, np.bool_)) or not (
            it is None or it is Ellipsis or isinstance(it, (slice, int, np.integer))
        ):
            raise CompileError(f"index {it!r} is not supported", current_loc(),
                               "Index with whole numbers, slices, None and loop indices.")
    n_real = sum(1 for it in items if it is not None and it is not Ellipsis)
    if sum(1 for it in items if it is Ellipsis) > 1:
        raise CompileError("an index can have only one `...`", current_loc())
    if n_real > len(shape):
        raise ShapeError(f"too many indices for an array of shape {shape}", current_loc())
    expanded = []
    for it in items:
        if it is Ellipsis:
            expanded.extend([slice(None)] * (len(shape) - n_real))
        else:
            expanded.append(it)
    while sum(1 for it in expanded if it is not None) < len(shape):
        expanded.append(slice(None))
    key, out_shape, dim = [], [], 0
    for it in expanded:
        if it is None:
            key.append(None)
            out_shape.append(1)
            continue
        size = shape[dim]
        if isinstance(it, slice):
            for part in (it.start, it.stop, it.step):
                if part is not None and not isinstance(part, (int, np.integer)):
                    raise CompileError(f"slice bounds must be known at compile time, got {part!r}", current_loc())
            if it.step == 0:
                raise ShapeError("slice step cannot be zero", current_loc())
            start, stop, step = it.indices(size)
            n = len(range(start, stop, step))
            key.append(slice(None) if (start, stop, step) == (0, size, 1) else slice(start, stop, step))
            out_shape.append(n)
        else:
            i = int(it)
            if not -size <= i < size:
                raise ShapeError(f"index {i} is out of bounds for axis {dim} with size {size}", current_loc())
            key.append(i % size)
        dim += 1
    return tuple(key), tuple(out_shape)


def _slice_text(s: slice) -> str:
    if s == slice(None):
        return ":"
    step = 1 if s.step is None else s.step
    start = "" if s.start is None or (s.start == 0 and step > 0) else str(s.start)
    stop = "" if s.stop is None else str(s.stop)
    if s.step in (None, 1):
        return f"{start}:{stop}"
    return f"{start}:{stop}:{s.step}"


def index_text(key) -> str:
    """A static index as written inside brackets: `0, :`, `::-1`, `:, None`."""
    key = list(_negative_stop_fix(key))
    while len(key) > 1 and key[-1] == slice(None):  # x[0, :, :] reads as x[0]
        key.pop()
    parts = []
    for k in key:
        if k is None:
            parts.append("None")
        elif isinstance(k, slice):
            parts.append(_slice_text(k))
        else:
            parts.append(str(k))
    return ", ".join(parts) if parts else "..."


def _negative_stop_fix(key):
    """A slice whose normalised stop is -1 (a reversed slice to the front) must print as None."""
    fixed = []
    for k in key:
        if isinstance(k, slice) and k.step is not None and k.step < 0 and k.stop is not None and k.stop < 0:
            k = slice(k.start, None, k.step)
        fixed.append(k)
    return tuple(fixed)


@primitive("index")
class Index(Primitive):
    explain_note = "zeros elsewhere"
    view = True  # constant and slice indexing: a view of its input

    def infer(self, node):
        return [(node.attrs["shape"], node.inputs[0].dtype)]

    def adjoint(self, node, gs, wants):
        x = node.inputs[0]
        return [scatter_add(x.shape, gs[0].dtype, [(node.attrs["index"], gs[0])])]

    def tangent(self, node, ts, batch):
        key = (slice(None),) * len(batch) + node.attrs["index"]
        return [append(Index, [ts[0]], {"index": key, "shape": batch + node.attrs["shape"]})]

    def batch(self, node, ins, batched, n):
        return self.tangent(node, ins, (n,))

    def describe(self, node):
        return f"[{index_text(node.attrs['index'])}]"


@primitive("scatter_add")
class ScatterAdd(Primitive):
    """Zeros of `shape` with each input added at its index: the adjoint of indexing."""

    def infer(self, node):
        return [(node.attrs["shape"], node.attrs["dtype"])]

    def adjoint(self, node, gs, wants):
        return [index_at(gs[0], key, v.shape) for key, v in zip(node.attrs["indexes"], node.inputs)]

    def tangent(self, node, ts, batch):
        lead = (slice(None),) * len(batch)
        parts = [(lead + key, t) for key, t in zip(node.attrs["indexes"], ts) if t is not None]
        return [scatter_add(batch + node.attrs["shape"], node.attrs["dtype"], parts)]

    def batch(self, node, ins, batched, n):
        return self.tangent(node, [ops.batched(v, b, n) for v, b in zip(ins, batched)], (n,))

    def disjoint_rows(self, node):
        """Whether every part writes its own leading index (Ws[i]): parts can be computed in place."""
        rows = []
        for key in node.attrs["indexes"]:
            if not key or not isinstance(key[0], int) or any(k != slice(None) for k in key[1:]):
                return False
            rows.append(key[0])
        return len(set(rows)) == len(rows)

    def covers(self, node):
        return sorted(key[0] for key in node.attrs["indexes"]) == list(range(node.attrs["shape"][0]))

    def describe(self, node):
        return "scatter-add"


@primitive("set_index")
class SetIndex(Primitive):
    """x with x[index] replaced by v, broadcast to the indexed shape and cast to x's dtype: `y[i] = v` as a
    new version of y (the tracer's functional element assignment). Backprop: the overwritten entries of x
    get no gradient, v gets the gradient of the entries it wrote."""

    explain_note = "the overwritten entries get no gradient"

    def infer(self, node):
        x = node.inputs[0]
        return [(x.shape, x.dtype)]

    def adjoint(self, node, gs, wants):
        x, v = node.inputs
        g, key = gs[0], node.attrs["index"]
        d_x = set_index(g, key, 0.0) if wants[0] else None
        d_v = ops.sum_to(index_at(g, key, node.attrs["region"]), v.shape) if wants[1] else None
        return [d_x, d_v]

    def tangent(self, node, ts, batch):
        # the new version's tangent: x's with the written entries replaced by v's
        x, v = node.inputs
        tx, tv = ts
        region = node.attrs["region"]
        tx = tx if tx is not None else ops.zero_tangent(x, batch)
        tv = ops.lift(tv, batch, len(region)) if tv is not None else ops.fill(0.0, (), tx.dtype)
        key = (slice(None),) * len(batch) + node.attrs["index"]
        return [append(SetIndex, [tx, tv], {"index": key, "region": batch + region})]

    def batch(self, node, ins, batched, n):
        # x along the batch axis (broadcast when only v is batched); an unbatched v broadcasts as it did
        (x, v), (bx, bv) = ins, batched
        region = node.attrs["region"]
        v = ops.lift(v, (n,), len(region)) if bv else v
        key = (slice(None),) + node.attrs["index"]
        return [append(SetIndex, [ops.batched(x, bx, n), v], {"index": key, "region": (n,) + region})]

    def describe(self, node):
        return f"[{index_text(node.attrs['index'])}] ="


def set_index(x, idx, v, name="x"):
    """The new version of x after `x[idx] = v` (`name`: x's, for messages)."""
    if any(isinstance(it, (Value, list, np.ndarray)) for it in (idx if isinstance(idx, tuple) else (idx,))):
        raise CompileError(f"assigning through an index array ({name}[idx] = v, {name}[idx] += v) is not supported",
                           current_loc(), "Select with a 0/1 mask instead: y = np.where(mask, v, y), or "
                           "y = y + mask * v; reading y[idx] is supported.")
    key, shape = normalize_index(idx, x.shape)
    if None in key:
        raise CompileError("`None` in the index of an assignment is not supported", current_loc(),
                           "Index the entries to write with numbers, slices and loop indices.")
    v = ops.as_value(v, like=x)
    try:
        np.broadcast_shapes(v.shape, shape)
        fits = np.broadcast_shapes(v.shape, shape) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise ShapeError(f"cannot assign a value of shape {v.shape} to {name}[{index_text(key)}] of shape "
                         f"{tuple(shape)}", current_loc())
    if v.dtype.kind == "b":
        raise CompileError("assigning a boolean array into a float array is not supported", current_loc(),
                           "Assign np.where(mask, 1.0, 0.0).")
    return append(SetIndex, [x, v], {"index": key, "region": tuple(shape)})


def index_at(x, key, shape):
    """x[key] for a key normalised already (a reversed slice to the front has stop -1, which
    normalize_index would read as the last entry): the adjoints of scatter-add and assignment."""
    if key == tuple(slice(None) for _ in x.shape) and x.shape == tuple(shape):
        return x
    return append(Index, [x], {"index": tuple(key), "shape": tuple(shape)})


def scatter_add(shape, dtype, parts):
    """One scatter-add node for several (index, value) contributions."""
    keys = tuple(k for k, _ in parts)
    values = [v for _, v in parts]
    return append(ScatterAdd, values, {"shape": tuple(shape), "dtype": np.dtype(dtype), "indexes": keys})
